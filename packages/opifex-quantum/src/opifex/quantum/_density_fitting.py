"""Density fitting (RI-JK): ``(ij|kl) ~ sum_PQ (ij|P) [V^-1]_PQ (Q|kl)`` with an auxiliary basis.

With the Coulomb metric ``V_PQ = (P|Q)`` and its Cholesky factor ``V = L L^T``, the fitted
integrals are ``(ij|kl) ~ sum_P B_Pij B_Pkl`` with ``B = L^-1 (P|ij)`` (Whitten 1973; Weigend,
Mol. Phys. 2002 for JK fitting with Coulomb-metric auxiliary sets such as def2-universal-JKFIT).
Then

- ``J[D]_ij = sum_P B_Pij (sum_kl B_Pkl D_kl)``: two passes over ``B``;
- ``K[D]_ij = sum_P (B_P D B_P)_ij``: ``2 n_aux n^3`` operations, in chunks of auxiliary
  functions so the intermediate stays small.

``B`` is held in core: ``8 n_aux n^2`` bytes (benzene/def2-SVP, 114 functions and 546
auxiliary: 57 MB), against ``4 n^4`` for the exact supermatrices. The 2- and 3-centre integrals
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


def fitted_factor(pair_integrals: jax.Array, metric: jax.Array, basis: BasisSet) -> jax.Array:
    """``B_Pij = [L^-1 (Q|ij)]_P``, ``(n_aux, n, n)``, with ``V = L L^T`` (Cholesky).

    A metric that is not positive definite (an auxiliary set linearly dependent on this
    molecule) gives NaN, which the SCF reports as a failure (no silent wrong answer).
    """
    factor = jnp.linalg.cholesky(metric)
    fitted = jax.scipy.linalg.solve_triangular(factor, pair_integrals.T, lower=True)
    return fitted[:, pair_layout(basis).index]


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
        factor: ``(n_aux, n, n)`` the fitted three-index integrals ``B``.
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
        ((36, 2, 2), True)
    """

    factor: jax.Array
    basis: BasisSet
    aux: BasisSet

    @property
    def n_functions(self) -> int:
        """Number of orbital basis functions ``n``."""
        return self.factor.shape[-1]

    def coulomb_matrix(self, density: jax.Array) -> jax.Array:
        """``J[D]_ij = sum_P B_Pij sum_kl B_Pkl D_kl`` of an ``(n, n)`` density."""
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        fitted = jnp.einsum("pkl,...kl->...p", self.factor, density)
        return jnp.einsum("...p,pij->...ij", fitted, self.factor)

    def exchange_matrix(self, density: jax.Array) -> jax.Array:
        """``K[D]_ij = sum_P (B_P D B_P)_ij`` of an ``(n, n)`` density (its symmetric part)."""
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        n_aux, n, _ = self.factor.shape
        chunk = max(1, min(n_aux, _CHUNK_ELEMENTS // (n * n)))

        def add_chunk(exchange, index):
            # the last chunk is moved back to end at n_aux; rows already counted are masked
            start = jnp.minimum(index * chunk, n_aux - chunk)
            factor = jax.lax.dynamic_slice_in_dim(self.factor, start, chunk)
            fresh = start + jnp.arange(chunk) >= index * chunk
            factor = factor * fresh[:, None, None]
            half = jnp.einsum("pik,...kl->...pil", factor, density)
            return exchange + jnp.einsum("...pil,pjl->...ij", half, factor), None

        empty = jnp.zeros(density.shape, jnp.result_type(density, self.factor))
        exchange, _ = jax.lax.scan(add_chunk, empty, jnp.arange(-(-n_aux // chunk)))
        return exchange

    def dense(self) -> jax.Array:
        """The fitted ``(n, n, n, n)`` tensor (for small bases and checks)."""
        return jnp.einsum("pij,pkl->ijkl", self.factor, self.factor)


def auxiliary_shell_bounds(aux: BasisSet, metric: np.ndarray) -> np.ndarray:
    """``sqrt(max_p (p|p))`` of every auxiliary shell, in ``auxiliary_classes`` order."""
    offsets, counts = shell_functions(aux)
    diagonal = np.sqrt(np.abs(np.diagonal(metric)))
    shells = np.concatenate([c.shells[:, 0] for c in auxiliary_classes(aux)])
    return np.asarray([diagonal[offsets[k] : offsets[k] + counts[k]].max() for k in shells])
