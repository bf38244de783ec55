"""Overlap, kinetic-energy and nuclear-attraction matrices (McMurchie-Davidson).

Each class of shell pairs is computed at once over all its primitive pairs, summed over the
primitives of each shell pair with a static ``segment_sum``, and the unique blocks are placed
into the symmetric cartesian matrix by one static gather before ``T.T @ M @ T``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._hermite import hermite_coulomb
from opifex.quantum._shell_pairs import PairClass, PrimitivePairs, primitive_pairs, shell_pairs


@functools.cache
def _matrix_gather(basis: BasisSet) -> np.ndarray:
    """``(n_cart, n_cart)`` positions of every matrix element in the concatenated pair blocks."""
    classes, _ = shell_pairs(basis)
    index = np.full((basis.n_cartesian,) * 2, -1, dtype=np.int64)
    offset = 0
    for pc in classes:
        n_a, n_b = pc.func_a.shape[1], pc.func_b.shape[1]
        flat = offset + np.arange(pc.n_pairs * n_a * n_b).reshape(pc.n_pairs, n_a, n_b)
        rows, cols = pc.func_a[:, :, None], pc.func_b[:, None, :]
        index[rows, cols] = flat
        index[cols, rows] = flat
        offset += flat.size
    assert (index >= 0).all(), "shell pairs do not cover the matrix"
    return index


def _contract(pc: PairClass, primitive_values: jax.Array) -> jax.Array:
    """Sum primitive-pair values ``(n_prim, ...)`` into shell-pair values, flattened."""
    summed = jax.ops.segment_sum(
        primitive_values, pc.pair_id, num_segments=pc.n_pairs, indices_are_sorted=True
    )
    return summed.reshape(-1)


def _nuclear_attraction(
    pc: PairClass, prims: PrimitivePairs, coordinates: jax.Array, charges: jax.Array
) -> jax.Array:
    """``-sum_C Z_C (2 pi / p) sum_tuv E_tuv R_tuv(p, P - C)`` for every primitive pair."""
    r = hermite_coulomb(
        pc.l_a + pc.l_b,
        prims.exponent[:, None],
        prims.center.T[:, :, None] - coordinates.T[:, None, :],
    )
    weighted = jnp.einsum("pch,hpa,a->pc", prims.hermite, r, charges)
    return -(2 * jnp.pi / prims.exponent)[:, None] * weighted


def to_basis(basis: BasisSet, matrix: jax.Array) -> jax.Array:
    """Transform a cartesian matrix to the basis: ``T.T @ M @ T``."""
    t = jnp.asarray(basis.cartesian_to_basis)
    return t.T @ matrix @ t


def one_electron_from_pairs(
    basis: BasisSet,
    pairs: list[PrimitivePairs],
    coordinates: jax.Array,
    nuclear_charges: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Overlap, kinetic and nuclear matrices from precomputed ``primitive_pairs`` per class."""
    classes, _ = shell_pairs(basis)
    charges = jnp.asarray(nuclear_charges, dtype=coordinates.dtype)
    blocks = [
        [
            _contract(pc, prims.overlap),
            _contract(pc, prims.kinetic),
            _contract(pc, _nuclear_attraction(pc, prims, coordinates, charges)),
        ]
        for pc, prims in zip(classes, pairs, strict=True)
    ]
    gather = _matrix_gather(basis)
    return tuple(to_basis(basis, jnp.concatenate([b[k] for b in blocks])[gather]) for k in range(3))


def one_electron_integrals(
    basis: BasisSet, coordinates: jax.Array, nuclear_charges: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The overlap ``S``, kinetic ``T`` and nuclear-attraction ``V`` matrices over a basis.

    Args:
        basis: the basis set (static).
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.
        nuclear_charges: ``(n_atoms,)`` nuclear charges.

    Returns:
        ``(S, T, V)``, each ``(n_functions, n_functions)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     s, t, v = one_electron_integrals(
        ...         basis, jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]), jnp.array([1.0, 1.0]))
        >>> round(float(s[0, 1]), 4), round(float(t[0, 0]), 4), round(float(v[0, 0]), 4)
        (0.6593, 0.76, -1.8804)
    """
    classes, _ = shell_pairs(basis)
    pairs = [primitive_pairs(pc, coordinates) for pc in classes]
    return one_electron_from_pairs(basis, pairs, coordinates, nuclear_charges)
