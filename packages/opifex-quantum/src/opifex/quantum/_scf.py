"""Hartree-Fock for a molecule: integrals, guess, SCF, and energies differentiable in geometry.

``run_scf`` builds the integrals and the guess and runs the SCF (``solve_scf``, what
``run_rhf`` / ``run_uhf`` run): the SCF solver on ``opifex.core.run_solver``, whose implicit
adjoint differentiates the converged density and energy through the fixed-point condition
``D = aufbau(F[D])`` (never through the cycles). Derivatives with respect to the nuclear
coordinates (or anything else the integrals depend on) then follow the implicit function
theorem: one linear solve with ``I - d aufbau(F[D]) / dD`` at the solution.

Compiled once per static key. ``run_scf``, ``scf_energy`` and ``nuclear_gradient`` share one
program, a ``jax.jit`` function of the coordinates and the SCF tolerances; ``nuclear_gradient``
adds a second (the analytic gradient at the converged density, ``opifex.quantum._gradient``).
The rest (basis set, electron counts, method, ``SCFConfig`` but its tolerances, guess) is
their static argument, so JAX's jit cache keeps one compiled program per molecule composition
and settings. A second
geometry of the same atoms, or the same molecule again, runs the compiled program without
tracing or compiling anything. (Beyond ``WHOLE_PROGRAM_MAX_FUNCTIONS`` basis functions
``run_scf`` at concrete coordinates runs the Schwarz-screened integrals and the SCF as two
cached programs instead.) Called under an outer ``jit`` / ``vmap`` / ``grad`` they are traced
into the caller's program like any jitted function.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import SolveResult, check_choice
from opifex.quantum._basis import BasisSet, build_basis
from opifex.quantum._gradient import scf_nuclear_gradient
from opifex.quantum._guess import superposition_of_atomic_densities
from opifex.quantum._integrals import MAX_MEMORY_MB, compute_integrals
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._minao import minao_guess
from opifex.quantum._molecule import Molecule
from opifex.quantum._precision import require_x64
from opifex.quantum._rhf import rhf_model
from opifex.quantum._scf_config import FORCE_CONV_TOL_GRAD, SCFConfig
from opifex.quantum._scf_solver import scf_tolerance, solve_scf
from opifex.quantum._uhf import spin_densities, uhf_model

METHODS = ("rhf", "uhf")
GUESSES = ("minao", "sad", "core")
WHOLE_PROGRAM_MAX_FUNCTIONS = 64
"""Up to this many basis functions ``run_scf`` compiles integrals, guess and SCF as one program.

Larger bases at concrete coordinates compute the Schwarz-screened integrals first (see
``compute_integrals``), then run the compiled SCF on them.
"""


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


@functools.lru_cache(maxsize=256)
def _named_basis(atomic_numbers: tuple[int, ...], name: str, cartesian: bool) -> BasisSet:
    """``build_basis``, kept: the same molecule must give an equal (jit-cache) key cheaply."""
    return build_basis(atomic_numbers, name, cartesian=cartesian)


def _basis_for(molecule: Molecule, basis: str | BasisSet, cartesian: bool) -> BasisSet:
    if isinstance(basis, BasisSet):
        if basis.atomic_numbers != molecule.atomic_numbers:
            raise ValueError(
                f"basis is placed on atoms {basis.atomic_numbers}, the molecule has "
                f"{molecule.atomic_numbers}"
            )
        return basis
    if not isinstance(basis, str):
        raise TypeError(f"basis must be a basis-set name or a BasisSet, got {basis!r}")
    return _named_basis(molecule.atomic_numbers, basis, bool(cartesian))


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


@dataclasses.dataclass(frozen=True)
class _Problem:
    """Everything static about one SCF: the key of the compiled programs (hashable).

    The coordinates and the SCF tolerances are the programs' traced arguments, so every
    geometry of the same atoms, charge, spin, basis set and settings shares one compiled
    program, whatever its tolerances (``config`` holds the rest, tolerances reset).
    """

    basis: BasisSet
    method: str
    n_alpha: int
    n_beta: int
    config: SCFConfig
    guess: str
    auxbasis: BasisSet | None = None
    max_memory: float = MAX_MEMORY_MB

    @functools.cached_property
    def _hash(self) -> int:
        return hash(
            (
                self.basis,
                self.method,
                self.n_alpha,
                self.n_beta,
                self.config,
                self.guess,
                self.auxbasis,
                self.max_memory,
            )
        )

    def __hash__(self) -> int:  # hashed on every call of a compiled program: computed once
        return self._hash


def _problem(
    what: str,
    molecule: Molecule,
    basis: str | BasisSet,
    method: str | None,
    config: SCFConfig,
    guess: str,
    cartesian: bool,
    auxbasis: str | None = None,
    max_memory: float = MAX_MEMORY_MB,
) -> _Problem:
    """Check the arguments of a public entry point (outside jit) and build its static key."""
    require_x64(what)
    if not isinstance(molecule, Molecule):
        raise TypeError(f"molecule must be a Molecule, got {type(molecule).__name__}")
    if not isinstance(config, SCFConfig):
        raise TypeError(f"config must be an SCFConfig, got {type(config).__name__}")
    method = resolve_method(molecule, method)
    check_choice(guess, GUESSES, "guess")
    basis_set = _basis_for(molecule, basis, cartesian)
    if method == "rhf":
        n_alpha = n_beta = molecule.n_electrons // 2
    else:
        n_alpha, n_beta = molecule.n_alpha, molecule.n_beta
    return _Problem(
        basis_set,
        method,
        n_alpha,
        n_beta,
        dataclasses.replace(config, conv_tol=SCFConfig.conv_tol, conv_tol_grad=None),
        guess,
        _auxiliary_basis(molecule, auxbasis, basis_set.cartesian),
        max_memory,
    )


def _auxiliary_basis(molecule: Molecule, auxbasis: str | None, cartesian: bool):
    """The auxiliary ``BasisSet`` of density fitting named ``auxbasis``, or None."""
    if auxbasis is None:
        return None
    if not isinstance(auxbasis, str):
        raise TypeError(f"auxbasis must be a basis-set name or None, got {auxbasis!r}")
    return _named_basis(molecule.atomic_numbers, auxbasis, cartesian)


def _coordinates(molecule: Molecule) -> jax.Array:
    return jnp.asarray(molecule.coordinates, dtype=jnp.float64)


def _model(problem: _Problem):
    if problem.method == "rhf":
        return rhf_model(problem.n_alpha + problem.n_beta)
    return uhf_model(problem.n_alpha, problem.n_beta)


def _solve(coordinates: jax.Array, tolerance: jax.Array, problem: _Problem) -> SolveResult:
    """Integrals, guess and SCF of one geometry (traced once per ``problem``)."""
    basis = problem.basis
    charges = np.asarray(basis.atomic_numbers, dtype=np.float64)
    integrals = compute_integrals(
        basis, coordinates, charges, auxbasis=problem.auxbasis, max_memory=problem.max_memory
    )
    initial = None
    if problem.guess == "minao":  # geometry-independent: a constant of the program
        initial = jnp.asarray(minao_guess(basis))
    elif problem.guess == "sad":
        initial = jnp.asarray(superposition_of_atomic_densities(basis))
    if initial is not None and problem.method == "uhf":
        initial = spin_densities(initial)
    return solve_scf(integrals, initial, _model(problem), problem.config, tolerance)


def _converged_energy(result: SolveResult) -> jax.Array:
    """The energy, NaN unless converged; its derivatives are NaN then too.

    ``where(converged, value, nan)`` would have a zero derivative for an unconverged SCF (a
    wrong gradient that looks right); the product carries the NaN into every derivative.
    """
    return result.value * jnp.where(result.converged, 1.0, jnp.nan)


def _gradient(
    coordinates: jax.Array, density: jax.Array, converged: jax.Array, problem: _Problem
) -> jax.Array:
    """The analytic gradient at a converged ``density``; NaN unless ``converged``."""
    gradient = scf_nuclear_gradient(
        coordinates, density, problem.basis, _model(problem), problem.auxbasis, problem.max_memory
    )
    return gradient * jnp.where(converged, 1.0, jnp.nan)


GRADIENT_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}
"""XLA options of the nuclear-gradient program at concrete coordinates: a first gradient is
mostly compilation, and these compile it markedly faster for a somewhat slower run (both
measured by ``benchmarks/quantum/bench_first_answer.py``). JAX takes them only on a top-level
``jit``; traced (under the caller's ``jit``, ``vmap``, ``grad``) the plain program is used."""

# The compiled programs, one per static ``problem`` (and coordinate shape) in jit's cache.
_solve_jit = jax.jit(_solve, static_argnums=2)
_gradient_jit = jax.jit(_gradient, static_argnums=3)
_gradient_top_level = jax.jit(
    _gradient, static_argnums=3, compiler_options=GRADIENT_COMPILER_OPTIONS
)


def _run(coordinates: jax.Array, tolerance: jax.Array, problem: _Problem) -> SolveResult:
    """``_solve`` as one cached program, except for large bases at concrete coordinates.

    Up to ``WHOLE_PROGRAM_MAX_FUNCTIONS`` functions the integrals, guess and SCF are one
    program: one compilation and, per call, one dispatch. (At concrete coordinates
    ``compute_integrals`` would first run a Schwarz pre-pass, a program of its own, which
    rarely drops a quartet in a basis this small; traced, it computes every quartet.)
    Beyond that, at concrete coordinates, the integrals are computed on their own
    (Schwarz-screened, compiled per basis set and screening outcome) and then the SCF
    (compiled per electron count and config).
    """
    if problem.basis.n_functions <= WHOLE_PROGRAM_MAX_FUNCTIONS or isinstance(
        coordinates, jax.core.Tracer
    ):
        return _solve_jit(coordinates, tolerance, problem)
    return _solve(coordinates, tolerance, problem)


def run_scf(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    guess: str = "minao",
    cartesian: bool = False,
    auxbasis: str | None = None,
    max_memory: float = MAX_MEMORY_MB,
) -> SolveResult:
    """Hartree-Fock SCF of a molecule; ``result.value`` is differentiable in the geometry.

    A ``jax.jit`` function of the coordinates, compiled once per molecule composition
    (atoms, charge, spin), basis set, method, ``config`` and guess: another geometry of the
    same atoms reuses the compiled program (no tracing, no compilation; beyond
    ``WHOLE_PROGRAM_MAX_FUNCTIONS`` functions the screened integrals and the SCF are two
    programs, reused while the screening keeps the same quartet blocks). It also works under
    an outer ``jit``, under ``vmap`` over a batch of geometries and under ``grad``. A failed
    SCF is never raised: read ``result.converged`` and ``result.status``. There is no retry
    unless you ask for one: ``SCFConfig(retry_level_shift=...)`` and/or ``retry_damping=...``
    make a run that exhausts ``max_steps`` continue from its last density with level shifting
    / damping (off by default).

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet`` placed on the molecule's atoms.
        method: ``"rhf"``, ``"uhf"``, or ``None``: RHF for singlets, UHF otherwise.
        config: the ``SCFConfig`` (convergence, DIIS, level shift, damping, and the retry,
            which is off unless ``retry_level_shift`` or ``retry_damping`` is set).
        guess: ``"minao"`` (projected minimal-basis atomic natural orbitals, see
            ``minao_guess``), ``"sad"`` (superposition of free-atom Hartree-Fock densities) or
            ``"core"`` (core Hamiltonian).
        cartesian: cartesian d functions when ``basis`` is a name.
        auxbasis: an auxiliary basis-set name (``"def2-universal-jkfit"``,
            ``"cc-pvtz-jkfit"``) for density fitting of J and K (RI-JK, like PySCF's
            ``density_fit(auxbasis=...)``), or None (default) for exact integrals. Fitting
            changes the energy by the fitting error of the auxiliary set and keeps
            about ``4 n_aux n^2`` bytes in memory instead of ``4 n^4``.
        max_memory: budget in MB for the two-electron integrals in memory (default 4000,
            PySCF's default); beyond it the call raises ``MemoryError`` before allocating,
            suggesting ``auxbasis`` (see ``compute_integrals`` and ``eri_memory_mb``).

    Returns:
        The ``SolveResult`` of ``run_rhf`` / ``run_uhf``: ``value`` the total energy (Eh),
        ``params`` the density, ``num_steps`` the SCF cycles, ``aux`` an ``SCFOutputs``
        (energy components, orbitals). ``value`` and ``params`` carry implicit derivatives
        with respect to the coordinates (through the converged SCF, not its cycles).

    Raises:
        ValueError: for an unknown method, guess or basis set, or RHF of an open shell.
        TypeError: for a ``molecule``, ``basis`` or ``config`` of the wrong type.
        RuntimeError: if 64-bit floats are disabled.
        MemoryError: if the integrals would need more than ``max_memory`` MB.

    Example:
        >>> import dataclasses
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> water = molecule_from_name("H2O")
        >>> with jax.enable_x64(True):
        ...     result = run_scf(water, "sto-3g")  # compiles
        ...     moved = dataclasses.replace(water, coordinates=water.coordinates * 1.01)
        ...     again = run_scf(moved, "sto-3g")  # same atoms: the compiled program again
        >>> bool(result.converged), round(float(result.value), 8), int(result.num_steps)
        (True, -74.94207995, 7)
    """
    problem = _problem(
        "run_scf", molecule, basis, method, config, guess, cartesian, auxbasis, max_memory
    )
    return _run(_coordinates(molecule), scf_tolerance(config), problem)


def scf_energy(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    guess: str = "minao",
    cartesian: bool = False,
    auxbasis: str | None = None,
    max_memory: float = MAX_MEMORY_MB,
) -> jax.Array:
    """The converged Hartree-Fock energy, or NaN when the SCF did not converge.

    Differentiable in ``molecule.coordinates`` (see ``run_scf``), so ``jax.grad`` gives
    nuclear gradients and ``jax.hessian`` second derivatives. It runs ``run_scf``'s compiled
    program (shared, compiled once per static key).

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet``.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (from the multiplicity).
        config: the ``SCFConfig``.
        guess: ``"minao"``, ``"sad"`` or ``"core"``.
        cartesian: cartesian d functions when ``basis`` is a name.
        auxbasis: an auxiliary basis-set name for density fitting (see ``run_scf``), or None.
        max_memory: budget in MB for the integrals in memory (see ``run_scf``).

    Returns:
        The total energy in Hartree (NaN for an unconverged SCF, never a wrong number; its
        derivatives are NaN then too).

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     print(round(float(scf_energy(molecule_from_name("H2"))), 6))
        -1.116759
    """
    problem = _problem(
        "scf_energy", molecule, basis, method, config, guess, cartesian, auxbasis, max_memory
    )
    return _converged_energy(_run(_coordinates(molecule), scf_tolerance(config), problem))


def nuclear_gradient(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    config: SCFConfig = SCFConfig(conv_tol_grad=FORCE_CONV_TOL_GRAD),  # noqa: B008 - frozen
    guess: str = "minao",
    cartesian: bool = False,
    auxbasis: str | None = None,
    max_memory: float = MAX_MEMORY_MB,
) -> jax.Array:
    """``dE/dR`` in Hartree/Bohr, shape ``(n_atoms, 3)`` (forces are its negative).

    The same sign convention as PySCF's ``mf.nuc_grad_method().kernel()``. NaN when the SCF
    did not converge. The gradient's error is of the order of the orbital gradient left at
    convergence (first order, where the energy's is second order), so the default ``config``
    converges it to ``FORCE_CONV_TOL_GRAD`` (1e-6) rather than ``sqrt(conv_tol)``: gradients
    then agree with PySCF's tightly converged ones to ~1e-7 Eh/Bohr. ``jax.grad`` of
    ``scf_energy`` gives the same gradient for the same ``config``.

    Runs ``run_scf``'s compiled program (the tolerances are values, not part of it), then the
    analytic gradient at the converged density: the Hellmann-Feynman and Pulay terms
    ``dE[D]/dR - tr(W dS/dR)`` (``opifex.quantum._gradient``; no derivative of the SCF cycles
    and no linear solve), a second program compiled once per static key. The next geometry of
    the same atoms runs both without tracing or compiling. Under ``jax.jacfwd`` it gives the
    Hessian (the density's implicit derivatives carry the response).

    Args:
        molecule: the molecule.
        basis: a basis-set name or a ``BasisSet``.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (from the multiplicity).
        config: the ``SCFConfig`` (default: ``conv_tol_grad=FORCE_CONV_TOL_GRAD``).
        guess: ``"minao"``, ``"sad"`` or ``"core"``.
        cartesian: cartesian d functions when ``basis`` is a name.
        auxbasis: an auxiliary basis-set name for density fitting (see ``run_scf``), or None:
            the gradient of the density-fitted energy.
        max_memory: budget in MB for the integrals in memory (see ``run_scf``).

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
    problem = _problem(
        "nuclear_gradient", molecule, basis, method, config, guess, cartesian, auxbasis, max_memory
    )
    coordinates = _coordinates(molecule)
    result = _run(coordinates, scf_tolerance(config), problem)
    top_level = not isinstance(coordinates, jax.core.Tracer)
    gradient_program = _gradient_top_level if top_level else _gradient_jit
    return gradient_program(coordinates, result.params, result.converged, problem)
