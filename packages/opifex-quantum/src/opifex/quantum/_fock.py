"""Coulomb and exchange matrices from the full electron-repulsion tensor."""

import jax
import jax.numpy as jnp


def coulomb_matrix(density: jax.Array, eri: jax.Array) -> jax.Array:
    """``J[D]_ij = sum_kl (ij|kl) D_kl`` for chemists'-notation ``eri``.

    Example:
        >>> import jax.numpy as jnp
        >>> coulomb_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    return jnp.einsum("ijkl,kl->ij", eri, density)


def exchange_matrix(density: jax.Array, eri: jax.Array) -> jax.Array:
    """``K[D]_ij = sum_kl (ik|jl) D_kl`` for chemists'-notation ``eri``.

    Example:
        >>> import jax.numpy as jnp
        >>> exchange_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    return jnp.einsum("ikjl,kl->ij", eri, density)
