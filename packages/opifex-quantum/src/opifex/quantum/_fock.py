"""Coulomb and exchange matrices from a dense electron-repulsion tensor or a compact layout.

The compact layouts (``ERISupermatrix``, ``DensityFittedERI``, ``DirectERI``) build J and K
themselves.
"""

import jax
import jax.numpy as jnp

from opifex.quantum._density_fitting import DensityFittedERI
from opifex.quantum._direct import DirectERI
from opifex.quantum._eri_supermatrix import ERISupermatrix

COMPACT_LAYOUTS = (ERISupermatrix, DensityFittedERI, DirectERI)
"""The ``Integrals.eri`` types other than a dense ``(n, n, n, n)`` array."""


def coulomb_matrix(
    density: jax.Array, eri: jax.Array | ERISupermatrix | DensityFittedERI | DirectERI
) -> jax.Array:
    """``J[D]_ij = sum_kl (ij|kl) D_kl`` for chemists'-notation ``eri``.

    Example:
        >>> import jax.numpy as jnp
        >>> coulomb_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    if isinstance(eri, COMPACT_LAYOUTS):
        return eri.coulomb_matrix(density)
    return jnp.einsum("ijkl,kl->ij", eri, density)


def exchange_matrix(
    density: jax.Array,
    eri: jax.Array | ERISupermatrix | DensityFittedERI | DirectERI,
    orbitals: jax.Array | None = None,
) -> jax.Array:
    """``K[D]_ij = sum_kl (ik|jl) D_kl`` for chemists'-notation ``eri``.

    ``orbitals`` (``(n, k)`` with ``D = C C^T``), when given, lets a ``DensityFittedERI``
    build K from them (cheaper); the other layouts do not need them.

    Example:
        >>> import jax.numpy as jnp
        >>> exchange_matrix(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5)).tolist()
        [[0.5]]
    """
    if isinstance(eri, COMPACT_LAYOUTS):
        return eri.exchange_matrix(density, orbitals)
    return jnp.einsum("ikjl,kl->ij", eri, density)


def coulomb_and_exchange(
    density: jax.Array,
    eri: jax.Array | ERISupermatrix | DensityFittedERI | DirectERI,
    orbitals: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(J[D], K[D])`` together: one integral pass for a ``DirectERI``, else the two builds.

    Example:
        >>> import jax.numpy as jnp
        >>> j, k = coulomb_and_exchange(jnp.eye(1), jnp.full((1, 1, 1, 1), 0.5))
        >>> j.tolist(), k.tolist()
        ([[0.5]], [[0.5]])
    """
    if isinstance(eri, DirectERI):
        return eri.coulomb_exchange(density)
    return coulomb_matrix(density, eri), exchange_matrix(density, eri, orbitals)
