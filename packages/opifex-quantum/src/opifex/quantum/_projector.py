"""The aufbau density of a Fock matrix, with derivatives that survive degenerate orbitals.

``aufbau_density(fock, overlap, n_occupied)`` is the density ``C_occ C_occ^T`` of the
``n_occupied`` lowest solutions of ``F C = S C e``. The generalised problem is reduced with the
Cholesky factor of ``S`` (smooth in ``S``, unlike ``S^-1/2`` from ``eigh``, whose derivative
is NaN when ``S`` has degenerate eigenvalues, as in any symmetric molecule).

The derivative of the occupied-space projector involves only occupied-virtual energy gaps,
``dP = V (W * (V^T dF V)) V^T`` with ``W[i, a] = W[a, i] = 1 / (e_i - e_a)``. ``jnp.linalg.eigh``
differentiates every eigenvector separately and divides by the gaps between degenerate
occupied orbitals (CH4, NH3, N2 have them), which gives NaN; the projector here does not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _projector(fock: jax.Array, n_occupied: int) -> jax.Array:
    _, vectors = jnp.linalg.eigh(fock)
    occupied = vectors[:, :n_occupied]
    return occupied @ occupied.T


@_projector.defjvp
def _projector_jvp(n_occupied: int, primals: tuple, tangents: tuple) -> tuple:
    (fock,), (fock_dot,) = primals, tangents
    energies, vectors = jnp.linalg.eigh(fock)
    occupied = vectors[:, :n_occupied]
    is_occupied = jnp.arange(fock.shape[0]) < n_occupied
    occupied_virtual = is_occupied[:, None] != is_occupied[None, :]
    gaps = jnp.abs(energies[:, None] - energies[None, :])
    # W = 1 / (e_i - e_a) = -1 / |e_a - e_i| on the occupied-virtual blocks, 0 elsewhere.
    weights = jnp.where(occupied_virtual, -1.0 / jnp.where(occupied_virtual, gaps, 1.0), 0.0)
    rotated = vectors.T @ fock_dot @ vectors
    return occupied @ occupied.T, vectors @ (weights * rotated) @ vectors.T


def aufbau_density(fock: jax.Array, overlap: jax.Array, n_occupied: int) -> jax.Array:
    """Density ``C_occ C_occ^T`` of the ``n_occupied`` lowest orbitals of ``F C = S C e``.

    Differentiable in ``fock`` and ``overlap`` (forward and reverse mode), with no NaN for
    degenerate occupied or virtual orbitals; the derivative needs a non-zero HOMO-LUMO gap.

    Args:
        fock: ``(n, n)`` symmetric Fock matrix.
        overlap: ``(n, n)`` symmetric positive-definite overlap matrix.
        n_occupied: number of occupied orbitals (static).

    Returns:
        The ``(n, n)`` density of singly counted electrons (multiply by 2 for closed shells).

    Example:
        >>> import jax.numpy as jnp
        >>> d = aufbau_density(jnp.diag(jnp.array([-1.0, 0.5, 2.0])), jnp.eye(3), 1)
        >>> [round(float(x), 6) for x in jnp.diag(d)]
        [1.0, 0.0, 0.0]
    """
    cholesky = jnp.linalg.cholesky(overlap)
    half = solve_triangular(cholesky, fock, lower=True)
    orthonormal_fock = solve_triangular(cholesky, half.T, lower=True)
    orthonormal_fock = 0.5 * (orthonormal_fock + orthonormal_fock.T)
    projector = _projector(orthonormal_fock, n_occupied)
    left = solve_triangular(cholesky.T, projector, lower=False)
    return solve_triangular(cholesky.T, left.T, lower=False)
