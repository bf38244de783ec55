"""Analytic nuclear gradients of a converged SCF: Hellmann-Feynman and Pulay terms.

At a self-consistent density ``D`` the energy is stationary under every change of the
orbitals that keeps them orthonormal, so ``dE/dR`` needs no derivative of ``D``:
``dE/dR = dE[D]/dR |_D - tr(W dS/dR)`` with the energy-weighted density ``W = D F D / n_occ``
(``n_occ`` electrons per orbital; ``W = sum_i n_i e_i c_i c_i^T`` when ``F c = e S c``). The
derivative program is then one pass of the integrals and their reverse-mode derivative,
with no SCF and no implicit linear solve in it (what PySCF's analytic gradients evaluate too).
``W`` and ``D`` enter as functions of the coordinates (``D`` from the SCF's implicit
derivatives), so the result may be differentiated again: ``jax.jacfwd`` of it is the Hessian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._basis import BasisSet
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._scf_model import SpinModel


def energy_weighted_density(blocks: jax.Array, fock: jax.Array, model: SpinModel) -> jax.Array:
    """``W = D F D / n_occ`` per spin block: ``sum_i n_i e_i c_i c_i^T`` at self-consistency.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.quantum._rhf import rhf_model
        >>> d, f = 2.0 * jnp.eye(1)[None], -0.5 * jnp.eye(1)[None]  # one orbital, e = -0.5
        >>> energy_weighted_density(d, f, rhf_model(2)).tolist()
        [[[-1.0]]]
    """
    return jnp.einsum("sab,sbc,scd->sad", blocks, fock, blocks) / model.occupation


def scf_nuclear_gradient(
    coordinates: jax.Array,
    density: jax.Array,
    basis: BasisSet,
    model: SpinModel,
    auxbasis: BasisSet | None = None,
    max_memory: float | None = None,
) -> jax.Array:
    """``dE/dR`` (Eh/Bohr, ``(n_atoms, 3)``) of the SCF energy at a converged ``density``.

    Exact only where ``density`` is self-consistent (its error is first order in the orbital
    gradient left, as for any analytic SCF gradient).

    Args:
        coordinates: ``(n_atoms, 3)`` nuclear positions in Bohr.
        density: the converged density (RHF ``(n, n)`` total, UHF ``(2, n, n)``).
        basis: the basis set on the atoms (static).
        model: RHF or UHF (``rhf_model`` / ``uhf_model``).
        auxbasis: the auxiliary basis of a density-fitted SCF, or None.
        max_memory: the integrals' memory budget in MB (``compute_integrals``); None: default.

    Returns:
        The gradient of the total energy, nuclear repulsion included.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.quantum._basis import build_basis
        >>> from opifex.quantum._rhf import rhf_model, run_rhf
        >>> basis = build_basis([1, 1], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     xyz = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]])
        ...     ints = compute_integrals(basis, xyz, jnp.ones(2))
        ...     d = run_rhf(ints, 2).params
        ...     g = scf_nuclear_gradient(xyz, d, basis, rhf_model(2))
        >>> round(float(g[1, 2]), 6), bool(abs(float(g[0, 2] + g[1, 2])) < 1e-12)
        (0.028454, True)
    """
    charges = np.asarray(basis.atomic_numbers, dtype=np.float64)
    options = {} if max_memory is None else {"max_memory": max_memory}

    def integrals_at(xyz: jax.Array) -> Integrals:
        return compute_integrals(basis, xyz, charges, auxbasis=auxbasis, **options)

    integrals, pullback = jax.vjp(integrals_at, coordinates)
    blocks = model.blocks(density)
    weighted = energy_weighted_density(blocks, model.fock(blocks, integrals), model)

    def lagrangian(ints: Integrals) -> jax.Array:  # D and W held fixed
        electronic = 0.5 * jnp.sum(blocks * (ints.core_hamiltonian + model.fock(blocks, ints)))
        return electronic + ints.nuclear_repulsion - jnp.sum(weighted.sum(0) * ints.overlap)

    (gradient,) = pullback(jax.grad(lagrangian, allow_int=True)(integrals))
    return gradient
