"""Shell pairs grouped by angular-momentum class, and their primitive-pair Hermite data.

From the static ``BasisSet`` (numpy, cached per basis) come the unique shell pairs ``i >= j``,
ordered so that ``l_a >= l_b``, grouped into classes ``(l_a, l_b)`` with their primitive pairs
listed contiguously per shell pair. From the traced coordinates come, for every primitive pair of
a class at once, the Gaussian product centre, the exponent, the Hermite expansion of every
cartesian component pair, and the primitive overlap and kinetic integrals.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet, cartesian_powers
from opifex.quantum._hermite import hermite_coefficients, hermite_indices


@dataclasses.dataclass(frozen=True, eq=False)
class PairClass:
    """The shell pairs of one class ``(l_a, l_b)`` and their primitive pairs (all numpy).

    Attributes:
        l_a: angular momentum of the first shell (``l_a >= l_b``).
        l_b: angular momentum of the second shell.
        exp_a: ``(n_prim,)`` first exponents.
        exp_b: ``(n_prim,)`` second exponents.
        coef: ``(n_prim,)`` products of contraction coefficients.
        atom_a: ``(n_prim,)`` atom of the first shell.
        atom_b: ``(n_prim,)`` atom of the second shell.
        pair_id: ``(n_prim,)`` shell pair (within the class) of each primitive pair, sorted.
        prim_start: ``(n_pairs,)`` first primitive pair of each shell pair.
        prim_count: ``(n_pairs,)`` number of primitive pairs of each shell pair.
        func_a: ``(n_pairs, n_cart_a)`` cartesian function indices of the first shell.
        func_b: ``(n_pairs, n_cart_b)`` cartesian function indices of the second shell.
        shells: ``(n_pairs, 2)`` the two shells ``(A, B)`` of each pair (indices into
            ``basis.shells``).
    """

    l_a: int
    l_b: int
    exp_a: np.ndarray
    exp_b: np.ndarray
    coef: np.ndarray
    atom_a: np.ndarray
    atom_b: np.ndarray
    pair_id: np.ndarray
    prim_start: np.ndarray
    prim_count: np.ndarray
    func_a: np.ndarray
    func_b: np.ndarray
    shells: np.ndarray

    @property
    def n_pairs(self) -> int:
        """Number of shell pairs in the class."""
        return self.func_a.shape[0]


@functools.cache
def shell_pairs(basis: BasisSet) -> tuple[tuple[PairClass, ...], tuple[tuple[int, int], ...]]:
    """Group the unique shell pairs of a basis by angular-momentum class.

    Args:
        basis: the basis set.

    Returns:
        ``(classes, pair_index)``: the ``PairClass`` es in increasing ``(l_a, l_b)`` order, and
        for every shell pair ``(i, j)``, ``i >= j`` (row-major), its ``(class, pair)`` position.

    Example:
        >>> from opifex.quantum._basis import build_basis
        >>> classes, index = shell_pairs(build_basis([8, 1, 1], "sto-3g"))
        >>> [(c.l_a, c.l_b, c.n_pairs) for c in classes], len(index)
        ([(0, 0, 10), (1, 0, 4), (1, 1, 1)], 15)
    """
    shells = basis.shells
    offsets = np.cumsum([0] + [len(cartesian_powers(s.l)) for s in shells])
    grouped: dict[tuple[int, int], list[tuple[int, int]]] = {}
    order = []
    for i in range(len(shells)):
        for j in range(i + 1):
            a, b = (i, j) if shells[i].l >= shells[j].l else (j, i)
            key = (shells[a].l, shells[b].l)
            grouped.setdefault(key, []).append((a, b))
            order.append((key, len(grouped[key]) - 1))
    keys = sorted(grouped)
    classes = []
    for key in keys:
        fields: dict[str, list] = {name: [] for name in ("ea", "eb", "c", "aa", "ab", "id")}
        counts = []
        for pair, (a, b) in enumerate(grouped[key]):
            sa, sb = shells[a], shells[b]
            ea, eb = np.meshgrid(sa.exponents, sb.exponents, indexing="ij")
            ca, cb = np.meshgrid(sa.coefficients, sb.coefficients, indexing="ij")
            counts.append(ea.size)
            fields["ea"].append(ea.ravel())
            fields["eb"].append(eb.ravel())
            fields["c"].append((ca * cb).ravel())
            fields["aa"].append(np.full(ea.size, sa.atom))
            fields["ab"].append(np.full(ea.size, sb.atom))
            fields["id"].append(np.full(ea.size, pair))
        pairs = grouped[key]
        classes.append(
            PairClass(
                l_a=key[0],
                l_b=key[1],
                exp_a=np.concatenate(fields["ea"]),
                exp_b=np.concatenate(fields["eb"]),
                coef=np.concatenate(fields["c"]),
                atom_a=np.concatenate(fields["aa"]),
                atom_b=np.concatenate(fields["ab"]),
                pair_id=np.concatenate(fields["id"]),
                prim_start=np.cumsum([0, *counts[:-1]]),
                prim_count=np.asarray(counts),
                func_a=np.asarray([np.arange(offsets[a], offsets[a + 1]) for a, _ in pairs]),
                func_b=np.asarray([np.arange(offsets[b], offsets[b + 1]) for _, b in pairs]),
                shells=np.asarray(pairs).reshape(-1, 2),
            )
        )
    rank = {key: k for k, key in enumerate(keys)}
    return tuple(classes), tuple((rank[key], pair) for key, pair in order)


class PrimitivePairs(NamedTuple):
    """Coordinate-dependent data of every primitive pair of one class.

    Attributes:
        center: ``(n_prim, 3)`` Gaussian product centres ``P``.
        exponent: ``(n_prim,)`` total exponents ``p = a + b``.
        hermite: ``(n_prim, n_cart_a * n_cart_b, n_hermite)`` Hermite coefficients
            ``E^{ab}_{tuv}`` times the contraction coefficients, over ``hermite_indices(l_a+l_b)``.
        overlap: ``(n_prim, n_cart_a * n_cart_b)`` primitive overlaps times the coefficients.
        kinetic: ``(n_prim, n_cart_a * n_cart_b)`` primitive kinetic integrals, likewise.
    """

    center: jax.Array
    exponent: jax.Array
    hermite: jax.Array
    overlap: jax.Array
    kinetic: jax.Array


@functools.cache
def component_indices(l_a: int, l_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Static gathers: powers ``(n_ab, 3)`` of ``a`` and ``b``, Hermite ``(n_hermite, 3)``.

    Example:
        >>> powers_a, powers_b, hermite = component_indices(1, 0)
        >>> powers_a.tolist(), powers_b.tolist(), hermite.shape
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]], (4, 3))
    """
    pairs = [(pa, pb) for pa in cartesian_powers(l_a) for pb in cartesian_powers(l_b)]
    powers_a = np.asarray([pa for pa, _ in pairs])
    powers_b = np.asarray([pb for _, pb in pairs])
    return powers_a, powers_b, np.asarray(hermite_indices(l_a + l_b))


def primitive_pairs(pair_class: PairClass, coordinates: jax.Array) -> PrimitivePairs:
    """Hermite, overlap and kinetic data of every primitive pair of a class.

    Args:
        pair_class: a class from ``shell_pairs``.
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.

    Returns:
        The ``PrimitivePairs``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> classes, _ = shell_pairs(build_basis([1], "sto-3g"))
        >>> with jax.enable_x64(True):
        ...     norm = primitive_pairs(classes[0], jnp.zeros((1, 3))).overlap.sum()
        >>> round(float(norm), 12)
        1.0
    """
    l_a, l_b = pair_class.l_a, pair_class.l_b
    a = jnp.asarray(pair_class.exp_a)
    b = jnp.asarray(pair_class.exp_b)
    p = a + b
    centre_a = coordinates[pair_class.atom_a]
    centre_b = coordinates[pair_class.atom_b]
    centre = (a[:, None] * centre_a + b[:, None] * centre_b) / p[:, None]
    # (n_prim, 3 axes, l_a + 1, l_b + 3, l_a + l_b + 3); j up to l_b + 2 for the kinetic energy
    e = hermite_coefficients(l_a, l_b + 2, a[:, None], b[:, None], centre_a - centre_b)
    powers_a, powers_b, herm = component_indices(l_a, l_b)
    coef = jnp.asarray(pair_class.coef)

    hermite = coef[:, None, None]
    for axis in range(3):
        hermite = (
            hermite * e[:, axis][:, powers_a[:, axis, None], powers_b[:, axis, None], herm[:, axis]]
        )

    s = e[..., 0] * jnp.sqrt(jnp.pi / p)[:, None, None, None]  # 1-D overlaps
    j = np.arange(l_b + 1)
    padded = jnp.pad(s, ((0, 0), (0, 0), (0, 0), (2, 0)))  # padded[..., j] = s[..., j - 2]
    t1d = (
        j * (j - 1) * padded[..., : l_b + 1]
        - 2 * b[:, None, None, None] * (2 * j + 1) * s[..., : l_b + 1]
        + 4 * b[:, None, None, None] ** 2 * s[..., 2 : l_b + 3]
    )
    s_axes = [s[:, axis][:, powers_a[:, axis], powers_b[:, axis]] for axis in range(3)]
    t_axes = [t1d[:, axis][:, powers_a[:, axis], powers_b[:, axis]] for axis in range(3)]
    overlap = s_axes[0] * s_axes[1] * s_axes[2]
    kinetic = -0.5 * (
        t_axes[0] * s_axes[1] * s_axes[2]
        + s_axes[0] * t_axes[1] * s_axes[2]
        + s_axes[0] * s_axes[1] * t_axes[2]
    )
    return PrimitivePairs(centre, p, hermite, coef[:, None] * overlap, coef[:, None] * kinetic)
