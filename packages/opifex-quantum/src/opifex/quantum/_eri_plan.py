"""Host-side plan of the two-electron integrals: pair layout, unique quartets, blocks, screening.

Everything here is numpy, computed once per basis set (and, when screening, per geometry):

- ``pair_layout``: the *extended pairs* of basis functions, one row per function pair ``(i, j)``
  with ``i`` on shell ``A`` and ``j`` on shell ``B`` for every unique shell pair ``A >= B`` (both
  orders when ``A == B``), grouped by shell pair. The two supermatrices of
  ``opifex.quantum._eri_supermatrix`` are indexed by them.
- ``quartet_plan``: the unique shell quartets (8-fold symmetry: shell pairs ``AB >= CD``) grouped
  by the angular-momentum classes of their bra and ket pairs, optionally Schwarz-screened
  (``sqrt((AB|AB)) sqrt((CD|CD)) < threshold`` dropped), packed into blocks of at most ``block``
  primitive quartets and at most ``slots`` shell quartets. The block count is rounded up to a few
  sizes per octave so that a nearby geometry reuses the compiled program. The compiled kernel
  loops over the blocks, so its size depends on the angular momenta and the block size, not on
  the molecule.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._shell_pairs import shell_pairs

_BLOCK_ELEMENTS = 2**17  # entries of a block's largest array (1 MB of float64)
_COMBINATION_CHUNK = 2**22  # (bra, ket) combinations screened at once by the plans


def shell_functions(basis: BasisSet) -> tuple[np.ndarray, np.ndarray]:
    """First basis function of each shell (``(n_shells + 1,)`` offsets) and each shell's count.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> offsets, counts = shell_functions(build_basis([8, 1, 1], "sto-3g"))
        >>> offsets.tolist(), counts.tolist()
        ([0, 1, 2, 5, 6, 7], [1, 1, 3, 1, 1])
    """
    counts = np.asarray([basis_block_width(basis, s.l) for s in basis.shells])
    return np.concatenate([[0], np.cumsum(counts)]), counts


def basis_block_width(basis: BasisSet, l: int) -> int:  # noqa: E741
    """Number of basis functions of a shell of angular momentum ``l`` in ``basis``."""
    return (l + 1) * (l + 2) // 2 if basis.cartesian or l < 2 else 2 * l + 1


@dataclasses.dataclass(frozen=True, eq=False)
class PairLayout:
    """The extended function pairs of a basis (see the module docstring); all numpy.

    Attributes:
        n_functions: basis functions ``n``.
        pair_shells: ``(n_pairs, 2)`` shells ``(A, B)`` of every shell pair, class by class.
        pair_offset: ``(n_pairs,)`` first extended row of each shell pair.
        rows_i: ``(n_ext,)`` first function of each extended pair.
        rows_j: ``(n_ext,)`` second function.
        weight: ``(n_ext,)`` 2 where ``A != B`` (the row stands for ``(i, j)`` and ``(j, i)``),
            1 on a diagonal shell pair (both orders have their own row).
        index: ``(n, n)`` an extended row of every function pair ``(i, j)``.
        class_offsets: first global pair of each pair class (``(n_classes + 1,)``).
    """

    n_functions: int
    pair_shells: np.ndarray
    pair_offset: np.ndarray
    rows_i: np.ndarray
    rows_j: np.ndarray
    weight: np.ndarray
    index: np.ndarray
    class_offsets: np.ndarray

    @property
    def n_ext(self) -> int:
        """Number of extended pairs (rows of a supermatrix)."""
        return self.rows_i.size


def _pair_shells(basis: BasisSet) -> tuple[np.ndarray, np.ndarray]:
    """Shells ``(A, B)`` of every pair of ``shell_pairs`` (class order) and class offsets."""
    classes, _ = shell_pairs(basis)
    sizes = [pc.n_pairs for pc in classes]
    return np.concatenate([pc.shells for pc in classes]), np.concatenate([[0], np.cumsum(sizes)])


@functools.cache
def pair_layout(basis: BasisSet) -> PairLayout:
    """The extended pairs of ``basis`` (cached per basis).

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> layout = pair_layout(build_basis([8, 1, 1], "sto-3g"))
        >>> layout.n_functions, layout.n_ext, int(layout.weight.sum())
        (7, 31, 49)
    """
    pair_shells, class_offsets = _pair_shells(basis)
    offsets, counts = shell_functions(basis)
    n = int(offsets[-1])
    widths = counts[pair_shells[:, 0]] * counts[pair_shells[:, 1]]
    pair_offset = np.concatenate([[0], np.cumsum(widths)[:-1]])
    index = np.full((n, n), -1, dtype=np.int64)
    rows_i, rows_j, weight = [], [], []
    for (a, b), start in zip(pair_shells, pair_offset, strict=True):
        fa = np.arange(offsets[a], offsets[a + 1])
        fb = np.arange(offsets[b], offsets[b + 1])
        rows = start + np.arange(fa.size * fb.size).reshape(fa.size, fb.size)
        index[fb[:, None], fa[None, :]] = rows.T
        index[fa[:, None], fb[None, :]] = rows
        rows_i.append(np.repeat(fa, fb.size))
        rows_j.append(np.tile(fb, fa.size))
        weight.append(np.full(rows.size, 1.0 if a == b else 2.0))
    assert (index >= 0).all(), "shell pairs do not cover the function pairs"
    return PairLayout(
        n_functions=n,
        pair_shells=pair_shells,
        pair_offset=pair_offset,
        rows_i=np.concatenate(rows_i),
        rows_j=np.concatenate(rows_j),
        weight=np.concatenate(weight),
        index=index,
        class_offsets=class_offsets,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class BlockedQuartets:
    """The unique shell quartets of one (bra class, ket class), packed into blocks.

    Attributes:
        bra: index of the bra pair class.
        ket: index of the ket pair class (``ket <= bra``).
        block: primitive quartets per block (static).
        slots: shell quartets per block at most (a power of two).
        bra_pair: ``(n_quartets,)`` bra shell pair (within its class) of each quartet.
        ket_pair: ``(n_quartets,)`` ket shell pair.
        block_first: ``(n_blocks,)`` first quartet of each block.
        block_count: ``(n_blocks,)`` quartets in each block (0 for padding blocks).
    """

    bra: int
    ket: int
    block: int
    slots: int
    bra_pair: np.ndarray
    ket_pair: np.ndarray
    block_first: np.ndarray
    block_count: np.ndarray

    @property
    def n_quartets(self) -> int:
        """Number of quartets (``block_count.sum()``)."""
        return int(self.block_count.sum())

    def arrays(self) -> tuple[np.ndarray, ...]:
        """What the kernel reads, a row per block (``QuartetArrays``).

        ``bra_pair`` and ``ket_pair`` of the block's quartets (``(n_blocks, slots)``, 0 past
        its count), and ``block_count``.
        """
        present = np.arange(self.slots) < self.block_count[:, None]
        index = np.where(present, self.block_first[:, None] + np.arange(self.slots), 0)
        rows = (np.where(present, x[index], 0) for x in (self.bra_pair, self.ket_pair))
        return (*(r.astype(np.int32) for r in rows), self.block_count)


@dataclasses.dataclass(frozen=True, eq=False)
class PrimitiveSelection:
    """The primitive pairs of one pair class that are computed, each shell pair's first.

    Attributes:
        order: ``(n_prim,)`` primitive pairs of the class, permuted within each shell pair's
            range (``prim_start`` .. ``+ prim_count``) so that the kept ones come first.
        count: ``(n_pairs,)`` kept primitive pairs of each shell pair.
    """

    order: np.ndarray
    count: np.ndarray

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The arrays the kernel reads."""
        return self.order, self.count


def primitive_selection(
    basis: BasisSet, coordinates: np.ndarray | None = None, threshold: float = 0.0
) -> tuple[PrimitiveSelection, ...]:
    """Per pair class, the primitive pairs whose integrals can exceed ``threshold``.

    A primitive pair ``ab`` with product prefactor ``K_ab = |c_a c_b| exp(-a b / p R_AB^2)``
    contributes at most ``K_ab K_max 2 pi^(5/2) / (p q_min sqrt(p + q_min))`` to any primitive
    integral (``K_max`` and ``q_min``: the largest prefactor and smallest exponent of any pair);
    pairs below ``threshold`` are left out. Without ``coordinates`` every pair is kept.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> import numpy as np
        >>> basis = build_basis([6, 6], "6-31g")
        >>> far = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]])
        >>> kept = [int(s.count.sum()) for s in primitive_selection(basis, far, 1e-16)]
        >>> total = [int(s.count.sum()) for s in primitive_selection(basis)]
        >>> sum(kept) < sum(total)
        True
    """
    classes, _ = shell_pairs(basis)
    if coordinates is None or threshold <= 0.0:
        return tuple(
            PrimitiveSelection(
                np.arange(pc.coef.size, dtype=np.int32), pc.prim_count.astype(np.int32)
            )
            for pc in classes
        )
    coordinates = np.asarray(coordinates, dtype=np.float64)
    prefactors, exponents = [], []
    for pc in classes:
        p = pc.exp_a + pc.exp_b
        distance2 = np.sum((coordinates[pc.atom_a] - coordinates[pc.atom_b]) ** 2, axis=1)
        prefactors.append(np.abs(pc.coef) * np.exp(-pc.exp_a * pc.exp_b / p * distance2))
        exponents.append(p)
    k_max = max(k.max() for k in prefactors)
    q_min = min(p.min() for p in exponents)
    selections = []
    for pc, k, p in zip(classes, prefactors, exponents, strict=True):
        keep = k * k_max * 2 * np.pi**2.5 / (p * q_min * np.sqrt(p + q_min)) >= threshold
        order = np.lexsort((np.arange(keep.size), ~keep, pc.pair_id)).astype(np.int32)
        count = np.bincount(pc.pair_id, weights=keep, minlength=pc.n_pairs).astype(np.int32)
        selections.append(PrimitiveSelection(order, count))
    return tuple(selections)


def rounded_up(count: int) -> int:
    """``count`` rounded up to 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20 ... (4 per octave).

    Example:
        >>> [rounded_up(n) for n in (0, 5, 9, 17, 100)]
        [0, 5, 10, 20, 112]
    """
    if count <= 8:
        return count
    step = 2 ** (int(np.log2(count)) - 2)
    return -(-count // step) * step


def _block_size(l_bra: tuple[int, int], l_ket: tuple[int, int], largest: int) -> int:
    """Primitive quartets per block: the block's largest arrays stay near the CPU caches."""
    cart = [(l + 1) * (l + 2) // 2 for l in (*l_bra, *l_ket)]  # noqa: E741
    order = sum(l_bra) + sum(l_ket)
    hermite = (order + 1) * (order + 2) * (order + 3) // 6
    size = _BLOCK_ELEMENTS // max(int(np.prod(cart)), hermite)
    size = 2 ** int(np.clip(np.floor(np.log2(max(size, 1))), 8, 16))
    return max(size, 2 ** int(np.ceil(np.log2(largest))))


def _slot_count(counts: np.ndarray, block: int) -> int:
    """Shell quartets per block: room for twice the average share, a power of two, <= ``block``.

    The work per block on contracted quartets (sums, transformation, placement) grows with the
    slots, not with the quartets present, so they are not made much larger than needed.
    """
    share = 2 * block * counts.size / counts.sum()
    return min(block, 2 ** int(np.ceil(np.log2(share))))


def _pack(counts: np.ndarray, block: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy blocks of whole quartets: at most ``block`` primitive quartets, ``slots`` quartets.

    Returns:
        The first quartet of each block and the quartets in each.
    """
    ends = np.cumsum(counts, dtype=np.int64)
    firsts, first = [], 0
    while first < counts.size:
        base = ends[first] - counts[first]
        firsts.append(first)
        first = min(int(np.searchsorted(ends, base + block, side="right")), first + slots)
    firsts = np.asarray(firsts, dtype=np.int64)
    return firsts, np.diff(np.append(firsts, counts.size))


def _blocked(bra, ket, bra_pair, ket_pair, counts, l_bra, l_ket) -> BlockedQuartets:
    """Pack one class's quartets into blocks; pad the block list to a rounded-up length."""
    block = _block_size(l_bra, l_ket, int(counts.max()))
    slots = _slot_count(counts, block)
    firsts, block_count = _pack(counts, block, slots)
    pad_blocks = rounded_up(firsts.size) - firsts.size
    return BlockedQuartets(
        bra=bra,
        ket=ket,
        block=block,
        slots=slots,
        bra_pair=np.asarray(bra_pair, np.int32),
        ket_pair=np.asarray(ket_pair, np.int32),
        block_first=np.pad(firsts, (0, pad_blocks), constant_values=bra_pair.size),
        block_count=np.pad(block_count, (0, pad_blocks)).astype(np.int32),
    )


def _screened_combinations(n_bra, n_ket, lower, bra_bound, ket_bound, threshold):
    """``(bra, ket)`` pairs of two classes whose bound product reaches ``threshold``.

    ``lower``: only ``ket <= bra`` (one class against itself). Taken a few rows of bra pairs at a
    time, so that no ``n_bra x n_ket`` array is made at once.
    """
    rows = max(1, _COMBINATION_CHUNK // max(n_ket, 1))
    kets = np.arange(n_ket, dtype=np.int32)
    bras, kets_kept = [], []
    for first in range(0, n_bra, rows):
        bra = np.arange(first, min(first + rows, n_bra), dtype=np.int32)
        keep = np.ones((bra.size, n_ket), dtype=bool)
        if lower:
            keep &= kets[None, :] <= bra[:, None]
        if bra_bound is not None:
            keep &= bra_bound[bra][:, None] * ket_bound[None, :] >= threshold
        b, k = np.nonzero(keep)
        bras.append(bra[b])
        kets_kept.append(k.astype(np.int32))
    return np.concatenate(bras), np.concatenate(kets_kept)


def class_pair_quartets(
    bra_classes,
    ket_classes,
    bra_counts,
    ket_counts,
    bra_bound,
    ket_bound,
    threshold,
    lower,
    by_bound=False,
) -> tuple[BlockedQuartets, ...]:
    """Every (bra pair, ket pair) of every class pair, screened, in blocks.

    Args:
        bra_classes: the bra ``PairClass`` es.
        ket_classes: the ket ``PairClass`` es.
        bra_counts: per bra class, the primitive pairs computed of each pair (0: pair dropped).
        ket_counts: the same for the ket classes.
        bra_bound: ``(n_bra_pairs,)`` Schwarz bound of every bra pair (class order), or None.
        ket_bound: the same for the ket pairs.
        threshold: combinations whose bound product is below it are dropped.
        lower: bra and ket are one set of classes; keep ket class ``<=`` bra class and, within
            a class, ket pair ``<=`` bra pair (the unique quartets).
        by_bound: order each class pair's combinations by decreasing bound product (needs the
            bounds), so that a block holds quartets of similar size: density screening can
            then skip whole blocks (direct SCF). Otherwise bra pair major.

    Returns:
        A ``BlockedQuartets`` per class pair with any combination left, bra class major.
    """
    plan = []
    bra_start = np.cumsum([0, *(c.n_pairs for c in bra_classes)])
    ket_start = np.cumsum([0, *(c.n_pairs for c in ket_classes)])
    for cb, bra in enumerate(bra_classes):
        for ck, ket in enumerate(ket_classes):
            if lower and ck > cb:
                continue
            bounds = (None, None)
            if bra_bound is not None:
                bounds = (
                    bra_bound[bra_start[cb] : bra_start[cb + 1]],
                    ket_bound[ket_start[ck] : ket_start[ck + 1]],
                )
            bra_pair, ket_pair = _screened_combinations(
                bra.n_pairs, ket.n_pairs, lower and ck == cb, *bounds, threshold
            )
            counts = bra_counts[cb][bra_pair] * ket_counts[ck][ket_pair]
            keep = counts > 0
            if not keep.any():
                continue
            bra_pair, ket_pair, counts = bra_pair[keep], ket_pair[keep], counts[keep]
            if by_bound:
                order = np.argsort(-(bounds[0][bra_pair] * bounds[1][ket_pair]), kind="stable")
                bra_pair, ket_pair, counts = bra_pair[order], ket_pair[order], counts[order]
            plan.append(
                _blocked(cb, ck, bra_pair, ket_pair, counts, (bra.l_a, bra.l_b), (ket.l_a, ket.l_b))
            )
    return tuple(plan)


def quartet_plan(
    basis: BasisSet,
    pair_bound: np.ndarray | None = None,
    threshold: float = 0.0,
    selection: tuple[PrimitiveSelection, ...] | None = None,
    by_bound: bool = False,
):
    """The unique shell quartets of ``basis``, Schwarz-screened when ``pair_bound`` is given.

    Args:
        basis: the basis set.
        pair_bound: ``(n_pairs,)`` ``sqrt(max (ab|ab))`` of every shell pair (class order), or
            None to keep every quartet.
        threshold: quartets with ``pair_bound[AB] * pair_bound[CD] < threshold`` are dropped.
        selection: the primitive pairs computed (``primitive_selection``; default all); a
            quartet with no primitive pair left on one side is dropped.
        by_bound: quartets ordered by decreasing bound (see ``class_pair_quartets``).

    Returns:
        A tuple of ``BlockedQuartets``, one per (bra class, ket class) with any quartet.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> plan = quartet_plan(build_basis([8, 1, 1], "sto-3g"))
        >>> [(q.bra, q.ket, q.n_quartets) for q in plan]
        [(0, 0, 55), (1, 0, 40), (1, 1, 10), (2, 0, 10), (2, 1, 4), (2, 2, 1)]
    """
    classes, _ = shell_pairs(basis)
    if selection is None:
        selection = primitive_selection(basis)
    counts = [s.count for s in selection]
    return class_pair_quartets(
        classes, classes, counts, counts, pair_bound, pair_bound, threshold, True, by_bound
    )


def diagonal_plan(basis: BasisSet) -> tuple[BlockedQuartets, ...]:
    """The quartets ``(AB|AB)`` of every shell pair, for the Schwarz bounds.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> [q.n_quartets for q in diagonal_plan(build_basis([8, 1, 1], "sto-3g"))]
        [10, 4, 1]
    """
    classes, _ = shell_pairs(basis)
    plan = []
    for c, pc in enumerate(classes):
        pairs = np.arange(pc.n_pairs)
        l_pair = (pc.l_a, pc.l_b)
        plan.append(_blocked(c, c, pairs, pairs, pc.prim_count**2, l_pair, l_pair))
    return tuple(plan)
