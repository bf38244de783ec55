"""Differentiable Hartree-Fock SCF (RHF/UHF) with Gaussian basis sets in JAX."""
