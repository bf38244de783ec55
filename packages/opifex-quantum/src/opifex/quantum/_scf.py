"""Hartree-Fock for a molecule: integrals, guess, SCF, and energies differentiable in geometry.

``run_scf`` builds the integrals and the guess and runs ``run_rhf`` / ``run_uhf``: the SCF
solver on ``opifex.core.run_solver``, whose implicit adjoint differentiates the converged
density and energy through the fixed-point condition ``D = aufbau(F[D])`` (never through the
cycles). Derivatives with respect to the nuclear coordinates (or anything else the integrals
depend on) then follow the implicit function theorem: one linear solve with
``I - d aufbau(F[D]) / dD`` at the solution.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from opifex.core import SolveResult, check_choice
from opifex.quantum._basis import BasisSet, build_basis
from opifex.quantum._guess import superposition_of_atomic_densities
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._minao import minao_guess
from opifex.quantum._molecule import Molecule
from opifex.quantum._precision import require_x64
from opifex.quantum._rhf import run_rhf
from opifex.quantum._scf_config import FORCE_CONV_TOL_GRAD, SCFConfig
from opifex.quantum._uhf import run_uhf

METHODS = ("rhf", "uhf")
GUESSES = ("minao", "sad", "core")


def resolve_method(molecule: Molecule, method: str | None) -> str:
    """The SCF method for ``molecule``: ``"rhf"`` for singlets and ``"uhf"`` otherwise.

    Args:
        molecule: the molecule.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (choose from the multiplicity).

    Returns:
        ``"rhf"`` or ``"uhf"``.

    Raises:
        ValueError: for an unknown method or RHF of an open-shell molecule.

    Example:
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> resolve_method(molecule_from_name("O2"), None)
        'uhf'
    """
    if method is None:
        return "rhf" if molecule.multiplicity == 1 else "uhf"
    check_choice(method, METHODS, "method")
    if method == "rhf" and molecule.multiplicity != 1:
        raise ValueError(
            f"method='rhf' needs a closed-shell molecule, got multiplicity "
            f"{molecule.multiplicity}; use method='uhf'"
        )
    return method


def _basis_for(molecule: Molecule, basis: str | BasisSet, cartesian: bool) -> BasisSet:
    if isinstance(basis, BasisSet):
        if basis.atomic_numbers != molecule.atomic_numbers:
            raise ValueError(
                f"basis is placed on atoms {basis.atomic_numbers}, the molecule has "
                f"{molecule.atomic_numbers}"
            )
        return basis
    return build_basis(molecule.atomic_numbers, basis, cartesian=cartesian)


def molecular_integrals(
    molecule: Molecule, basis: str | BasisSet = "sto-3g", *, cartesian: bool = False
) -> Integrals:
    """All integrals of ``molecule`` in a basis set, differentiable in its coordinates.

    Args:
        molecule: the molecule (its coordinates may be traced, e.g. under ``vmap``).
        basis: a basis-set name (see ``known_basis_sets``) or a ``BasisSet``.
        cartesian: cartesian d functions when ``basis`` is a name.

    Returns:
        The ``Integrals`` (overlap, kinetic, nuclear, eri, nuclear_repulsion).

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     ints = molecular_integrals(molecule_from_name("H2"), "sto-3g")
        >>> ints.eri.shape
        (2, 2, 2, 2)
    """
    basis_set = _basis_for(molecule, basis, cartesian)
    return compute_integrals(
        basis_set, jnp.asarray(molecule.coordinates), jnp.asarray(molecule.nuclear_charges)
    )


def run_scf(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    guess: str = "minao",
    cartesian: bool = False,
) -> SolveResult:
    """Hartree-Fock SCF of a molecule; ``result.value`` is differentiable in the geometry.

    Works under ``jit`` (everything but the coordinates is static) and ``vmap`` over a batch
    of geometries. A failed SCF is never raised: read ``result.converged`` and
    ``result.status``; ``config.retry_*`` retries it with level shifting / damping.

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet`` placed on the molecule's atoms.
        method: ``"rhf"``, ``"uhf"``, or ``None``: RHF for singlets, UHF otherwise.
        config: the ``SCFConfig`` (convergence, DIIS, level shift, damping, retries).
        guess: ``"minao"`` (projected minimal-basis atomic natural orbitals, see
            ``minao_guess``), ``"sad"`` (superposition of free-atom Hartree-Fock densities) or
            ``"core"`` (core Hamiltonian).
        cartesian: cartesian d functions when ``basis`` is a name.

    Returns:
        The ``SolveResult`` of ``run_rhf`` / ``run_uhf``: ``value`` the total energy (Eh),
        ``params`` the density, ``num_steps`` the SCF cycles, ``aux`` an ``SCFOutputs``
        (energy components, orbitals). ``value`` and ``params`` carry implicit derivatives
        with respect to the coordinates (through the converged SCF, not its cycles).

    Raises:
        ValueError: for an unknown method, guess or basis set, or RHF of an open shell.
        RuntimeError: if 64-bit floats are disabled.

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     result = run_scf(molecule_from_name("H2O"), "sto-3g")
        >>> bool(result.converged), round(float(result.value), 8), int(result.num_steps)
        (True, -74.94207995, 7)
    """
    require_x64("run_scf")
    method = resolve_method(molecule, method)
    check_choice(guess, GUESSES, "guess")
    basis_set = _basis_for(molecule, basis, cartesian)
    integrals = molecular_integrals(molecule, basis_set)
    initial = None
    if guess == "minao":
        initial = jnp.asarray(minao_guess(basis_set))
    elif guess == "sad":
        initial = jnp.asarray(superposition_of_atomic_densities(basis_set))
    if method == "rhf":
        return run_rhf(integrals, molecule.n_electrons, config, initial)
    return run_uhf(integrals, molecule.n_alpha, molecule.n_beta, config, initial)


def scf_energy(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    guess: str = "minao",
    cartesian: bool = False,
) -> jax.Array:
    """The converged Hartree-Fock energy, or NaN when the SCF did not converge.

    Differentiable in ``molecule.coordinates`` (see ``run_scf``), so ``jax.grad`` gives
    nuclear gradients and ``jax.hessian`` second derivatives.

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet``.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (from the multiplicity).
        config: the ``SCFConfig``.
        guess: ``"minao"``, ``"sad"`` or ``"core"``.
        cartesian: cartesian d functions when ``basis`` is a name.

    Returns:
        The total energy in Hartree (NaN for an unconverged SCF, never a wrong number).

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     print(round(float(scf_energy(molecule_from_name("H2"))), 6))
        -1.116759
    """
    result = run_scf(
        molecule, basis, method=method, config=config, guess=guess, cartesian=cartesian
    )
    return jnp.where(result.converged, result.value, jnp.nan)


def nuclear_gradient(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(conv_tol_grad=FORCE_CONV_TOL_GRAD),  # noqa: B008 - frozen
    guess: str = "minao",
    cartesian: bool = False,
) -> jax.Array:
    """``dE/dR`` in Hartree/Bohr, shape ``(n_atoms, 3)`` (forces are its negative).

    The same sign convention as PySCF's ``mf.nuc_grad_method().kernel()``. NaN when the SCF
    did not converge. The gradient's error is of the order of the orbital gradient left at
    convergence (first order, where the energy's is second order), so the default ``config``
    converges it to ``FORCE_CONV_TOL_GRAD`` (1e-6) rather than ``sqrt(conv_tol)``: gradients
    then agree with PySCF's tightly converged ones to ~1e-7 Eh/Bohr. ``jax.grad`` of
    ``scf_energy`` gives the same gradient for the same ``config``.

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet``.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (from the multiplicity).
        config: the ``SCFConfig`` (default: ``conv_tol_grad=FORCE_CONV_TOL_GRAD``).
        guess: ``"minao"``, ``"sad"`` or ``"core"``.
        cartesian: cartesian d functions when ``basis`` is a name.

    Returns:
        The nuclear gradient of the total energy.

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     g = nuclear_gradient(molecule_from_name("H2"))
        >>> bool(abs(float(g[0, 0] + g[1, 0])) < 1e-8)   # no net force
        True
    """

    def energy(coordinates: jax.Array) -> jax.Array:
        moved = dataclasses.replace(molecule, coordinates=coordinates)
        return scf_energy(
            moved, basis, method=method, config=config, guess=guess, cartesian=cartesian
        )

    return jax.grad(energy)(jnp.asarray(molecule.coordinates))
