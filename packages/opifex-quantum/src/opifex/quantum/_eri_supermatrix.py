"""In-core electron-repulsion integrals as two supermatrices: J and K by one matrix product each.

Over the extended function pairs ``(i, j)`` of ``pair_layout`` (about ``n^2 / 2`` of them),

- the Coulomb supermatrix ``E[(ij), (kl)] = (ij|kl)``, and
- the exchange supermatrix ``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2``

give ``J[D]_ij = sum_kl (ij|kl) D_kl = (E d)_(ij)`` and ``K[D]_ij = sum_kl (ik|jl) D_kl =
(X d)_(ij)`` with the pair vector ``d_(kl) = w_(kl) D_kl`` (``w = 2`` off the diagonal shell
pairs, where one row stands for both orders). Memory is ``2 n_ext^2`` floats, about ``4 n^4``
bytes, instead of ``8 n^4`` for the dense tensor, and a Fock build is two matrix-vector products
instead of two passes over ``n^4`` reordered entries. Without the exchange supermatrix (half the
memory), each exchange build gathers ``X``'s rows from ``E`` a chunk at a time and multiplies
them at once, so ``X`` is never whole in memory; that gather costs about as much per Fock
build as making ``X`` once.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from opifex.quantum._basis import BasisSet
from opifex.quantum._eri_plan import PairLayout, pair_layout

_GATHER_ELEMENTS = 2**22


def _row_chunks(layout: PairLayout) -> tuple[int, int]:
    """Rows per gathered chunk (about ``2**22`` entries) and the number of chunks."""
    chunk = max(1, min(layout.n_ext, _GATHER_ELEMENTS // layout.n_ext))
    return chunk, -(-layout.n_ext // chunk)


def _exchange_rows(coulomb: jax.Array, layout: PairLayout, first_row: jax.Array) -> jax.Array:
    """Rows ``first_row, ..., first_row + chunk - 1`` of ``X``, gathered from ``E``."""
    chunk, _ = _row_chunks(layout)
    index = jnp.asarray(layout.index, jnp.int32)
    first, second = jnp.asarray(layout.rows_i), jnp.asarray(layout.rows_j)
    i = jax.lax.dynamic_slice_in_dim(first, first_row, chunk)[:, None]
    j = jax.lax.dynamic_slice_in_dim(second, first_row, chunk)[:, None]
    direct = coulomb[index[i, first[None, :]], index[j, second[None, :]]]
    crossed = coulomb[index[i, second[None, :]], index[j, first[None, :]]]
    return 0.5 * (direct + crossed)


def _chunk_starts(layout: PairLayout) -> jax.Array:
    """First row of every chunk; the last one is moved back to end at the last row."""
    chunk, n_chunks = _row_chunks(layout)
    return jnp.minimum(jnp.arange(n_chunks) * chunk, layout.n_ext - chunk)


def exchange_supermatrix(coulomb: jax.Array, layout: PairLayout) -> jax.Array:
    """``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2`` gathered from the Coulomb supermatrix.

    Row chunks are gathered one at a time and written in place, so besides ``E`` and ``X``
    only one chunk (about ``2**22`` entries) is in memory.
    """

    def write(k: int, exchange: jax.Array) -> jax.Array:
        start = _chunk_starts(layout)[k]
        return jax.lax.dynamic_update_slice_in_dim(
            exchange, _exchange_rows(coulomb, layout, start), start, axis=0
        )

    empty = jnp.zeros_like(coulomb)
    return jax.lax.fori_loop(0, _row_chunks(layout)[1], write, empty)


def gathered_exchange(coulomb: jax.Array, layout: PairLayout, pair_density: jax.Array):
    """``X d`` without ``X``: each chunk of its rows gathered from ``E`` and multiplied."""

    def chunk_product(start: jax.Array) -> jax.Array:
        return _exchange_rows(coulomb, layout, start) @ pair_density

    starts = _chunk_starts(layout)
    products = jax.lax.map(chunk_product, starts)  # (n_chunks, chunk)
    rows = starts[:, None] + jnp.arange(products.shape[1])
    return jnp.zeros(layout.n_ext, pair_density.dtype).at[rows].set(products)


def dense_from_supermatrix(coulomb: jax.Array, layout: PairLayout) -> jax.Array:
    """The dense ``(n, n, n, n)`` tensor ``(ij|kl)`` of a Coulomb supermatrix."""
    index = jnp.asarray(layout.index, jnp.int32)
    return coulomb[index][:, :, index]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["coulomb", "exchange"],
    meta_fields=["basis"],
)
@dataclasses.dataclass(frozen=True)
class ERISupermatrix:
    """The electron-repulsion integrals of a basis as Coulomb and exchange supermatrices.

    A pytree (the two matrices are its leaves), so it rides in ``Integrals.eri`` through
    ``jit``, ``vmap`` and the SCF's implicit derivatives; ``coulomb_matrix`` and
    ``exchange_matrix`` of ``opifex.quantum`` accept it wherever they accept a dense tensor.

    Attributes:
        coulomb: ``(n_ext, n_ext)`` ``E[(ij), (kl)] = (ij|kl)``.
        exchange: ``(n_ext, n_ext)`` ``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2``, or None
            (half the memory: each exchange build gathers ``X``'s rows from ``E``).
        basis: the basis set whose ``pair_layout`` indexes the rows (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> from opifex.quantum._integrals import compute_integrals
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     xyz, z, d = jnp.array([[0.0, 0, 0], [0, 0, 1.4]]), jnp.ones(2), jnp.eye(2)
        ...     eri = compute_integrals(basis, xyz, z, eri_layout="supermatrix").eri
        ...     dense = compute_integrals(basis, xyz, z, eri_layout="dense").eri
        ...     gap = jnp.abs(eri.exchange_matrix(d) - jnp.einsum("ikjl,kl->ij", dense, d))
        >>> eri.coulomb.shape, bool(gap.max() < 1e-14)
        ((3, 3), True)
    """

    coulomb: jax.Array
    exchange: jax.Array | None
    basis: BasisSet

    @property
    def layout(self) -> PairLayout:
        """The extended pairs indexing the supermatrices."""
        return pair_layout(self.basis)

    @property
    def n_functions(self) -> int:
        """Number of basis functions ``n``."""
        return self.layout.n_functions

    def _pair_density(self, density: jax.Array) -> jax.Array:
        layout = self.layout
        # symmetrised first, so derivatives in the density are those of the dense formulas
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        return density[..., layout.rows_i, layout.rows_j] * layout.weight

    def _apply(self, supermatrix: jax.Array, density: jax.Array) -> jax.Array:
        pair_density = self._pair_density(density)
        return jnp.matmul(supermatrix, pair_density[..., None])[..., 0][..., self.layout.index]

    def coulomb_matrix(self, density: jax.Array) -> jax.Array:
        """``J[D]_ij = sum_kl (ij|kl) D_kl`` of an ``(n, n)`` density (its symmetric part)."""
        return self._apply(self.coulomb, density)

    def exchange_matrix(self, density: jax.Array, orbitals: jax.Array | None = None) -> jax.Array:
        """``K[D]_ij = sum_kl (ik|jl) D_kl`` of an ``(n, n)`` density (its symmetric part).

        ``orbitals`` is accepted for the interface of ``DensityFittedERI`` and not used: one
        matrix-vector product is already the cheapest form here.
        """
        del orbitals
        if self.exchange is not None:
            return self._apply(self.exchange, density)
        gathered = gathered_exchange(self.coulomb, self.layout, self._pair_density(density))
        return gathered[self.layout.index]

    def dense(self) -> jax.Array:
        """The dense ``(n, n, n, n)`` tensor (for small bases and checks)."""
        return dense_from_supermatrix(self.coulomb, self.layout)
