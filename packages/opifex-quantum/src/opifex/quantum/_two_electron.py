"""The dense electron-repulsion tensor of a small basis, all unique quartets in one shot.

``eri_layout="dense"`` (bases up to ``DENSE_MAX_FUNCTIONS``): every primitive quartet of a class
at once, with static index arrays, which XLA compiles several times faster than the blocked
loops of ``opifex.quantum._eri_engine`` (used for larger bases); both share
``primitive_quartet_integrals``, and the tests hold them to each other.

Only the shell quartets unique under the 8-fold permutational symmetry (pairs ``i >= j``,
``k >= l``, pair ``ij >= kl``) are computed, grouped into classes by the angular momenta of their
bra and ket pairs. For each class, every primitive quartet is computed at once:
``(ab|cd) = 2 pi^(5/2) / (p q sqrt(p + q)) sum E^{ab}_{tuv} (-1)^(t'+u'+v') E^{cd}_{t'u'v'}
R_{t+t',u+u',v+v'}(pq / (p + q), P - Q)``, summed over the primitives of each shell quartet with a
static ``segment_sum``; one static gather then fills all 8 positions of every integral in the
cartesian tensor before it is transformed to the basis.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._eri_engine import _hermite_product
from opifex.quantum._hermite import hermite_coulomb
from opifex.quantum._shell_pairs import PairClass, PrimitivePairs, primitive_pairs, shell_pairs


@dataclasses.dataclass(frozen=True, eq=False)
class QuartetClass:
    """The unique shell quartets whose bra and ket pairs lie in two given pair classes.

    Attributes:
        bra: index of the bra pair class.
        ket: index of the ket pair class (``ket <= bra``).
        bra_pair: ``(n_quartets,)`` bra shell pair within its class.
        ket_pair: ``(n_quartets,)`` ket shell pair within its class.
        bra_prim: ``(n_prim,)`` bra primitive pair of each primitive quartet.
        ket_prim: ``(n_prim,)`` ket primitive pair of each primitive quartet.
        quartet_id: ``(n_prim,)`` shell quartet of each primitive quartet, sorted.
    """

    bra: int
    ket: int
    bra_pair: np.ndarray
    ket_pair: np.ndarray
    bra_prim: np.ndarray
    ket_prim: np.ndarray
    quartet_id: np.ndarray

    @property
    def n_quartets(self) -> int:
        """Number of shell quartets in the class."""
        return self.bra_pair.size


def _primitive_quartets(bra: PairClass, ket: PairClass, bra_pair, ket_pair) -> tuple:
    bra_count = bra.prim_count[bra_pair]
    ket_count = ket.prim_count[ket_pair]
    sizes = bra_count * ket_count
    quartet_id = np.repeat(np.arange(sizes.size), sizes)
    local = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ket_n = ket_count[quartet_id]
    bra_prim = bra.prim_start[bra_pair][quartet_id] + local // ket_n
    ket_prim = ket.prim_start[ket_pair][quartet_id] + local % ket_n
    return bra_prim, ket_prim, quartet_id


@functools.cache
def shell_quartets(basis: BasisSet) -> tuple[QuartetClass, ...]:
    """The unique shell quartets of a basis, grouped by the classes of their bra and ket pairs.

    Args:
        basis: the basis set.

    Returns:
        The ``QuartetClass`` es (at most 21 for s, p and d shells).

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> quartets = shell_quartets(build_basis([8, 1, 1], "sto-3g"))
        >>> len(quartets), sum(q.n_quartets for q in quartets)
        (6, 120)
    """
    classes, pair_index = shell_pairs(basis)
    grouped: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for big in range(len(pair_index)):
        for small in range(big + 1):
            (cb, pb), (ck, pk) = pair_index[big], pair_index[small]
            if cb < ck:
                (cb, pb), (ck, pk) = (ck, pk), (cb, pb)
            grouped.setdefault((cb, ck), []).append((pb, pk))
    out = []
    for (cb, ck), quartets in sorted(grouped.items()):
        bra_pair, ket_pair = (np.asarray(x) for x in zip(*quartets, strict=True))
        prims = _primitive_quartets(classes[cb], classes[ck], bra_pair, ket_pair)
        out.append(QuartetClass(cb, ck, bra_pair, ket_pair, *prims))
    return tuple(out)


@functools.cache
def _tensor_gather(basis: BasisSet) -> np.ndarray:
    """``(n_cart,) * 4`` positions of every integral in the concatenated quartet blocks."""
    classes, _ = shell_pairs(basis)
    index = np.full((basis.n_cartesian,) * 4, -1, dtype=np.int64)
    offset = 0
    for qc in shell_quartets(basis):
        bra, ket = classes[qc.bra], classes[qc.ket]
        a, b = bra.func_a[qc.bra_pair], bra.func_b[qc.bra_pair]
        c, d = ket.func_a[qc.ket_pair], ket.func_b[qc.ket_pair]
        shape = (qc.n_quartets, a.shape[1], b.shape[1], c.shape[1], d.shape[1])
        flat = offset + np.arange(np.prod(shape)).reshape(shape)
        a = a[:, :, None, None, None]
        b = b[:, None, :, None, None]
        c = c[:, None, None, :, None]
        d = d[:, None, None, None, :]
        for p, q in ((a, b), (b, a)):
            for r, s in ((c, d), (d, c)):
                index[p, q, r, s] = flat
                index[r, s, p, q] = flat
        offset += flat.size
    assert (index >= 0).all(), "shell quartets do not cover the tensor"
    return index


def compact_quartet_integrals(
    bra: PairClass,
    ket: PairClass,
    bra_pp: PrimitivePairs,
    ket_pp: PrimitivePairs,
    bra_prim: np.ndarray,
    ket_prim: np.ndarray,
) -> jax.Array:
    """``(n, n_cart_bra_pair, n_cart_ket_pair)`` raw cartesian integrals of primitive quartets.

    The same sum as ``_eri_engine.primitive_quartet_integrals``, as one ``einsum`` over every
    Hermite coefficient: slower to run, but a smaller program, so quicker to compile (and to
    differentiate), which is what the one-shot dense path of small bases needs.
    """
    l_bra, l_ket = bra.l_a + bra.l_b, ket.l_a + ket.l_b
    gather, sign = _hermite_product(l_bra, l_ket)
    p = bra_pp.exponent[bra_prim]
    q = ket_pp.exponent[ket_prim]
    r_pq = (bra_pp.center[bra_prim] - ket_pp.center[ket_prim]).T
    r = hermite_coulomb(l_bra + l_ket, p * q / (p + q), r_pq)[gather]
    r = r * (2 * jnp.pi**2.5 / (p * q * jnp.sqrt(p + q)))
    return jnp.einsum(
        "qah,hkq,qck->qac", bra_pp.hermite[bra_prim], r, ket_pp.hermite[ket_prim] * sign
    )


def _class_integrals(
    qc: QuartetClass,
    bra_class: PairClass,
    ket_class: PairClass,
    bra: PrimitivePairs,
    ket: PrimitivePairs,
) -> jax.Array:
    """The contracted integrals of one quartet class, flattened."""
    values = compact_quartet_integrals(bra_class, ket_class, bra, ket, qc.bra_prim, qc.ket_prim)
    summed = jax.ops.segment_sum(
        values, qc.quartet_id, num_segments=qc.n_quartets, indices_are_sorted=True
    )
    return summed.reshape(-1)


def transform_eri(basis: BasisSet, eri: jax.Array) -> jax.Array:
    """Transform a cartesian ``(ij|kl)`` tensor to the basis, index by index with ``T``."""
    t = jnp.asarray(basis.cartesian_to_basis)
    for _ in range(4):  # each contraction moves the transformed index to the end
        eri = jnp.tensordot(eri, t, axes=([0], [0]))
    return eri


def eri_from_pairs(basis: BasisSet, pairs: list[PrimitivePairs]) -> jax.Array:
    """The ``(ij|kl)`` tensor from precomputed ``primitive_pairs`` per pair class."""
    classes, _ = shell_pairs(basis)
    blocks = [
        _class_integrals(qc, classes[qc.bra], classes[qc.ket], pairs[qc.bra], pairs[qc.ket])
        for qc in shell_quartets(basis)
    ]
    return transform_eri(basis, jnp.concatenate(blocks)[_tensor_gather(basis)])


def electron_repulsion_integrals(basis: BasisSet, coordinates: jax.Array) -> jax.Array:
    """Electron-repulsion integrals ``(ij|kl)`` over a basis, chemists' notation.

    Args:
        basis: the basis set (static).
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.

    Returns:
        The ``(n, n, n, n)`` tensor, ``n = basis.n_functions``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     eri = electron_repulsion_integrals(
        ...         basis, jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]))
        >>> round(float(eri[0, 0, 0, 0]), 4), round(float(eri[0, 0, 1, 1]), 4)
        (0.7746, 0.5697)
    """
    classes, _ = shell_pairs(basis)
    return eri_from_pairs(basis, [primitive_pairs(pc, coordinates) for pc in classes])
