"""Coulomb and exchange matrices from a dense electron-repulsion tensor or an ``ERISupermatrix``."""

import jax
import jax.numpy as jnp

from opifex.quantum._eri_supermatrix import ERISupermatrix


def coulomb_matrix(density: jax.Array, eri: jax.Array | ERISupermatrix) -> jax.Array:
    """``J[D]_ij = sum_kl (ij|kl) D_kl`` for chemists'-notation ``eri``.

    Example:
        >>> import jax.numpy as jnp
        >>> coulomb_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    if isinstance(eri, ERISupermatrix):
        return eri.coulomb_matrix(density)
    return jnp.einsum("ijkl,kl->ij", eri, density)


def exchange_matrix(density: jax.Array, eri: jax.Array | ERISupermatrix) -> jax.Array:
    """``K[D]_ij = sum_kl (ik|jl) D_kl`` for chemists'-notation ``eri``.

    Example:
        >>> import jax.numpy as jnp
        >>> exchange_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    if isinstance(eri, ERISupermatrix):
        return eri.exchange_matrix(density)
    return jnp.einsum("ikjl,kl->ij", eri, density)
