"""Blocked electron-repulsion integrals (McMurchie-Davidson) over the unique shell quartets.

For each (bra class, ket class) of a ``quartet_plan``, a ``lax.scan`` runs over fixed-size blocks
of shell quartets (at most ``slots`` of them). A block expands its quartets into their primitive
quartets (at most ``block``; only the primitive pairs a ``primitive_selection`` keeps), computes
``(ab|cd) = 2 pi^(5/2) / (p q sqrt(p + q)) sum E^{ab}_{tuv} (-1)^(t'+u'+v') E^{cd}_{t'u'v'}
R_{t+t',u+u',v+v'}(pq / (p + q), P - Q)`` with the primitive quartets along the last (minor)
axis and the Hermite coefficients already over basis function pairs (spherical or normalised
cartesian), sums them per shell quartet and hands the block to a consumer (the supermatrix
assembly or the Schwarz bounds). The plan's index arrays are arguments of the
compiled program, not constants, so its size depends on the angular momenta and the block size,
not on the molecule, and the memory in use at once on one block. Each block is rematerialised
under reverse-mode differentiation (``jax.checkpoint``), so gradients do not keep every block's
intermediates either.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet, cartesian_block
from opifex.quantum._eri_plan import BlockedQuartets, pair_layout
from opifex.quantum._hermite import hermite_coulomb, hermite_indices
from opifex.quantum._shell_pairs import (
    PairClass,
    PrimitivePairs,
    component_indices,
    shell_pairs,
)


@functools.cache
def _hermite_product(l_bra: int, l_ket: int) -> tuple[np.ndarray, np.ndarray]:
    """Static ``(n_herm_bra, n_herm_ket)`` positions of ``R_{t+t',u+u',v+v'}`` and ket signs."""
    position = {key: k for k, key in enumerate(hermite_indices(l_bra + l_ket))}
    ket = hermite_indices(l_ket)
    gather = np.asarray(
        [[position[tuple(np.add(h, g))] for g in ket] for h in hermite_indices(l_bra)]
    )
    return gather, np.asarray([(-1.0) ** sum(g) for g in ket])


@functools.cache
def _pair_transform(l_a: int, l_b: int, cartesian: bool) -> np.ndarray:
    """``(n_cart_a * n_cart_b, n_func_a * n_func_b)``: raw cartesian pair to basis pair."""
    return np.kron(cartesian_block(l_a, cartesian), cartesian_block(l_b, cartesian))


def _in_basis(pair_class: PairClass, pairs: PrimitivePairs, cartesian: bool) -> PrimitivePairs:
    """``pairs`` with Hermite coefficients over the basis function pairs, not cartesian ones."""
    transform = _pair_transform(pair_class.l_a, pair_class.l_b, cartesian)
    if np.array_equal(transform, np.eye(*transform.shape)):
        return pairs
    return pairs._replace(hermite=jnp.einsum("pah,ai->pih", pairs.hermite, transform))


class QuartetArrays(NamedTuple):
    """The arrays of one ``BlockedQuartets`` as arguments of the compiled program.

    Attributes:
        bra_pair: ``(n_blocks, slots)`` bra shell pair of each quartet of each block.
        ket_pair: ``(n_blocks, slots)`` ket shell pair.
        count: ``(n_blocks,)`` quartets in each block.
    """

    bra_pair: jax.Array
    ket_pair: jax.Array
    count: jax.Array


class PairArrays(NamedTuple):
    """A ``PrimitiveSelection``'s arrays as arguments of the compiled program."""

    order: jax.Array
    count: jax.Array


def plan_arguments(plan: tuple[BlockedQuartets, ...], selection) -> tuple[tuple, tuple]:
    """A plan's static keys ``(bra, ket, block)`` and its (numpy) array arguments.

    Returns:
        ``(keys, (quartet_arrays, pair_arrays))``: a ``QuartetArrays`` per quartet class and a
        ``PairArrays`` per pair class (from the ``primitive_selection`` the plan was made with).
    """
    keys = tuple((q.bra, q.ket, q.block) for q in plan)
    quartets = tuple(QuartetArrays(*q.arrays()) for q in plan)
    return keys, (quartets, tuple(PairArrays(*s.arrays()) for s in selection))


def primitive_quartet_integrals(
    bra: PairClass,
    ket: PairClass,
    bra_pp: PrimitivePairs,
    ket_pp: PrimitivePairs,
    bra_prim: jax.Array,
    ket_prim: jax.Array,
) -> jax.Array:
    """``(n_bra_rows, n_ket_rows, n)`` integrals of primitive quartets.

    The rows are those of the pairs' Hermite coefficients: raw cartesian component pairs, or
    basis function pairs (``_in_basis``). Only the coefficients that can be nonzero enter.

    Args:
        bra: the bra pair class.
        ket: the ket pair class.
        bra_pp: ``primitive_pairs`` of the bra class.
        ket_pp: ``primitive_pairs`` of the ket class.
        bra_prim: ``(n,)`` bra primitive pair of each primitive quartet.
        ket_prim: ``(n,)`` ket primitive pair.
    """
    l_bra, l_ket = bra.l_a + bra.l_b, ket.l_a + ket.l_b
    gather, sign = _hermite_product(l_bra, l_ket)
    p = bra_pp.exponent[bra_prim]
    q = ket_pp.exponent[ket_prim]
    r_pq = (bra_pp.center[bra_prim] - ket_pp.center[ket_prim]).T
    r = hermite_coulomb(l_bra + l_ket, p * q / (p + q), r_pq)
    r = r * (2 * jnp.pi**2.5 / (p * q * jnp.sqrt(p + q)))
    bra_e, bra_h = _nonzero_hermite(bra, bra_pp)
    ket_e, ket_h = _nonzero_hermite(ket, ket_pp)
    e_bra = jnp.moveaxis(bra_e, 0, -1)[..., bra_prim]
    e_ket = jnp.moveaxis(ket_e * sign[ket_h], 0, -1)[..., ket_prim]
    # the ket side first, (n_hermite_bra, n_ket_rows, n); as a reduction XLA computes it once
    # rather than again for every bra row, which pays once the bra has more than three rows
    if e_bra.shape[0] <= 3:
        ket_r = sum(e_ket[None, :, j] * r[gather[:, ket_h[:, j]]] for j in range(ket_h.shape[1]))
    else:
        ket_r = jnp.sum(e_ket[None] * r[gather[:, ket_h]], axis=2)
    return sum(e_bra[:, j, None] * ket_r[bra_h[:, j]] for j in range(bra_h.shape[1]))


@functools.cache
def _hermite_support(l_a: int, l_b: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the Hermite coefficients of a pair class can be nonzero, row by row.

    ``E^{ab}_{tuv}`` vanishes unless ``t``, ``u`` and ``v`` are at most the powers of ``ab``
    along each axis; a row over basis functions (``n_rows`` other than the cartesian count:
    spherical ones) can be nonzero where any of its cartesian components can.

    Returns:
        ``(n_rows, m)`` Hermite positions (``m``: the most of any row) and a mask that is 0 on
        the positions that only pad a row.
    """
    powers_a, powers_b, hermite = component_indices(l_a, l_b)
    support = np.all(hermite[None] <= (powers_a + powers_b)[:, None], axis=-1)
    if n_rows != support.shape[0]:
        support = np.abs(_pair_transform(l_a, l_b, False)).T @ support > 0
    index = np.zeros((n_rows, int(support.sum(1).max())), dtype=np.int64)
    mask = np.zeros(index.shape)
    for row, nonzero in enumerate(support):
        h = np.flatnonzero(nonzero)
        index[row, : h.size], mask[row, : h.size] = h, 1.0
    return index, mask


def _nonzero_hermite(pair_class: PairClass, pairs: PrimitivePairs) -> tuple[jax.Array, np.ndarray]:
    """The Hermite coefficients that can be nonzero, ``(n_prim, n_rows, m)``, and positions.

    The positions are the static ``(n_rows, m)`` ones of ``_hermite_support``; padding is 0.
    """
    n_rows = pairs.hermite.shape[1]
    index, mask = _hermite_support(pair_class.l_a, pair_class.l_b, n_rows)
    return pairs.hermite[:, np.arange(n_rows)[:, None], index] * mask, index


def _primitive_indices(
    quartets: QuartetArrays,
    block: int,
    bra: PairClass,
    ket: PairClass,
    bra_kept: PairArrays,
    ket_kept: PairArrays,
):
    """Per primitive quartet of a block (a row of ``QuartetArrays``): quartet slot, pairs."""
    bra_pair, ket_pair, count = quartets
    slots = bra_pair.shape[0]
    present = jnp.arange(slots) < count
    bra_count = bra_kept.count[bra_pair]
    ket_count = ket_kept.count[ket_pair]
    sizes = jnp.where(present, bra_count * ket_count, 0)
    ends = jnp.cumsum(sizes)
    start = ends - sizes  # first primitive quartet of each quartet in the block
    total = ends[-1]
    # quartet of each primitive quartet: mark where each quartet starts, then count the marks
    marks = jnp.zeros(block, jnp.int32).at[jnp.where(present, start, block)].add(1, mode="drop")
    quartet = jnp.clip(jnp.cumsum(marks) - 1, 0, slots - 1)
    t = jnp.arange(block, dtype=jnp.int32)
    local = t - start[quartet]
    width = jnp.maximum(ket_count[quartet], 1)
    bra_slot = jnp.asarray(bra.prim_start, jnp.int32)[bra_pair[quartet]] + local // width
    ket_slot = jnp.asarray(ket.prim_start, jnp.int32)[ket_pair[quartet]] + local % width
    bra_prim = bra_kept.order[jnp.clip(bra_slot, 0, bra_kept.order.shape[0] - 1)]
    ket_prim = ket_kept.order[jnp.clip(ket_slot, 0, ket_kept.order.shape[0] - 1)]
    used = t < total
    segment = jnp.where(used, quartet, slots)  # out of range: dropped by segment_sum
    return segment, jnp.where(used, bra_prim, 0), jnp.where(used, ket_prim, 0), present


def _block_values(bra, ket, block, bra_pp, ket_pp, bra_kept, ket_kept, quartets):
    """``(slots, n_func_bra_pair, n_func_ket_pair)`` integrals of one block's quartets.

    The pairs' Hermite coefficients are over basis function pairs already (``_in_basis``).
    """
    segment, bra_prim, ket_prim, present = _primitive_indices(
        quartets, block, bra, ket, bra_kept, ket_kept
    )
    values = primitive_quartet_integrals(bra, ket, bra_pp, ket_pp, bra_prim, ket_prim)
    summed = jax.ops.segment_sum(
        jnp.moveaxis(values, -1, 0), segment, num_segments=present.size, indices_are_sorted=True
    )
    return summed, present


class ClassSide(NamedTuple):
    """One side (bra or ket) of a blocked integral: its pair classes and their arrays.

    Attributes:
        classes: the ``PairClass`` es (static).
        pairs: ``primitive_pairs`` of each class.
        kept: the ``PairArrays`` of each class (which primitive pairs are computed).
    """

    classes: tuple[PairClass, ...]
    pairs: list[PrimitivePairs]
    kept: tuple[PairArrays, ...]


def scan_class_blocks(
    bra: ClassSide, ket: ClassSide, cartesian: bool, keys, quartet_arrays, consume, carry, skip=None
):
    """Fold ``consume(carry, key, values, bra_pair, ket_pair, present)`` over every block.

    The general form of ``scan_blocks``: bra and ket pairs may come from different classes
    (the orbital pairs and the auxiliary "pairs" of density fitting, for instance).

    Args:
        bra: the bra side.
        ket: the ket side.
        cartesian: cartesian instead of spherical functions (static).
        keys: static ``(bra class, ket class, block)`` of each quartet class.
        quartet_arrays: a ``QuartetArrays`` per key.
        consume: the consumer of one block (returns the new carry).
        carry: the initial carry.
        skip: ``skip(key, quartets) -> bool`` of a block's ``QuartetArrays`` row, or None:
            blocks for which it is true are neither computed nor consumed (``lax.cond``; under
            ``vmap`` over a batched predicate both branches run).

    Returns:
        The final carry.
    """
    for key, arrays in zip(keys, quartet_arrays, strict=True):
        cb, ck, block = key
        bra_class, ket_class = bra.classes[cb], ket.classes[ck]
        bra_pp = _in_basis(bra_class, bra.pairs[cb], cartesian)
        ket_pp = _in_basis(ket_class, ket.pairs[ck], cartesian)
        sides = (bra_pp, ket_pp, bra.kept[cb], ket.kept[ck])
        values_of = jax.checkpoint(
            functools.partial(_block_values, bra_class, ket_class, block), prevent_cse=False
        )

        def body(state, quartets, key=key, sides=sides, values_of=values_of):
            def computed(state):
                values, present = values_of(*sides, quartets)
                return consume(state, key, values, quartets.bra_pair, quartets.ket_pair, present)

            if skip is None:
                return computed(state), None
            return jax.lax.cond(skip(key, quartets), lambda s: s, computed, state), None

        carry, _ = jax.lax.scan(body, carry, arrays)
    return carry


def scan_blocks(
    basis: BasisSet, keys, plan_arrays, pairs: list[PrimitivePairs], consume, carry, skip=None
):
    """Fold ``consume(carry, key, values, bra_pair, ket_pair, present)`` over every block.

    Args:
        basis: the basis set (static).
        keys: the plan's static keys (``plan_arguments``).
        plan_arrays: the plan's arrays (``plan_arguments``).
        pairs: ``primitive_pairs`` of every pair class.
        consume: the consumer of one block (returns the new carry).
        carry: the initial carry.
        skip: blocks to leave out, or None (see ``scan_class_blocks``).

    Returns:
        The final carry.
    """
    quartet_arrays, pair_arrays = plan_arrays
    side = ClassSide(shell_pairs(basis)[0], pairs, pair_arrays)
    return scan_class_blocks(
        side, side, basis.cartesian, keys, quartet_arrays, consume, carry, skip
    )


def block_placer(rows_of, cols_of, symmetric: bool):
    """A ``scan_class_blocks`` consumer that writes each block into a matrix.

    Args:
        rows_of: ``(bra class, bra pair) -> first row`` of each bra pair's functions.
        cols_of: ``(ket class, ket pair) -> first column`` of each ket pair's functions.
        symmetric: also write the transposed block (a symmetric matrix from unique quartets).

    Returns:
        ``place(matrix, key, values, bra_pair, ket_pair, present) -> matrix``; absent quartets
        are dropped.
    """

    def place(matrix, key, values, bra_pair, ket_pair, present):
        rows = rows_of(key[0], bra_pair)[:, None] + jnp.arange(values.shape[1])
        cols = cols_of(key[1], ket_pair)[:, None] + jnp.arange(values.shape[2])
        rows = jnp.where(present[:, None], rows, matrix.shape[0])  # absent quartets: dropped
        matrix = matrix.at[rows[:, :, None], cols[:, None, :]].set(values, mode="drop")
        if not symmetric:
            return matrix
        transposed = jnp.swapaxes(values, 1, 2)
        return matrix.at[cols[:, :, None], rows[:, None, :]].set(transposed, mode="drop")

    return place


def coulomb_supermatrix(basis: BasisSet, keys, plan_arrays, pairs) -> jax.Array:
    """``E[(ij), (kl)] = (ij|kl)`` over the extended pairs of ``pair_layout(basis)``."""
    layout = pair_layout(basis)
    offsets = jnp.asarray(layout.pair_offset, jnp.int32)

    def first_row(pair_class: int, pair: jax.Array) -> jax.Array:
        return offsets[layout.class_offsets[pair_class] + pair]

    dtype = pairs[0].exponent.dtype
    empty = jnp.zeros((layout.n_ext, layout.n_ext), dtype)
    place = block_placer(first_row, first_row, symmetric=True)
    return scan_blocks(basis, keys, plan_arrays, pairs, place, empty)


def schwarz_pair_bounds(basis: BasisSet, keys, plan_arrays, pairs) -> jax.Array:
    """``sqrt(max_ab (ab|ab))`` of every shell pair (class order), from a ``diagonal_plan``."""
    layout = pair_layout(basis)

    def largest(bounds, key, values, bra_pair, ket_pair, present):
        diagonal = jnp.max(jnp.abs(jnp.diagonal(values, axis1=1, axis2=2)), axis=1)
        index = jnp.where(present, layout.class_offsets[key[0]] + bra_pair, bounds.size)
        return bounds.at[index].max(diagonal, mode="drop")

    dtype = pairs[0].exponent.dtype
    bounds = jnp.zeros(layout.pair_shells.shape[0], dtype)
    return jnp.sqrt(scan_blocks(basis, keys, plan_arrays, pairs, largest, bounds))
