"""The SCF iteration of RHF and UHF as an ``opifex.core`` solver, driven by ``run_solver``.

``SCFSolver`` has the ``init / step / terminate`` methods of ``opifex.core.run_solver``; its
``params`` are the density (RHF total ``(n, n)``, UHF alpha and beta ``(2, n, n)``), its
``value`` the total energy of that density and its ``grad_norm`` the orbital-gradient norm.

One step is one SCF cycle, counted as PySCF counts its cycles, starting from the guess density
``D``:

1. store ``(D, F[D], e, E)`` in the DIIS history (from ``diis_start_cycle`` on) and extrapolate
   the Fock matrix;
2. shift the virtual space up by ``level_shift`` (``F + shift (S - S D S / occupation)``);
3. diagonalise in the orthonormal basis ``X = U s^-1/2`` (canonical orthogonalisation,
   ``S = U s U^T``) and occupy the lowest orbitals (aufbau);
4. mix in ``damping`` of the previous density;
5. build ``F`` of the new density, its energy and the commutator error
   ``e = X^T (F D S - S D F) X``; the residual is ``|e|_F / sqrt(2)`` (PySCF's ``|g|``).

``terminate`` reports ``SUCCESS`` when ``|dE| < conv_tol`` and the residual is below
``conv_tol_grad``, both of the density the step just built: the density, energy and residual
that ``run_solver`` returns are the ones the test was applied to. The driver stops a NaN/inf
energy or residual (``NONFINITE``) and the cycle budget (``MAX_STEPS_REACHED``). With a retry
configured, a first attempt that runs out of its ``max_steps`` cycles is followed, in the same
loop, by a second one from its last density with the retry level shift and damping and an
emptied DIIS history; the driver's budget covers both attempts.

After the loop, ``aux`` diagonalises the Fock matrix of the returned density once more (not
counted as a cycle, as in PySCF) for canonical orbitals and orbital energies; its occupied
orbitals span ``aufbau(F[D])``, which differs from ``D`` by the order of the residual.

The returned density and energy are differentiable with respect to the integrals through the
driver's implicit adjoint: ``optimality_fn`` is the fixed-point residual
``D - aufbau(F[D])`` and ``value_fn`` the energy of a density; the cycles are never unrolled.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core import SolveResult, SolveStatus, run_solver, tree_where
from opifex.quantum._density_fitting import DensityFittedERI
from opifex.quantum._diis import DIISState, diis_init, diis_push, energy_diis_fock
from opifex.quantum._direct import DirectERI
from opifex.quantum._energy_components import EnergyComponents
from opifex.quantum._fock import COMPACT_LAYOUTS
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._projector import aufbau_density
from opifex.quantum._scf_config import SCFConfig
from opifex.quantum._scf_model import SpinModel, commutator, core_guess, orthogonalizer


class SCFState(NamedTuple):
    """The state of ``SCFSolver`` (arrays only).

    Attributes:
        params: the density of the last cycle (RHF ``(n, n)``, UHF ``(2, n, n)``).
        value: its total energy (Eh).
        grad_norm: its orbital-gradient norm (see ``SCFConfig.conv_tol_grad``).
        num_steps: SCF cycles run, both attempts together (0-d int32).
        energy_change: ``value`` minus the previous cycle's (NaN before the first cycle).
        fock: ``(n_spin, n, n)`` Fock blocks of ``params``.
        error: ``(n_spin, n, n)`` commutator error of ``params`` in the orthonormal basis.
        diis: the DIIS history.
        orthogonalizer: ``X`` with ``X^T S X = 1``.
        attempt_steps: cycles of the current attempt (the retry starts again from 0).
        retried: whether the retry attempt has started (0-d bool).
        tolerance: ``(2,)`` the energy-change and orbital-gradient tolerances in force (from
            the ``SCFConfig``, or given to ``solve_scf``: values, not part of the compiled
            program, so runs that differ only in tolerances share one compilation).
    """

    params: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    energy_change: jax.Array
    fock: jax.Array
    error: jax.Array
    diis: DIISState
    orthogonalizer: jax.Array
    attempt_steps: jax.Array
    retried: jax.Array
    tolerance: jax.Array


class SCFOutputs(NamedTuple):
    """The SCF-specific outputs of ``run_scf`` / ``run_rhf`` / ``run_uhf`` (``SolveResult.aux``).

    Attributes:
        components: the ``EnergyComponents`` of the density (their ``total`` is
            ``SolveResult.value``).
        orbital_energies: ``(n,)`` for RHF, ``(2, n)`` alpha and beta for UHF, ascending:
            eigenvalues of the Fock matrix of the returned density.
        coefficients: the canonical orbitals (columns) of that Fock matrix, ``(n, n)`` RHF or
            ``(2, n, n)`` UHF.
        occupations: orbital occupation numbers, shaped like ``orbital_energies``.
        energy_change: energy change of the last cycle (NaN if no cycle ran).
        retried: whether the shifted/damped second attempt ran (0-d bool).
    """

    components: EnergyComponents
    orbital_energies: jax.Array
    coefficients: jax.Array
    occupations: jax.Array
    energy_change: jax.Array
    retried: jax.Array

    # SCFResult's names for what is now SolveResult's (deprecated for one release)
    RESULT_ALIASES = {"density": "params"}  # noqa: RUF012


def _symmetric(density: jax.Array) -> jax.Array:
    return 0.5 * (density + jnp.swapaxes(density, -1, -2))


@dataclasses.dataclass(frozen=True)
class SCFSolver:
    """The SCF iteration for ``opifex.core.run_solver`` (see the module docstring).

    ``run_solver(SCFSolver(model, config), density, integrals,
    max_steps=config.total_max_steps)`` runs it.

    Attributes:
        model: RHF or UHF (``SpinModel``).
        config: the ``SCFConfig``.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from opifex.core import run_solver
        >>> one = jnp.ones((1, 1))
        >>> with jax.enable_x64(True):
        ...     ints = Integrals(one, 0.5 * one, -one, 0.6 * one[None, None], 0.0 * one[0, 0])
        ...     fock = lambda d, i: i.core_hamiltonian + 0.5 * d * i.eri[0, 0]
        ...     parts = lambda d, i: EnergyComponents(*[d.sum()] * 7)
        ...     solver = SCFSolver(SpinModel((1,), 2.0, fock, parts), SCFConfig())
        ...     result = run_solver(solver, 2.0 * one, ints, max_steps=50)
        >>> result.status_name, int(result.num_steps)
        ('SUCCESS', 1)
    """

    model: SpinModel
    config: SCFConfig

    def _evaluate(
        self, blocks, integrals: Integrals, x: jax.Array, orbitals=None, fock=None
    ) -> tuple:
        """Fock blocks, commutator error, total energy and residual of density blocks.

        ``orbitals`` (``SpinModel.occupied_factor``), when the blocks are exactly their aufbau
        density, lets a density-fitted exchange build use them (``exchange_matrix``). ``fock``,
        when given, is the blocks' Fock matrix, built already.
        """
        if fock is None:
            extra = () if orbitals is None else (orbitals,)
            fock = self.model.fock(blocks, integrals, *extra)
        error = commutator(blocks, fock, integrals.overlap, x)
        electronic = 0.5 * jnp.sum(blocks * (integrals.core_hamiltonian + fock))
        energy = electronic + integrals.nuclear_repulsion
        return fock, error, energy, jnp.sqrt(jnp.sum(error**2) / 2.0)

    @staticmethod
    def _converged(state: SCFState) -> jax.Array:
        energy_tolerance, gradient_tolerance = state.tolerance[0], state.tolerance[1]
        return (jnp.abs(state.energy_change) < energy_tolerance) & (
            state.grad_norm < gradient_tolerance
        )

    def init(self, density: jax.Array, integrals: Integrals) -> SCFState:
        """The state at the guess ``density`` (no cycle run yet)."""
        x = orthogonalizer(integrals.overlap)
        blocks = self.model.blocks(density)
        fock, error, energy, residual = self._evaluate(blocks, integrals, x)
        zero = jnp.zeros((), jnp.int32)
        return SCFState(
            params=density,
            value=energy,
            grad_norm=residual,
            num_steps=zero,
            energy_change=jnp.full((), jnp.nan, energy.dtype),
            fock=fock,
            error=error,
            diis=diis_init(self.config.diis_space, blocks.shape, blocks.dtype),
            orthogonalizer=x,
            attempt_steps=zero,
            retried=jnp.zeros((), bool),
            tolerance=scf_tolerance(self.config),
        )

    def step(self, state: SCFState, integrals: Integrals) -> SCFState:
        """One SCF cycle (and the switch to the retry when the first attempt runs out)."""
        config, model, overlap = self.config, self.model, integrals.overlap
        blocks = model.blocks(state.params)
        diis, fock = state.diis, state.fock
        if config.diis is not None:
            pushed = diis_push(diis, blocks, state.fock, state.error, state.value)
            diis = tree_where(state.attempt_steps >= config.diis_start_cycle, pushed, diis)
            fock = jnp.where(jnp.any(diis.valid), energy_diis_fock(diis, config.diis), fock)
        shift = jnp.where(state.retried, config.retry_level_shift, config.level_shift)
        damping = jnp.where(state.retried, config.retry_damping, config.damping)
        sds = jnp.einsum("ab,sbc,cd->sad", overlap, blocks, overlap)
        fock = fock + shift * (overlap - sds / model.occupation)
        _, coefficients, new_blocks = model.diagonalize(fock, state.orthogonalizer)
        new_blocks = (1.0 - damping) * new_blocks + damping * blocks
        # undamped, the new density is exactly C C^T of its occupied orbitals, from which a
        # density-fitted K is cheaper (n_aux n^2 k instead of n_aux n^3)
        undamped = config.damping == 0 and config.retry_damping == 0
        fitted = isinstance(integrals.eri, DensityFittedERI)
        orbitals = model.occupied_factor(coefficients) if undamped and fitted else None
        new_fock, error, energy, residual = self._evaluate(
            new_blocks,
            integrals,
            state.orthogonalizer,
            orbitals,
            self._incremental_fock(state, blocks, new_blocks, integrals),
        )
        attempt_steps = state.attempt_steps + 1
        new = state._replace(
            params=model.unblock(new_blocks),
            value=energy,
            grad_norm=residual,
            num_steps=state.num_steps + 1,
            energy_change=energy - state.value,
            fock=new_fock,
            error=error,
            diis=diis,
            attempt_steps=attempt_steps,
        )
        retry_budget = config.total_max_steps - config.max_steps
        budget = jnp.where(state.retried, retry_budget, config.max_steps)
        retry = (
            config.retry_enabled
            & ~state.retried
            & (attempt_steps >= budget)
            & ~self._converged(new)
        )
        empty = diis_init(config.diis_space, blocks.shape, blocks.dtype)
        return new._replace(
            diis=tree_where(retry, empty, diis),
            attempt_steps=jnp.where(retry, 0, attempt_steps),
            retried=state.retried | retry,
        )

    def _incremental_fock(self, state: SCFState, blocks, new_blocks, integrals: Integrals):
        """Direct SCF's ``F[D_new] = F[D] + G[D_new - D]``, density-screened; None otherwise.

        Only for a ``DirectERI`` with Schwarz bounds (``opifex.quantum._direct``): the
        difference's small entries let whole blocks of integrals go uncomputed.
        """
        eri = integrals.eri
        if not (isinstance(eri, DirectERI) and eri.screens_densities):
            return None
        screened = integrals._replace(eri=eri.screened())
        change = self.model.fock(new_blocks - blocks, screened) - integrals.core_hamiltonian
        return state.fock + change

    def terminate(self, state: SCFState, integrals: Integrals) -> tuple[jax.Array, jax.Array]:
        """Done, with ``SUCCESS``, when the energy change and the residual meet the tolerances."""
        done = self._converged(state)
        return done, jnp.asarray(SolveStatus.SUCCESS, jnp.int32)

    def trace_fields(self, state: SCFState) -> dict[str, jax.Array]:
        """Per-cycle ``energy_change`` beside the driver's ``value`` and ``grad_norm``."""
        return {"energy_change": state.energy_change}

    def aux(self, state: SCFState, integrals: Integrals) -> SCFOutputs:
        """Energy parts and canonical orbitals of the returned density (differentiable)."""
        model = self.model
        blocks = model.blocks(state.params)
        x = orthogonalizer(integrals.overlap)
        energies, coefficients, _ = model.diagonalize(model.fock(blocks, integrals), x)
        occupations = model.occupations(x.shape[0], energies.dtype)
        return SCFOutputs(
            components=model.components(blocks, integrals),
            orbital_energies=model.unblock(energies),
            coefficients=model.unblock(coefficients),
            occupations=model.unblock(occupations),
            energy_change=state.energy_change,
            retried=state.retried,
        )

    def optimality_fn(self, density: jax.Array, integrals: Integrals) -> jax.Array:
        """The fixed-point residual ``D - aufbau(F[D])``: zero at a self-consistent density."""
        model = self.model
        focks = model.fock(model.blocks(_symmetric(density)), integrals)
        updated = jnp.stack(
            [
                model.occupation * aufbau_density(fock, integrals.overlap, count)
                for fock, count in zip(focks, model.n_occupied, strict=True)
            ]
        )
        return density - model.unblock(updated)

    def value_fn(self, density: jax.Array, integrals: Integrals) -> jax.Array:
        """The total energy of ``density``."""
        return self.model.components(self.model.blocks(density), integrals).total


def check_scf_inputs(
    integrals: Integrals, config: SCFConfig, initial_density: jax.Array | None, n_spin: int
) -> int:
    """Validate the arguments of ``run_rhf`` / ``run_uhf`` and return the basis size.

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, one, -one, one.reshape(1, 1, 1, 1), one[0, 0])
        >>> check_scf_inputs(ints, SCFConfig(), None, 1)
        1
    """
    if not isinstance(integrals, Integrals):
        raise TypeError(f"integrals must be an Integrals, got {type(integrals).__name__}")
    if not isinstance(config, SCFConfig):
        raise TypeError(f"config must be an SCFConfig, got {type(config).__name__}")
    n = jnp.shape(integrals.overlap)[-1]
    expected = {"overlap": (n, n), "kinetic": (n, n), "nuclear": (n, n), "eri": (n,) * 4}
    expected["nuclear_repulsion"] = ()
    if isinstance(integrals.eri, COMPACT_LAYOUTS):
        del expected["eri"]
        if integrals.eri.n_functions != n:
            raise ValueError(
                f"integrals.eri is a {type(integrals.eri).__name__} of "
                f"{integrals.eri.n_functions} functions, "
                f"the overlap has {n}"
            )
    for name, shape in expected.items():
        if jnp.shape(getattr(integrals, name)) != shape:
            got = jnp.shape(getattr(integrals, name))
            raise ValueError(
                f"integrals.{name} must have shape {shape} for {n} functions, got {got}"
            )
    if initial_density is not None:
        allowed = [(n, n)] if n_spin == 1 else [(n, n), (2, n, n)]
        if jnp.shape(initial_density) not in allowed:
            shapes = " or ".join(str(s) for s in allowed)
            got = jnp.shape(initial_density)
            raise ValueError(f"initial_density must have shape {shapes}, got {got}")
    return n


def _as_float64(integrals: Integrals) -> Integrals:
    """Every leaf as float64 but integer arrays (a ``DirectERI``'s plan indices)."""

    def cast(leaf):
        leaf = jnp.asarray(leaf)
        return leaf if jnp.issubdtype(leaf.dtype, jnp.integer) else leaf.astype(jnp.float64)

    return jax.tree.map(cast, integrals)


@functools.partial(jax.jit, static_argnames=("model", "config"))
def solve_scf(
    integrals: Integrals,
    density: jax.Array | None,
    model: SpinModel,
    config: SCFConfig,
    tolerance: jax.Array | None = None,
) -> SolveResult:
    """``SCFSolver`` under ``jit``, from the core-Hamiltonian guess when ``density`` is None.

    Args:
        integrals: the ``Integrals`` (cast to float64).
        density: the guess in the user's shape (RHF ``(n, n)``, UHF ``(2, n, n)``) or None.
        model: RHF or UHF (static).
        config: the ``SCFConfig`` (static); its ``total_max_steps`` is the cycle budget.
        tolerance: ``(2,)`` energy-change and orbital-gradient tolerances used instead of
            ``config``'s (see ``scf_tolerance``); values, so they may be traced and a new
            pair does not recompile. None: ``config``'s.

    Returns:
        The ``SolveResult`` of ``opifex.core.run_solver`` (``aux`` an ``SCFOutputs``).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, one, -one, one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> with jax.enable_x64(True):
        ...     fock = lambda d, i: i.core_hamiltonian[None]
        ...     model = SpinModel((1,), 1.0, fock, lambda d, i: EnergyComponents(*[d.sum()] * 7))
        ...     out = solve_scf(ints, None, model, SCFConfig())
        >>> int(out.status), float(out.aux.components.kinetic)
        (0, 1.0)
    """
    integrals = _as_float64(integrals)
    if density is None:
        density = model.unblock(core_guess(integrals, model))
    solver = SCFSolver(model, config)
    state = solver.init(jnp.asarray(density, jnp.float64), integrals)
    if tolerance is not None:
        state = state._replace(tolerance=jnp.asarray(tolerance, jnp.float64).reshape(2))
    return run_solver(solver, None, integrals, init_state=state, max_steps=config.total_max_steps)


def scf_tolerance(config: SCFConfig) -> jax.Array:
    """``config``'s ``(conv_tol, gradient_tolerance)`` as the ``tolerance`` array of ``solve_scf``.

    Example:
        >>> import jax
        >>> with jax.enable_x64(True):
        ...     print(scf_tolerance(SCFConfig(conv_tol=1e-10, conv_tol_grad=1e-6)).tolist())
        [1e-10, 1e-06]
    """
    return jnp.asarray([config.conv_tol, config.gradient_tolerance], jnp.float64)
