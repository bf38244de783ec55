"""The superposition-of-atomic-densities (SAD) initial guess.

Each distinct element gets a spin-restricted, spherically averaged Hartree-Fock density in the
molecule's basis set, for the atom's ground configuration (``ground_state_configuration``: e.g.
Fe ``[Ar] 3d6 4s2``, Cr ``[Ar] 3d5 4s1``): the electrons of a partly filled shell are shared
equally among its ``2l + 1`` orbitals (carbon's two 2p electrons are 2/3 in each 2p orbital),
which keeps the density spherical, so the atom's Fock matrix is block diagonal in ``(l, m)`` and
the same for every ``m``. The SCF is solved one angular momentum at a time, on the Fock matrix
averaged over ``m``, filling the lowest orbitals of each ``l`` as the configuration says (as
PySCF's ``atom_hf``, which uses its non-relativistic Hartree-Fock configurations instead of the
ground ones; they differ for Sc and Cr..Ni). Cartesian shells are first split into their pure
``l`` parts (a cartesian d shell holds five d functions and one s function, ``r^2``). The
molecular guess is the block-diagonal sum of the atomic densities. Atomic densities do not
depend on the geometry, so they are computed once per element and basis (eagerly, in numpy) and
enter a jit-compiled SCF as constants.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np

from opifex.quantum._basis import (
    BasisSet,
    _angular_overlap,
    _solid_harmonic,
    build_basis,
    cartesian_block,
    cartesian_powers,
)
from opifex.quantum._elements import element_symbol, ground_state_configuration
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._rhf import rhf_fock

_MAX_ITERATIONS = 200
_TOLERANCE = 1e-8
_LINEAR_DEPENDENCE = 1e-10  # overlap eigenvalues of one l channel dropped below this


def _pure_harmonics(l: int, degree: int) -> np.ndarray:  # noqa: E741
    """``r^(degree - l)`` times the real solid harmonics of ``l``, over monomials of ``degree``.

    Columns in the order of a spherical shell (x, y, z for p; ``m = -l .. l`` otherwise),
    coefficients of ``cartesian_powers(degree)``.
    """
    if l == 1:
        harmonics = np.eye(3)
    else:
        harmonics = np.stack([_solid_harmonic(l, m) for m in range(-l, l + 1)], axis=1)
    powers = cartesian_powers(l)
    for step in range(l, degree, 2):  # multiply by x^2 + y^2 + z^2
        index = {power: k for k, power in enumerate(cartesian_powers(step + 2))}
        raised = np.zeros((len(index), harmonics.shape[1]))
        for row, power in enumerate(powers):
            for axis in range(3):
                higher = list(power)
                higher[axis] += 2
                raised[index[tuple(higher)]] += harmonics[row]
        harmonics, powers = raised, cartesian_powers(step + 2)
    return harmonics


def _angular_channels(basis: BasisSet) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Functions of pure angular momentum spanning the basis of one atom.

    Returns:
        ``W``, square, with the pure functions ``chi = phi W`` in the basis functions ``phi``,
        and for each ``l`` an ``(n_radial, 2l + 1)`` array of the columns of ``W`` that hold its
        ``m`` components (one row per radial function).
    """
    blocks, channels, offset = [], {}, 0
    for shell in basis.shells:
        if not basis.cartesian or shell.l < 2:
            size = 2 * shell.l + 1
            blocks.append(np.eye(size))
            channels.setdefault(shell.l, []).append(offset + np.arange(size))
            offset += size
            continue
        # cartesian shell l: r^(l - L) S_LM for L = l, l - 2, ..; unit-normalised, in the
        # unit-normalised cartesian functions (raw component = function / its norm factor)
        parts = []
        for l in range(shell.l, -1, -2):  # noqa: E741
            part = _pure_harmonics(l, shell.l)
            part = part / np.sqrt(np.einsum("co,cd,do->o", part, _angular_overlap(shell.l), part))
            channels.setdefault(l, []).append(offset + np.arange(2 * l + 1))
            offset += 2 * l + 1
            parts.append(part)
        blocks.append(np.hstack(parts) / np.diag(cartesian_block(shell.l, True))[:, None])
    transform = np.zeros((offset, offset))
    start = 0
    for block in blocks:
        transform[start : start + block.shape[0], start : start + block.shape[1]] = block
        start += block.shape[0]
    return transform, {l: np.stack(rows) for l, rows in sorted(channels.items())}  # noqa: E741


def _channel_occupations(atomic_number: int) -> dict[int, float]:
    """Electrons in each angular momentum of the ground configuration."""
    electrons: dict[int, float] = {}
    for _, l, n in ground_state_configuration(atomic_number):  # noqa: E741
        electrons[l] = electrons.get(l, 0.0) + n
    return electrons


@functools.cache
def atomic_density(atomic_number: int, basis_name: str, cartesian: bool) -> np.ndarray:
    """Spherically averaged, spin-restricted Hartree-Fock density of one neutral atom.

    The atom is in its ground configuration (``ground_state_configuration``), each partly
    filled shell sharing its electrons equally among its ``2l + 1`` orbitals (fractional
    occupations), which keeps the density spherical; each angular momentum fills its lowest
    orbitals.

    Args:
        atomic_number: the element (H to Kr).
        basis_name: a basis-set name ``build_basis`` knows.
        cartesian: cartesian instead of spherical functions.

    Returns:
        The total (alpha + beta) density matrix in the atom's basis functions; its trace with
        the atom's overlap matrix is the number of electrons.

    Raises:
        ValueError: if the basis has too few functions of some ``l`` for the configuration.
        RuntimeError: if the atomic SCF does not converge.

    Example:
        >>> import jax
        >>> with jax.enable_x64(True):
        ...     d = atomic_density(1, "sto-3g", False)
        >>> d.round(6).tolist()
        [[1.0]]
    """
    basis = build_basis((atomic_number,), basis_name, cartesian=cartesian)
    transform, channels = _angular_channels(basis)
    electrons = _channel_occupations(atomic_number)
    # Eager even when called while a jit-compiled SCF is being traced: the atom is a constant.
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        integrals = compute_integrals(basis, np.zeros((1, 3)), np.array([atomic_number]))
        if atomic_number == 1:  # one electron: no self-repulsion, the core Hamiltonian is exact
            integrals = integrals._replace(eri=np.zeros_like(integrals.eri))
        overlap = transform.T @ np.asarray(integrals.overlap) @ transform
        orthogonalisers, occupations = {}, {}
        for l, index in channels.items():  # noqa: E741
            block = np.mean([overlap[np.ix_(i, i)] for i in index.T], axis=0)
            values, vectors = np.linalg.eigh(block)
            keep = values > _LINEAR_DEPENDENCE * values.max()
            orthogonalisers[l] = vectors[:, keep] / np.sqrt(values[keep])
            occupations[l] = _fill(electrons.get(l, 0.0), l, int(keep.sum()))
        missing = sorted(set(electrons) - set(channels))
        if missing:
            raise ValueError(
                f"basis set {basis_name!r} has no l={missing[0]} functions on "
                f"{element_symbol(atomic_number)}, whose ground configuration occupies them"
            )
        density = np.zeros_like(overlap)
        for _ in range(_MAX_ITERATIONS):
            fock = transform.T @ np.asarray(rhf_fock(transform @ density @ transform.T, integrals))
            fock = fock @ transform
            updated = np.zeros_like(density)
            for l, index in channels.items():  # noqa: E741
                block = np.mean([fock[np.ix_(i, i)] for i in index.T], axis=0)
                x = orthogonalisers[l]
                orbitals = x @ np.linalg.eigh(x.T @ block @ x)[1]
                channel_density = (orbitals * occupations[l]) @ orbitals.T
                for i in index.T:
                    updated[np.ix_(i, i)] = channel_density
            change = np.abs(updated - density).max()
            density = 0.5 * (density + updated) if change > 1e-3 else updated
            if change < _TOLERANCE:
                return transform @ density @ transform.T
    raise RuntimeError(
        f"the atomic SCF for Z={atomic_number} in {basis_name} did not converge "
        f"(last density change {change:.2e})"
    )


def _fill(electrons: float, l: int, n_orbitals: int) -> np.ndarray:  # noqa: E741
    """Occupations (per orbital of each radial function) of the lowest shells of one ``l``."""
    capacity = 2.0 * (2 * l + 1)
    full = int(electrons // capacity)
    occupations = np.zeros(n_orbitals)
    if full + (electrons % capacity > 0) > n_orbitals:
        raise ValueError(f"{electrons:g} electrons of l={l} do not fit in {n_orbitals} shells")
    occupations[:full] = 2.0
    if electrons % capacity:
        occupations[full] = (electrons % capacity) / (2 * l + 1)
    return occupations


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
