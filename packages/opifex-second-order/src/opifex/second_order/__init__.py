"""L-BFGS, hybrid Adam to L-BFGS and Gauss-Newton / Levenberg-Marquardt solvers in JAX."""
