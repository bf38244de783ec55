"""Learned optimisers, meta-training and the L2O engine in JAX."""
