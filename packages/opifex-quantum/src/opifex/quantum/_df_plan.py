"""Host-side plan of density fitting: auxiliary "pairs" and the blocked 2- and 3-centre integrals.

An auxiliary function ``P`` is treated as the pair ``P * 1`` of itself and an s function of
exponent 0 (the constant 1), so ``(ij|P) = (ij|P 1)`` and ``(P|Q) = (P 1|Q 1)`` are
electron-repulsion integrals of the existing kernels (``opifex.quantum._eri_engine``). Here, all
numpy and cached per basis set:

- ``auxiliary_classes``: the auxiliary shells grouped by angular momentum as ``PairClass`` es
  ``(l, 0)``;
- ``three_centre_plan``: every (orbital shell pair, auxiliary shell) combination, optionally
  Schwarz-screened (``sqrt((AB|AB)) sqrt((P|P)) < threshold`` dropped), packed into blocks like
  the four-centre quartets;
- ``metric_plan``: every pair of auxiliary shells.
"""

from __future__ import annotations

import functools

import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._eri_plan import BlockedQuartets, class_pair_quartets, shell_functions
from opifex.quantum._shell_pairs import PairClass, shell_pairs


@functools.cache
def auxiliary_classes(aux: BasisSet) -> tuple[PairClass, ...]:
    """The auxiliary shells of ``aux`` as pair classes ``(l, 0)`` with the constant function.

    ``func_a`` holds each shell's function indices in ``aux``'s order; ``func_b`` is zero.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> aux = build_basis([1], "def2-universal-jkfit")
        >>> [(c.l_a, c.l_b, c.n_pairs) for c in auxiliary_classes(aux)]
        [(0, 0, 2), (1, 0, 2), (2, 0, 2)]
    """
    offsets, counts = shell_functions(aux)
    classes = []
    for l in sorted({s.l for s in aux.shells}):  # noqa: E741
        shells = [k for k, s in enumerate(aux.shells) if s.l == l]
        prims = [len(aux.shells[k].exponents) for k in shells]
        exponents = np.concatenate([aux.shells[k].exponents for k in shells])
        atoms = np.repeat([aux.shells[k].atom for k in shells], prims)
        classes.append(
            PairClass(
                l_a=l,
                l_b=0,
                exp_a=exponents,
                exp_b=np.zeros_like(exponents),
                coef=np.concatenate([aux.shells[k].coefficients for k in shells]),
                atom_a=atoms,
                atom_b=atoms,
                pair_id=np.repeat(np.arange(len(shells)), prims),
                prim_start=np.cumsum([0, *prims[:-1]]),
                prim_count=np.asarray(prims),
                func_a=np.asarray([np.arange(offsets[k], offsets[k] + counts[k]) for k in shells]),
                func_b=np.zeros((len(shells), 1), dtype=np.int64),
                shells=np.asarray([[k, k] for k in shells]),
            )
        )
    return tuple(classes)


def auxiliary_offsets(aux: BasisSet) -> np.ndarray:
    """First function (in ``aux``'s order) of each auxiliary shell, class by class."""
    return np.concatenate([c.func_a[:, 0] for c in auxiliary_classes(aux)])


def three_centre_plan(
    basis: BasisSet,
    aux: BasisSet,
    pair_bound: np.ndarray | None = None,
    aux_bound: np.ndarray | None = None,
    threshold: float = 0.0,
) -> tuple[BlockedQuartets, ...]:
    """The blocked ``(AB|P)`` of every orbital shell pair ``AB`` and auxiliary shell ``P``.

    Args:
        basis: the orbital basis (its pairs are the bra, ``shell_pairs`` order).
        aux: the auxiliary basis (the ket, ``auxiliary_classes`` order).
        pair_bound: ``sqrt(max (ab|ab))`` of every orbital shell pair, or None (keep all).
        aux_bound: ``sqrt(max (p|p))`` of every auxiliary shell (class order).
        threshold: combinations with ``pair_bound * aux_bound < threshold`` are dropped.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> aux = build_basis([1, 1], "def2-universal-jkfit")
        >>> [(q.bra, q.ket, q.n_quartets) for q in three_centre_plan(basis, aux)]
        [(0, 0, 12), (0, 1, 12), (0, 2, 12)]
    """
    orbital, _ = shell_pairs(basis)
    auxiliary = auxiliary_classes(aux)
    return class_pair_quartets(
        orbital,
        auxiliary,
        [c.prim_count for c in orbital],
        [c.prim_count for c in auxiliary],
        pair_bound,
        aux_bound,
        threshold,
        lower=False,
    )


def metric_plan(aux: BasisSet) -> tuple[BlockedQuartets, ...]:
    """The blocked ``(P|Q)`` of the auxiliary shell pairs ``P >= Q`` (class order).

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> aux = build_basis([1], "def2-universal-jkfit")
        >>> [(q.bra, q.ket, q.n_quartets) for q in metric_plan(aux)]
        [(0, 0, 3), (1, 0, 4), (1, 1, 3), (2, 0, 4), (2, 1, 4), (2, 2, 3)]
    """
    auxiliary = auxiliary_classes(aux)
    counts = [c.prim_count for c in auxiliary]
    return class_pair_quartets(auxiliary, auxiliary, counts, counts, None, None, 0.0, lower=True)
