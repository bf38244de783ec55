"""The superposition-of-atomic-densities (SAD) initial guess.

Each distinct element gets a spin-restricted, spherically averaged Hartree-Fock density in the
molecule's basis set: the electrons of a partly filled level are shared equally among its
degenerate orbitals (carbon's two 2p electrons are 2/3 in each 2p orbital), which keeps the
atom's Fock operator spherical. The molecular guess is the block-diagonal sum of those atomic
densities. Atomic densities do not depend on the geometry, so they are computed once per element
and basis (eagerly, in numpy) and enter a jit-compiled SCF as constants.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np

from opifex.quantum._basis import BasisSet, build_basis
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._rhf import rhf_fock
from opifex.quantum._scf_model import orthogonalizer

_DEGENERATE = 1e-4  # Eh: orbitals this close share the electrons of a partly filled level
_MAX_ITERATIONS = 200
_TOLERANCE = 1e-8


def _occupations(energies: np.ndarray, n_electrons: int) -> np.ndarray:
    """Aufbau occupations (0-2); a partly filled degenerate level shares its electrons."""
    occupations = np.zeros_like(energies)
    left, i = float(n_electrons), 0
    while left > 0:
        level = np.flatnonzero(np.abs(energies - energies[i]) < _DEGENERATE)
        level = level[level >= i]
        share = min(left, 2.0 * level.size)
        occupations[level] = share / level.size
        left -= share
        i = level.max() + 1
    return occupations


@functools.cache
def atomic_density(atomic_number: int, basis_name: str, cartesian: bool) -> np.ndarray:
    """Spherically averaged, spin-restricted Hartree-Fock density of one neutral atom.

    A partly filled degenerate level shares its electrons equally (fractional occupations),
    which keeps the density spherical.

    Args:
        atomic_number: the element.
        basis_name: a basis-set name ``build_basis`` knows.
        cartesian: cartesian instead of spherical d functions.

    Returns:
        The total (alpha + beta) density matrix in the atom's basis functions; its trace with
        the atom's overlap matrix is the number of electrons.

    Raises:
        RuntimeError: if the atomic SCF does not converge.

    Example:
        >>> import jax
        >>> with jax.enable_x64(True):
        ...     d = atomic_density(1, "sto-3g", False)
        >>> d.round(6).tolist()
        [[1.0]]
    """
    basis = build_basis((atomic_number,), basis_name, cartesian=cartesian)
    # Eager even when called while a jit-compiled SCF is being traced: the atom is a constant.
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        integrals = compute_integrals(basis, np.zeros((1, 3)), np.array([atomic_number]))
        if atomic_number == 1:  # one electron: no self-repulsion, the core Hamiltonian is exact
            integrals = integrals._replace(eri=np.zeros_like(integrals.eri))
        orthogonaliser = np.asarray(orthogonalizer(integrals.overlap))
        density = np.zeros_like(orthogonaliser)
        for _ in range(_MAX_ITERATIONS):
            fock = np.asarray(rhf_fock(density, integrals))
            energies, rotated = np.linalg.eigh(orthogonaliser.T @ fock @ orthogonaliser)
            orbitals = orthogonaliser @ rotated
            updated = (orbitals * _occupations(energies, atomic_number)) @ orbitals.T
            change = np.abs(updated - density).max()
            density = 0.5 * (density + updated) if change > 1e-3 else updated
            if change < _TOLERANCE:
                return density
    raise RuntimeError(
        f"the atomic SCF for Z={atomic_number} in {basis_name} did not converge "
        f"(last density change {change:.2e})"
    )


def block_diagonal_guess(
    basis: BasisSet, atomic: Callable[[int, str, bool], np.ndarray]
) -> np.ndarray:
    """A molecular guess density assembled from one atomic density per atom.

    Args:
        basis: the molecule's basis set (its functions are grouped atom by atom).
        atomic: ``atomic(atomic_number, basis_name, cartesian)``, the density of one atom in
            that atom's functions of the basis.

    Returns:
        The ``(n_functions, n_functions)`` block-diagonal density.

    Example:
        >>> basis = build_basis(["H", "H"], "sto-3g")
        >>> block_diagonal_guess(basis, lambda z, name, cart: np.full((1, 1), z)).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    guess = np.zeros((basis.n_functions, basis.n_functions))
    atoms = basis.function_atoms
    for atom, z in enumerate(basis.atomic_numbers):
        index = np.flatnonzero(atoms == atom)
        guess[np.ix_(index, index)] = atomic(z, basis.name, basis.cartesian)
    return guess


def superposition_of_atomic_densities(basis: BasisSet) -> np.ndarray:
    """The SAD guess: block-diagonal atomic densities for the atoms of ``basis``.

    Args:
        basis: the molecule's basis set (its functions are grouped atom by atom).

    Returns:
        The ``(n_functions, n_functions)`` total density guess of the neutral atoms; an SCF
        for a charged molecule starts from it all the same.

    Example:
        >>> import jax
        >>> basis = build_basis(["H", "H"], "sto-3g")
        >>> with jax.enable_x64(True):
        ...     superposition_of_atomic_densities(basis).round(6).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    return block_diagonal_guess(basis, atomic_density)
