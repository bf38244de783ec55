"""Meta-learning (MAML, FOMAML, Reptile, Meta-SGD) in JAX."""
