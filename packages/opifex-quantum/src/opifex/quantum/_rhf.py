"""Restricted Hartree-Fock: energy, Fock matrix and the SCF for closed shells."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from opifex.core import SolveResult
from opifex.quantum._energy_components import EnergyComponents
from opifex.quantum._fock import coulomb_and_exchange
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._precision import require_x64
from opifex.quantum._scf_config import SCFConfig
from opifex.quantum._scf_model import SpinModel
from opifex.quantum._scf_solver import check_scf_inputs, solve_scf


def rhf_fock(
    density: jax.Array, integrals: Integrals, orbitals: jax.Array | None = None
) -> jax.Array:
    """RHF Fock matrix ``F = h + J[D] - K[D] / 2`` of the total density ``D``.

    ``orbitals``: optional ``(n, k)`` ``C`` with ``D = C C^T`` (see ``exchange_matrix``).

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> [round(x, 6) for x in rhf_fock(2.0 * one, ints).ravel().tolist()]
        [0.1]
    """
    coulomb, exchange = coulomb_and_exchange(density, integrals.eri, orbitals)
    return integrals.core_hamiltonian + coulomb - 0.5 * exchange


def rhf_energy_components(density: jax.Array, integrals: Integrals) -> EnergyComponents:
    """The parts of the RHF energy of the total density ``D`` (any ``D``, differentiable).

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> parts = rhf_energy_components(2.0 * one, ints)
        >>> round(float(parts.coulomb), 6), round(float(parts.exchange), 6)
        (1.2, -0.6)
    """
    coulomb, exchange = coulomb_and_exchange(density, integrals.eri)
    energy = -0.25 * jnp.sum(density * exchange)
    return EnergyComponents.of(density, energy, integrals, coulomb)


def rhf_energy(density: jax.Array, integrals: Integrals) -> jax.Array:
    """Total RHF energy ``<D, h + F[D]> / 2 + E_nuc`` of the total density ``D``.

    Differentiable in ``density`` (its gradient is the Fock matrix) and in ``integrals``.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> round(float(rhf_energy(2.0 * one, ints)), 6)
        -0.4
        >>> [round(x, 6) for x in jax.grad(rhf_energy)(2.0 * one, ints).ravel().tolist()]
        [0.1]
    """
    return rhf_energy_components(density, integrals).total


def _rhf_fock_blocks(density: jax.Array, integrals: Integrals, orbitals=None) -> jax.Array:
    return rhf_fock(density[0], integrals, None if orbitals is None else orbitals[0])[None]


def _rhf_component_blocks(density: jax.Array, integrals: Integrals) -> EnergyComponents:
    return rhf_energy_components(density[0], integrals)


def rhf_model(n_electrons: int) -> SpinModel:
    """The RHF ``SpinModel`` of ``n_electrons`` (even) electrons, for ``SCFSolver``.

    Example:
        >>> rhf_model(10).n_occupied, rhf_model(10).occupation
        ((5,), 2.0)
    """
    return SpinModel((n_electrons // 2,), 2.0, _rhf_fock_blocks, _rhf_component_blocks)


def run_rhf(
    integrals: Integrals,
    n_electrons: int,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    initial_density: jax.Array | None = None,
) -> SolveResult:
    """Restricted Hartree-Fock SCF of a closed-shell system.

    Runs the SCF solver on ``opifex.core.run_solver``, jit-compiled (see
    ``opifex.quantum._scf_solver``); vmap it over a leading batch axis of ``integrals`` for a
    batch of geometries. Never raises for a failed SCF: read ``result.converged`` /
    ``result.status``. The density and energy are differentiable with respect to
    ``integrals`` by implicit differentiation at the converged density.

    Args:
        integrals: the ``Integrals`` of the basis (float64).
        n_electrons: number of electrons, a positive even Python int (static).
        config: ``SCFConfig`` (static).
        initial_density: total density ``(n, n)`` to start from; ``None`` uses the
            core-Hamiltonian guess.

    Returns:
        A ``SolveResult``: ``params`` the ``(n, n)`` total density, ``value`` its total energy
        (Eh), ``grad_norm`` its orbital-gradient norm, ``num_steps`` the SCF cycles,
        ``converged`` / ``status`` (``SolveStatus``), ``trace`` the per-cycle ``"value"``,
        ``"grad_norm"`` and ``"energy_change"`` (entry 0: the guess; length
        ``config.total_max_steps + 1``, NaN-padded) and ``aux`` an ``SCFOutputs``
        (energy components, ``(n,)`` orbital energies, coefficients, occupations).

    Raises:
        RuntimeError: if 64-bit floats are disabled.
        TypeError: if ``n_electrons`` is not an int, or ``integrals``/``config`` have the
            wrong type.
        ValueError: for an odd or impossible electron count or mismatched array shapes.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     one = jnp.ones((1, 1))
        ...     ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), jnp.zeros(()))
        ...     result = run_rhf(ints, 2)
        >>> bool(result.converged), round(float(result.value), 6), int(result.num_steps)
        (True, -0.4, 1)
    """
    require_x64("run_rhf")
    n = check_scf_inputs(integrals, config, initial_density, n_spin=1)
    if isinstance(n_electrons, bool) or not isinstance(n_electrons, int):
        raise TypeError(f"n_electrons must be a Python int, got {type(n_electrons).__name__}")
    if n_electrons <= 0 or n_electrons % 2 or n_electrons // 2 > n:
        raise ValueError(
            f"n_electrons must be even, positive and at most {2 * n} for RHF in {n} basis "
            f"functions, got {n_electrons}"
        )
    density = None if initial_density is None else jnp.asarray(initial_density)
    return solve_scf(integrals, density, rhf_model(n_electrons), config)
