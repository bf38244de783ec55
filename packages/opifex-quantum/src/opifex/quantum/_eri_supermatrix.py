"""In-core electron-repulsion integrals as two supermatrices: J and K by one matrix product each.

Over the extended function pairs ``(i, j)`` of ``pair_layout`` (about ``n^2 / 2`` of them),

- the Coulomb supermatrix ``E[(ij), (kl)] = (ij|kl)``, and
- the exchange supermatrix ``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2``

give ``J[D]_ij = sum_kl (ij|kl) D_kl = (E d)_(ij)`` and ``K[D]_ij = sum_kl (ik|jl) D_kl =
(X d)_(ij)`` with the pair vector ``d_(kl) = w_(kl) D_kl`` (``w = 2`` off the diagonal shell
pairs, where one row stands for both orders). Memory is ``2 n_ext^2`` floats, about ``4 n^4``
bytes, instead of ``8 n^4`` for the dense tensor, and a Fock build is two matrix-vector products
instead of two passes over ``n^4`` reordered entries.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from opifex.quantum._basis import BasisSet
from opifex.quantum._eri_plan import PairLayout, pair_layout

_GATHER_ELEMENTS = 2**22


def exchange_supermatrix(coulomb: jax.Array, layout: PairLayout) -> jax.Array:
    """``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2`` gathered from the Coulomb supermatrix.

    Row blocks are gathered one at a time (``lax.map``), so the index arrays in memory stay at
    about ``2**22`` entries whatever the basis.
    """
    index = jnp.asarray(layout.index, jnp.int32)
    first, second = jnp.asarray(layout.rows_i), jnp.asarray(layout.rows_j)
    chunk = max(1, min(layout.n_ext, _GATHER_ELEMENTS // layout.n_ext))
    n_chunks = -(-layout.n_ext // chunk)
    padded = n_chunks * chunk - layout.n_ext

    def rows(chunk_rows: tuple[jax.Array, jax.Array]) -> jax.Array:
        i, j = (r[:, None] for r in chunk_rows)
        direct = coulomb[index[i, first[None, :]], index[j, second[None, :]]]
        crossed = coulomb[index[i, second[None, :]], index[j, first[None, :]]]
        return 0.5 * (direct + crossed)

    row_i = jnp.pad(first, (0, padded)).reshape(n_chunks, chunk)
    row_j = jnp.pad(second, (0, padded)).reshape(n_chunks, chunk)
    blocks = jax.lax.map(rows, (row_i, row_j))
    return blocks.reshape(-1, layout.n_ext)[: layout.n_ext]


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
        exchange: ``(n_ext, n_ext)`` ``X[(ij), (kl)] = ((ik|jl) + (il|jk)) / 2``.
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
    exchange: jax.Array
    basis: BasisSet

    @property
    def layout(self) -> PairLayout:
        """The extended pairs indexing the supermatrices."""
        return pair_layout(self.basis)

    @property
    def n_functions(self) -> int:
        """Number of basis functions ``n``."""
        return self.layout.n_functions

    def _apply(self, supermatrix: jax.Array, density: jax.Array) -> jax.Array:
        layout = self.layout
        # symmetrised first, so derivatives in the density are those of the dense formulas
        density = 0.5 * (density + jnp.swapaxes(density, -1, -2))
        pair_density = density[..., layout.rows_i, layout.rows_j] * layout.weight
        return jnp.matmul(supermatrix, pair_density[..., None])[..., 0][..., layout.index]

    def coulomb_matrix(self, density: jax.Array) -> jax.Array:
        """``J[D]_ij = sum_kl (ij|kl) D_kl`` of an ``(n, n)`` density (its symmetric part)."""
        return self._apply(self.coulomb, density)

    def exchange_matrix(self, density: jax.Array, orbitals: jax.Array | None = None) -> jax.Array:
        """``K[D]_ij = sum_kl (ik|jl) D_kl`` of an ``(n, n)`` density (its symmetric part).

        ``orbitals`` is accepted for the interface of ``DensityFittedERI`` and not used: one
        matrix-vector product is already the cheapest form here.
        """
        del orbitals
        return self._apply(self.exchange, density)

    def dense(self) -> jax.Array:
        """The dense ``(n, n, n, n)`` tensor (for small bases and checks)."""
        return dense_from_supermatrix(self.coulomb, self.layout)
