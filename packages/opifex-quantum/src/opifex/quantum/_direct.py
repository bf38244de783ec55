"""Direct SCF: Coulomb and exchange matrices from integrals recomputed on every Fock build.

``DirectERI`` keeps no electron-repulsion integral: each ``coulomb_exchange`` call runs the
blocked, Schwarz-screened loops of ``opifex.quantum._eri_engine`` once and folds every block of
unique quartets ``(ij|kl)`` into J and K as it is made, so the memory is that of one block and
two ``n x n`` matrices, whatever the basis (PySCF's ``direct_scf``). The price is one integral
pass per Fock build.

Each block's rows are extended pairs (``pair_layout``): a row of an off-diagonal shell pair
stands for ``(i, j)`` and ``(j, i)``. From the unique quartets, with ``f = 1/2`` when bra and
ket are the same shell pair (the block then holds both ``(ij|kl)`` and ``(kl|ij)``) and 1
otherwise,

- ``J_(ij) += f (ij|kl) d_(kl)`` and ``J_(kl) += f (ij|kl) d_(ij)`` over extended pairs
  (``d_(kl) = w_(kl) D_kl``, ``w = 2`` off the diagonal shell pairs), and
- ``A_ik += f (ij|kl) D_jl``, plus ``A_jk``, ``A_il``, ``A_jl`` for the orders a row stands
  for, then ``K = A + A^T``.

Everything is differentiable (the blocks are rematerialised under reverse mode), so forces
follow the SCF's implicit derivatives as for the stored layouts.

With the shell pairs' Schwarz bounds (``pair_bound``, at concrete coordinates), the SCF builds
each Fock matrix after the first incrementally, ``F[D_n] = F[D_(n-1)] + G[D_n - D_(n-1)]``
(PySCF's direct SCF does the same), from a ``DirectERI`` ``screened`` by that density
difference: a block is skipped when every quartet's bound ``Q_AB Q_CD max|dD|`` (over the six
shell blocks of ``dD`` it meets) is below ``DENSITY_SCREENING``. As the SCF converges, the
difference shrinks and more blocks are skipped.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._eri_engine import scan_blocks
from opifex.quantum._eri_plan import pair_layout, shell_functions

DENSITY_SCREENING = 1e-13
"""Density-weighted screening threshold of the incremental Fock builds (PySCF's
``direct_scf_tol``)."""


def _fold_block(layout, density, pair_density):
    """A ``scan_blocks`` consumer adding one block to the extended J and the half K ``A``."""
    offsets = jnp.asarray(layout.pair_offset, jnp.int32)
    rows_i, rows_j = jnp.asarray(layout.rows_i), jnp.asarray(layout.rows_j)
    both_orders = jnp.asarray(layout.weight == 2.0)

    def fold(carry, key, values, bra_pair, ket_pair, present):
        coulomb, half_exchange = carry
        bra_class, ket_class = key[0], key[1]
        rows = offsets[layout.class_offsets[bra_class] + bra_pair][:, None]
        cols = offsets[layout.class_offsets[ket_class] + ket_pair][:, None]
        rows = rows + jnp.arange(values.shape[1])
        cols = cols + jnp.arange(values.shape[2])
        same_pair = (bra_class == ket_class) & (bra_pair == ket_pair)
        factor = jnp.where(same_pair, 0.5, 1.0)
        v = jnp.where(present[:, None, None], values * factor[:, None, None], 0.0)
        coulomb = coulomb.at[rows].add(jnp.einsum("qac,qc->qa", v, pair_density[cols]))
        coulomb = coulomb.at[cols].add(jnp.einsum("qac,qa->qc", v, pair_density[rows]))
        # (ij|kl): bra functions i, j and ket functions k, l of each block entry
        bra_i, bra_j = rows_i[rows][:, :, None], rows_j[rows][:, :, None]
        ket_k, ket_l = rows_i[cols][:, None, :], rows_j[cols][:, None, :]
        swap_bra = both_orders[rows][:, :, None]
        swap_ket = both_orders[cols][:, None, :]
        for (row, col, left, right), use in (  # A[row, col] += (ij|kl) D[left, right]
            ((bra_i, ket_k, bra_j, ket_l), True),
            ((bra_j, ket_k, bra_i, ket_l), swap_bra),
            ((bra_i, ket_l, bra_j, ket_k), swap_ket),
            ((bra_j, ket_l, bra_i, ket_k), swap_bra & swap_ket),
        ):
            term = v * density[left, right]
            half_exchange = half_exchange.at[row, col].add(term if use is True else term * use)
        return coulomb, half_exchange

    return fold


def _negligible_blocks(basis: BasisSet, pair_bound: jax.Array, density: jax.Array, threshold):
    """A ``scan_blocks`` ``skip``: blocks whose every quartet adds less than ``threshold``.

    A quartet ``(AB|CD)`` adds at most ``Q_AB Q_CD`` times the largest ``|D|`` of the shell
    blocks ``AB``, ``CD`` (Coulomb) and ``AC``, ``AD``, ``BC``, ``BD`` (exchange).
    """
    layout = pair_layout(basis)
    _, counts = shell_functions(basis)
    shell_of = np.repeat(np.arange(counts.size), counts)
    largest = jax.ops.segment_max(jnp.abs(density), shell_of, num_segments=counts.size)
    largest = jax.ops.segment_max(largest.T, shell_of, num_segments=counts.size)
    shells = jnp.asarray(layout.pair_shells, jnp.int32)

    def skip(key, quartets):
        bra = layout.class_offsets[key[0]] + quartets.bra_pair
        ket = layout.class_offsets[key[1]] + quartets.ket_pair
        a, b, c, d = shells[bra, 0], shells[bra, 1], shells[ket, 0], shells[ket, 1]
        pairs = ((a, b), (c, d), (a, c), (a, d), (b, c), (b, d))
        weight = functools.reduce(jnp.maximum, (largest[i, j] for i, j in pairs))
        present = jnp.arange(bra.shape[0]) < quartets.count
        bound = jnp.where(present, pair_bound[bra] * pair_bound[ket] * weight, 0.0)
        return jnp.max(bound) < threshold

    return skip


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["pairs", "plan", "pair_bound"],
    meta_fields=["basis", "keys", "density_screening"],
)
@dataclasses.dataclass(frozen=True)
class DirectERI:
    """Electron-repulsion integrals that are recomputed, never stored (direct SCF).

    A pytree like ``ERISupermatrix``: it rides in ``Integrals.eri`` through ``jit``, ``vmap``
    and the SCF's implicit derivatives, and ``coulomb_matrix`` / ``exchange_matrix`` of
    ``opifex.quantum`` accept it.

    Attributes:
        pairs: ``primitive_pairs`` of every pair class (coordinate-dependent).
        plan: the quartet plan's arrays (``integral_plan``: screened at concrete coordinates).
        pair_bound: ``(n_pairs,)`` Schwarz bound ``sqrt(max (ab|ab))`` of every shell pair
            (class order), or None (traced coordinates): what density screening needs.
        basis: the basis set (static).
        keys: the plan's static ``(bra class, ket class, block)`` keys.
        density_screening: skip the blocks whose bound times the density passed to
            ``coulomb_exchange`` is below this (static; 0: none; needs ``pair_bound``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> from opifex.quantum._integrals import compute_integrals
        >>> basis = build_basis([8, 1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     xyz = jnp.array([[0.0, 0, 0], [0, 1.4, 1.1], [0, -1.4, 1.1]])
        ...     z, d = jnp.array([8.0, 1, 1]), jnp.eye(7)
        ...     direct = compute_integrals(basis, xyz, z, eri_layout="direct").eri
        ...     dense = compute_integrals(basis, xyz, z, eri_layout="dense").eri
        ...     j, k = direct.coulomb_exchange(d)
        ...     gap = jnp.abs(k - jnp.einsum("ikjl,kl->ij", dense, d)).max()
        >>> bool(gap < 1e-13)
        True
    """

    pairs: tuple
    plan: tuple
    pair_bound: jax.Array | None
    basis: BasisSet
    keys: tuple
    density_screening: float = 0.0

    @property
    def n_functions(self) -> int:
        """Number of basis functions ``n``."""
        return self.basis.n_functions

    @property
    def screens_densities(self) -> bool:
        """Whether the Schwarz bounds for density screening are there (``screened``)."""
        return self.pair_bound is not None

    def screened(self, threshold: float = DENSITY_SCREENING) -> DirectERI:
        """This ``DirectERI`` skipping the blocks that add less than ``threshold`` for a density.

        Meant for density differences (incremental Fock builds), whose entries shrink as an
        SCF converges; needs ``pair_bound``.
        """
        if not self.screens_densities:
            raise ValueError("density screening needs the Schwarz bounds (concrete coordinates)")
        return dataclasses.replace(self, density_screening=float(threshold))

    def coulomb_exchange(self, density: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(J[D], K[D])`` of an ``(n, n)`` density (its symmetric part), one integral pass."""
        layout = pair_layout(self.basis)
        density = jnp.asarray(density)
        density = 0.5 * (density + density.T)
        pair_density = density[layout.rows_i, layout.rows_j] * layout.weight
        start = (
            jnp.zeros(layout.n_ext, density.dtype),
            jnp.zeros((layout.n_functions,) * 2, density.dtype),
        )
        fold = _fold_block(layout, density, pair_density)
        skip = None
        if self.density_screening > 0:
            skip = _negligible_blocks(self.basis, self.pair_bound, density, self.density_screening)
        coulomb, half = scan_blocks(
            self.basis, self.keys, self.plan, list(self.pairs), fold, start, skip
        )
        return coulomb[layout.index], half + half.T

    def coulomb_matrix(self, density: jax.Array) -> jax.Array:
        """``J[D]_ij = sum_kl (ij|kl) D_kl`` (an integral pass; see ``coulomb_exchange``)."""
        return self.coulomb_exchange(density)[0]

    def exchange_matrix(self, density: jax.Array, orbitals: jax.Array | None = None) -> jax.Array:
        """``K[D]_ij = sum_kl (ik|jl) D_kl``; ``orbitals`` is accepted for the interface."""
        del orbitals
        return self.coulomb_exchange(density)[1]
