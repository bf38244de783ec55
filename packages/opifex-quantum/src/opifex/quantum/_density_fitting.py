"""Density fitting (RI-JK): ``(ij|kl) ~ sum_PQ (ij|P) [V^-1]_PQ (Q|kl)`` with an auxiliary basis.

With the Coulomb metric ``V_PQ = (P|Q)`` and its Cholesky factor ``V = L L^T``, the fitted
integrals are ``(ij|kl) ~ sum_P B_Pij B_Pkl`` with ``B = L^-1 (P|ij)`` (Whitten 1973; Weigend,
Mol. Phys. 2002 for JK fitting with Coulomb-metric auxiliary sets such as def2-universal-JKFIT).
``B`` is held in core over the extended function pairs of ``pair_layout`` (about ``n^2 / 2``:
``8 n_aux n_ext`` bytes, against ``4 n^4`` for the exact supermatrices). Then

- ``J[D]_ij = sum_P B_Pij (sum_kl B_Pkl D_kl)``: two passes over ``B``;
- ``K[D]_ij = sum_P (B_P D B_P)_ij``: ``2 n_aux n^3`` operations, over chunks of auxiliary
  functions unpacked to ``(chunk, n, n)`` one at a time, so the intermediate stays small.
 The 2- and 3-centre integrals
come from the blocked kernels of ``opifex.quantum._eri_engine`` (``opifex.quantum._df_plan``),
so everything is differentiable in the nuclear coordinates, forces included.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._df_plan import auxiliary_classes, auxiliary_offsets
from opifex.quantum._eri_engine import (
    ClassSide,
    PairArrays,
    QuartetArrays,
    block_placer,
    scan_class_blocks,
)
from opifex.quantum._eri_plan import pair_layout, shell_functions
from opifex.quantum._shell_pairs import primitive_pairs, shell_pairs

_CHUNK_ELEMENTS = 2**22  # entries of one chunk of B_P matrices in the exchange build


def plan_arrays(plan) -> tuple[tuple, tuple]:
    """A ``_df_plan`` plan's static keys and its ``QuartetArrays``."""
    return tuple((q.bra, q.ket, q.block) for q in plan), tuple(
        QuartetArrays(*q.arrays()) for q in plan
    )


def every_primitive(classes) -> tuple[PairArrays, ...]:
    """``PairArrays`` keeping every primitive pair of each class."""
    return tuple(
        PairArrays(np.arange(c.coef.size, dtype=np.int32), c.prim_count.astype(np.int32))
        for c in classes
    )


def _auxiliary_side(aux: BasisSet, coordinates: jax.Array) -> ClassSide:
    classes = auxiliary_classes(aux)
    pairs = [primitive_pairs(c, coordinates) for c in classes]
    return ClassSide(classes, pairs, every_primitive(classes))


def _aux_first_function(aux: BasisSet):
    offsets = jnp.asarray(auxiliary_offsets(aux), jnp.int32)
    starts = np.cumsum([0, *(c.n_pairs for c in auxiliary_classes(aux))])

    def first(aux_class: int, shell: jax.Array) -> jax.Array:
        return offsets[starts[aux_class] + shell]

    return first


def coulomb_metric(aux: BasisSet, coordinates: jax.Array, keys, quartets) -> jax.Array:
    """``V_PQ = (P|Q)``, ``(n_aux, n_aux)``, from a ``metric_plan``'s keys and arrays."""
    side = _auxiliary_side(aux, coordinates)
    first = _aux_first_function(aux)
    n_aux = aux.n_functions
    empty = jnp.zeros((n_aux, n_aux), coordinates.dtype)
    place = block_placer(first, first, symmetric=True)
    return scan_class_blocks(side, side, aux.cartesian, keys, quartets, place, empty)


def three_centre(
    basis: BasisSet, aux: BasisSet, coordinates: jax.Array, keys, quartets
) -> jax.Array:
    """``(ij|P)``, ``(n_ext, n_aux)``, over the extended pairs (a ``three_centre_plan``)."""
    classes, _ = shell_pairs(basis)
    orbital = ClassSide(
        classes, [primitive_pairs(c, coordinates) for c in classes], every_primitive(classes)
    )
    layout = pair_layout(basis)
    offsets = jnp.asarray(layout.pair_offset, jnp.int32)

    def first_row(pair_class: int, pair: jax.Array) -> jax.Array:
        return offsets[layout.class_offsets[pair_class] + pair]

    empty = jnp.zeros((layout.n_ext, aux.n_functions), coordinates.dtype)
    place = block_placer(first_row, _aux_first_function(aux), symmetric=False)
    side = _auxiliary_side(aux, coordinates)
    return scan_class_blocks(orbital, side, basis.cartesian, keys, quartets, place, empty)


def fitted_factor(pair_integrals: jax.Array, metric: jax.Array) -> jax.Array:
    """``B_P(ij) = [L^-1 (Q|ij)]_P``, ``(n_aux, n_ext)``, with ``V = L L^T`` (Cholesky).

    A metric that is not positive definite (an auxiliary set linearly dependent on this
    molecule) gives NaN, which the SCF reports as a failure (no silent wrong answer).
    """
    factor = jnp.linalg.cholesky(metric)
    return jax.scipy.linalg.solve_triangular(factor, pair_integrals.T, lower=True)


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["factor"], meta_fields=["basis", "aux"]
)
@dataclasses.dataclass(frozen=True)
class DensityFittedERI:
    """Density-fitted electron-repulsion integrals: ``(ij|kl) ~ sum_P B_Pij B_Pkl``.

    A pytree (``factor`` is its leaf), so it rides in ``Integrals.eri`` through ``jit``,
    ``vmap`` and the SCF's implicit derivatives; ``coulomb_matrix`` and ``exchange_matrix`` of
    ``opifex.quantum`` accept it wherever they accept a dense tensor.

    Attributes:
        factor: ``(n_aux, n_ext)`` the fitted three-index integrals ``B`` over the extended
            pairs of ``pair_layout(basis)``.
        basis: the orbital basis set (static).
        aux: the auxiliary basis set (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> from opifex.quantum._integrals import compute_integrals
        >>> xyz, z = jnp.array([[0.0, 0, 0], [0, 0, 1.4]]), jnp.ones(2)
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> aux = build_basis([1, 1], "def2-universal-jkfit")
        >>> with jax.enable_x64(True):
        ...     eri = compute_integrals(basis, xyz, z, auxbasis=aux).eri
        ...     exact = compute_integrals(basis, xyz, z).eri
        ...     gap = float(jnp.abs(eri.dense() - exact).max())
        >>> eri.factor.shape, gap < 1e-3  # the fitting error, not rounding
        ((36, 3), True)
    """

    factor: jax.Array
    basis: BasisSet
    aux: BasisSet

    @property
    def n_functions(self) -> int:
        """Number of orbital basis functions ``n``."""
        return pair_layout(self.basis).n_functions

    def _unpacked(self, rows: jax.Array) -> jax.Array:
        """``(..., n, n)`` matrices ``B_P`` of rows ``(..., n_ext)`` of ``factor``."""
        return rows[..., pair_layout(self.basis).index]

    def coulomb_matrix(self, density: jax.Array) -> jax.Array:
        """``J[D]_ij = sum_P B_Pij sum_kl B_Pkl D_kl`` of an ``(n, n)`` density."""
        layout = pair_layout(self.basis)
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        pair_density = density[..., layout.rows_i, layout.rows_j] * layout.weight
        fitted = jnp.einsum("pe,...e->...p", self.factor, pair_density)
        return jnp.einsum("...p,pe->...e", fitted, self.factor)[..., layout.index]

    def exchange_matrix(self, density: jax.Array, orbitals: jax.Array | None = None) -> jax.Array:
        """``K[D]_ij = sum_P (B_P D B_P)_ij`` of an ``(n, n)`` density (its symmetric part).

        Args:
            density: the density ``D``.
            orbitals: optional ``(n, k)`` ``C`` with ``D = C C^T`` (occupied orbitals scaled by
                the square roots of their occupations); then ``K = sum_P (B_P C) (B_P C)^T``
                costs ``2 n_aux n^2 k`` operations instead of ``2 n_aux n^3``. The caller
                guarantees the factorisation; ``density`` is then not read.
        """
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        n_aux, n = self.factor.shape[0], self.n_functions
        chunk = max(1, min(n_aux, _CHUNK_ELEMENTS // (n * n)))

        def add_chunk(exchange, index):
            # the last chunk is moved back to end at n_aux; rows already counted are masked
            start = jnp.minimum(index * chunk, n_aux - chunk)
            rows = jax.lax.dynamic_slice_in_dim(self.factor, start, chunk)
            fresh = start + jnp.arange(chunk) >= index * chunk
            factor = self._unpacked(rows * fresh[:, None])
            if orbitals is not None:
                half = jnp.einsum("pik,...ko->...pio", factor, orbitals)
                return exchange + jnp.einsum("...pio,...pjo->...ij", half, half), None
            half = jnp.einsum("pik,...kl->...pil", factor, density)
            return exchange + jnp.einsum("...pil,pjl->...ij", half, factor), None

        empty = jnp.zeros(density.shape, jnp.result_type(density, self.factor))
        exchange, _ = jax.lax.scan(add_chunk, empty, jnp.arange(-(-n_aux // chunk)))
        return exchange

    def dense(self) -> jax.Array:
        """The fitted ``(n, n, n, n)`` tensor (for small bases and checks)."""
        factor = self._unpacked(self.factor)
        return jnp.einsum("pij,pkl->ijkl", factor, factor)


def auxiliary_shell_bounds(aux: BasisSet, metric: np.ndarray) -> np.ndarray:
    """``sqrt(max_p (p|p))`` of every auxiliary shell, in ``auxiliary_classes`` order."""
    offsets, counts = shell_functions(aux)
    diagonal = np.sqrt(np.abs(np.diagonal(metric)))
    shells = np.concatenate([c.shells[:, 0] for c in auxiliary_classes(aux)])
    return np.asarray([diagonal[offsets[k] : offsets[k] + counts[k]].max() for k in shells])
