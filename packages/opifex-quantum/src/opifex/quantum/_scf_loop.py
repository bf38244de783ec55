"""The SCF iteration shared by RHF and UHF, as one ``lax.while_loop``.

Densities and Fock matrices are stacks of spin blocks ``(n_spin, n, n)``: one block holding the
total density (occupation 2) for RHF, alpha and beta blocks (occupation 1) for UHF. In both
cases the electronic energy is ``sum_s <D_s, h + F_s> / 2`` and ``dE/dD_s = F_s``, so one loop
serves both.

One cycle, counted as PySCF counts its cycles, starting from the guess density ``D``:

1. store ``(D, F[D], e, E)`` in the DIIS history (from ``diis_start_cycle`` on) and extrapolate
   the Fock matrix;
2. shift the virtual space up by ``level_shift`` (``F + shift (S - S D S / occupation)``);
3. diagonalise in the orthonormal basis ``X = U s^-1/2`` (canonical orthogonalisation,
   ``S = U s U^T``) and occupy the lowest orbitals (aufbau);
4. mix in ``damping`` of the previous density;
5. build ``F`` of the new density, its energy and the commutator error
   ``e = X^T (F D S - S D F) X``; the residual is ``|e|_F / sqrt(2)`` (PySCF's ``|g|``).

The loop stops when ``|dE| < conv_tol`` and the residual is below ``conv_tol_grad``, when the
energy or residual is NaN/inf, or at the cycle budget. With a retry configured, a first attempt
that runs out of cycles is followed, in the same loop, by a second one from its last density
with the retry level shift and damping and an emptied DIIS history. After the loop, the
un-shifted Fock matrix of the last density is diagonalised once more (not counted, as in
PySCF) to give canonical orbitals, orbital energies and the returned density.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core import SolveStatus
from opifex.quantum._diis import DIISState, diis_init, diis_push, energy_diis_fock
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._scf_config import SCFConfig
from opifex.quantum._scf_result import EnergyComponents

_DEGENERACY = 1e-6  # Eh: core orbitals this close share electrons in the guess
FockBuilder = Callable[[jax.Array, Integrals], jax.Array]


@dataclasses.dataclass(frozen=True)
class SpinModel:
    """What distinguishes RHF from UHF in the loop (static, hashable).

    Attributes:
        n_occupied: occupied orbitals of each spin block.
        occupation: electrons per occupied orbital (2 for RHF, 1 for UHF).
        fock: ``(n_spin, n, n)`` density blocks and integrals -> Fock blocks.
        components: density blocks and integrals -> ``EnergyComponents``.
    """

    n_occupied: tuple[int, ...]
    occupation: float
    fock: FockBuilder
    components: Callable[[jax.Array, Integrals], EnergyComponents]


class LoopOutput(NamedTuple):
    """What ``scf_loop`` hands to the RHF/UHF front ends (spin-block arrays)."""

    density: jax.Array
    components: EnergyComponents
    orbital_energies: jax.Array
    coefficients: jax.Array
    occupations: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array
    energy_change: jax.Array
    history: dict[str, jax.Array]
    retried: jax.Array


class _State(NamedTuple):
    density: jax.Array
    fock: jax.Array
    error: jax.Array
    energy: jax.Array
    diis: DIISState
    cycle: jax.Array
    attempt_cycle: jax.Array
    retried: jax.Array
    done: jax.Array
    status: jax.Array
    residual: jax.Array
    energy_change: jax.Array
    history: dict[str, jax.Array]


def orthogonalizer(overlap: jax.Array) -> jax.Array:
    """Canonical orthogonalisation ``X = U s^-1/2`` with ``X^T S X = 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> orthogonalizer(jnp.array([[4.0]])).tolist()
        [[0.5]]
    """
    eigenvalues, vectors = jnp.linalg.eigh(overlap)
    return vectors / jnp.sqrt(eigenvalues)


def _occupied_mask(model: SpinModel, n: int) -> jax.Array:
    return jnp.stack([jnp.arange(n) < k for k in model.n_occupied])


def _diagonalize(fock: jax.Array, x: jax.Array, model: SpinModel):
    """Orbital energies, coefficients and aufbau density blocks of Fock blocks ``fock``."""
    energies, vectors = jnp.linalg.eigh(jnp.einsum("ai,sab,bj->sij", x, fock, x))
    coefficients = jnp.einsum("ai,sij->saj", x, vectors)
    occupied = coefficients * _occupied_mask(model, x.shape[0])[:, None, :]
    density = model.occupation * jnp.einsum("sai,sbi->sab", occupied, coefficients)
    return energies, coefficients, density


def _electronic_energy(density: jax.Array, fock: jax.Array, integrals: Integrals) -> jax.Array:
    """``sum_s <D_s, h + F_s> / 2``: the electronic energy of density and Fock blocks."""
    return 0.5 * jnp.sum(density * (integrals.core_hamiltonian + fock))


def _commutator(density, fock, overlap, x):
    fds = jnp.einsum("sab,sbc,cd->sad", fock, density, overlap)
    return jnp.einsum("ai,sab,bj->sij", x, fds - jnp.swapaxes(fds, 1, 2), x)


def _spread_frontier(energies: jax.Array, model: SpinModel) -> jax.Array:
    """Aufbau occupations, shared equally among orbitals degenerate with the highest occupied."""
    rows = []
    for block, count in enumerate(model.n_occupied):
        aufbau = (jnp.arange(energies.shape[-1]) < count).astype(energies.dtype)
        if count > 0:
            tie = jnp.abs(energies[block] - energies[block, count - 1]) < _DEGENERACY
            aufbau = jnp.where(tie, jnp.sum(aufbau * tie) / jnp.sum(tie), aufbau)
        rows.append(aufbau)
    return model.occupation * jnp.stack(rows)


def core_guess(integrals: Integrals, model: SpinModel) -> jax.Array:
    """Density blocks of the lowest eigenvectors of the core Hamiltonian.

    When the highest occupied core orbital is degenerate with unoccupied ones (the pi orbitals
    of N2 in STO-3G, for example), its electrons are spread equally over the degenerate set,
    so the guess keeps the molecule's symmetry instead of an arbitrary eigensolver choice.

    Example:
        >>> import jax.numpy as jnp
        >>> ints = Integrals(jnp.eye(2), jnp.eye(2), -jnp.eye(2), jnp.zeros((2,) * 4), 0.0)
        >>> core_guess(ints, SpinModel((1,), 2.0, None, None)).tolist()
        [[[1.0, 0.0], [0.0, 1.0]]]
    """
    n_spin = len(model.n_occupied)
    core = jnp.broadcast_to(integrals.core_hamiltonian, (n_spin, *integrals.overlap.shape))
    x = orthogonalizer(integrals.overlap)
    energies, vectors = jnp.linalg.eigh(jnp.einsum("ai,sab,bj->sij", x, core, x))
    coefficients = jnp.einsum("ai,sij->saj", x, vectors)
    occupations = _spread_frontier(energies, model)
    return jnp.einsum("sai,si,sbi->sab", coefficients, occupations, coefficients)


def scf_loop(
    integrals: Integrals, density: jax.Array, model: SpinModel, config: SCFConfig
) -> LoopOutput:
    """Iterate from density blocks ``density`` to self-consistency (see the module docstring).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> with jax.enable_x64(True):
        ...     ints = Integrals(one, 0.5 * one, -one, 0.6 * one[None, None], 0.0 * one[0, 0])
        ...     fock = lambda d, i: i.core_hamiltonian + 0.5 * d * i.eri[0, 0]
        ...     model = SpinModel((1,), 2.0, fock, lambda d, i: EnergyComponents(*[d.sum()] * 7))
        ...     out = scf_loop(ints, core_guess(ints, model), model, SCFConfig())
        >>> int(out.status), int(out.iterations)
        (0, 1)
    """
    overlap = integrals.overlap
    x = orthogonalizer(overlap)
    total_cycles = config.max_scf_iterations + config.retry_iterations
    tolerance_grad = config.gradient_tolerance

    def evaluate(new_density):
        fock = model.fock(new_density, integrals)
        error = _commutator(new_density, fock, overlap, x)
        energy = _electronic_energy(new_density, fock, integrals) + integrals.nuclear_repulsion
        return fock, error, energy, jnp.sqrt(jnp.sum(error**2) / 2.0)

    def body(state: _State) -> _State:
        diis = state.diis
        fock = state.fock
        if config.diis is not None:
            pushed = diis_push(diis, state.density, state.fock, state.error, state.energy)
            use = state.attempt_cycle >= config.diis_start_cycle
            diis = jax.tree.map(lambda new, old: jnp.where(use, new, old), pushed, diis)
            fock = jnp.where(jnp.any(diis.valid), energy_diis_fock(diis, config.diis), fock)
        shift = jnp.where(state.retried, config.retry_level_shift, config.level_shift)
        damping = jnp.where(state.retried, config.retry_damping, config.damping)
        sds = jnp.einsum("ab,sbc,cd->sad", overlap, state.density, overlap)
        fock = fock + shift * (overlap - sds / model.occupation)
        new_density = _diagonalize(fock, x, model)[2]
        new_density = (1.0 - damping) * new_density + damping * state.density
        new_fock, error, energy, residual = evaluate(new_density)

        energy_change = energy - state.energy
        converged = (jnp.abs(energy_change) < config.conv_tol) & (residual < tolerance_grad)
        finite = jnp.isfinite(energy) & jnp.isfinite(residual)
        attempt_cycle = state.attempt_cycle + 1
        budget = jnp.where(state.retried, config.retry_iterations, config.max_scf_iterations)
        out_of_cycles = attempt_cycle >= budget
        retry = out_of_cycles & finite & ~converged & ~state.retried & config.retry_enabled
        status = jnp.where(
            finite,
            jnp.where(converged, SolveStatus.SUCCESS, SolveStatus.MAX_STEPS_REACHED),
            SolveStatus.NONFINITE,
        ).astype(jnp.int32)
        empty = diis_init(config.diis_space, diis.densities.shape[1:], diis.densities.dtype)
        record = {"energy": energy, "energy_change": energy_change, "residual": residual}
        return _State(
            density=new_density,
            fock=new_fock,
            error=error,
            energy=energy,
            diis=jax.tree.map(lambda e, d: jnp.where(retry, e, d), empty, diis),
            cycle=state.cycle + 1,
            attempt_cycle=jnp.where(retry, 0, attempt_cycle),
            retried=state.retried | retry,
            done=converged | ~finite | (out_of_cycles & ~retry),
            status=status,
            residual=residual,
            energy_change=energy_change,
            history={k: v.at[state.cycle].set(record[k]) for k, v in state.history.items()},
        )

    fock, error, energy, residual = evaluate(density)
    nan = jnp.full((total_cycles,), jnp.nan, energy.dtype)
    initial = _State(
        density=density,
        fock=fock,
        error=error,
        energy=energy,
        diis=diis_init(config.diis_space, density.shape, density.dtype),
        cycle=jnp.zeros((), jnp.int32),
        attempt_cycle=jnp.zeros((), jnp.int32),
        retried=jnp.zeros((), bool),
        done=jnp.zeros((), bool),
        status=jnp.asarray(SolveStatus.MAX_STEPS_REACHED, jnp.int32),
        residual=residual,
        energy_change=jnp.asarray(math.inf, energy.dtype),
        history={"energy": nan, "energy_change": nan, "residual": nan},
    )
    final = jax.lax.while_loop(lambda s: ~s.done, body, initial)
    orbital_energies, coefficients, density = _diagonalize(final.fock, x, model)
    occupations = model.occupation * _occupied_mask(model, x.shape[0]).astype(density.dtype)
    return LoopOutput(
        density=density,
        components=model.components(density, integrals),
        orbital_energies=orbital_energies,
        coefficients=coefficients,
        occupations=occupations,
        status=final.status,
        iterations=final.cycle,
        residual=final.residual,
        energy_change=final.energy_change,
        history=final.history,
        retried=final.retried,
    )


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


@functools.partial(jax.jit, static_argnames=("model", "config"))
def solve_scf(
    integrals: Integrals, density: jax.Array | None, model: SpinModel, config: SCFConfig
) -> LoopOutput:
    """``scf_loop`` under ``jit``, from the core-Hamiltonian guess when ``density`` is None.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, one, -one, one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> with jax.enable_x64(True):
        ...     fock = lambda d, i: i.core_hamiltonian[None]
        ...     model = SpinModel((1,), 1.0, fock, lambda d, i: EnergyComponents(*[d.sum()] * 7))
        ...     out = solve_scf(ints, None, model, SCFConfig())
        >>> int(out.status), float(out.components.kinetic)
        (0, 1.0)
    """
    integrals = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), integrals)
    if density is None:
        density = core_guess(integrals, model)
    return scf_loop(integrals, jnp.asarray(density, jnp.float64), model, config)
