"""Restricted Hartree-Fock: energy, Fock matrix and the SCF for closed shells."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from opifex.quantum._fock import coulomb_matrix, exchange_matrix
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._precision import require_x64
from opifex.quantum._scf_config import SCFConfig
from opifex.quantum._scf_loop import SpinModel, check_scf_inputs, solve_scf
from opifex.quantum._scf_result import EnergyComponents, SCFResult


def rhf_fock(density: jax.Array, integrals: Integrals) -> jax.Array:
    """RHF Fock matrix ``F = h + J[D] - K[D] / 2`` of the total density ``D``.

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> [round(x, 6) for x in rhf_fock(2.0 * one, ints).ravel().tolist()]
        [0.1]
    """
    return (
        integrals.core_hamiltonian
        + coulomb_matrix(density, integrals.eri)
        - 0.5 * exchange_matrix(density, integrals.eri)
    )


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
    exchange = -0.25 * jnp.sum(density * exchange_matrix(density, integrals.eri))
    return EnergyComponents.of(density, exchange, integrals)


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


def _rhf_fock_blocks(density: jax.Array, integrals: Integrals) -> jax.Array:
    return rhf_fock(density[0], integrals)[None]


def _rhf_component_blocks(density: jax.Array, integrals: Integrals) -> EnergyComponents:
    return rhf_energy_components(density[0], integrals)


def run_rhf(
    integrals: Integrals,
    n_electrons: int,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    initial_density: jax.Array | None = None,
) -> SCFResult:
    """Restricted Hartree-Fock SCF of a closed-shell system.

    Runs one jit-compiled ``lax.while_loop`` (see ``opifex.quantum._scf_loop``); vmap it over a
    leading batch axis of ``integrals`` for a batch of geometries. Never raises for a failed
    SCF: read ``result.converged`` / ``result.status``.

    Args:
        integrals: the ``Integrals`` of the basis (float64).
        n_electrons: number of electrons, a positive even Python int (static).
        config: ``SCFConfig`` (static).
        initial_density: total density ``(n, n)`` to start from; ``None`` uses the
            core-Hamiltonian guess.

    Returns:
        An ``SCFResult`` with ``(n, n)`` total density and ``(n,)`` orbital energies.

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
        >>> bool(result.converged), round(float(result.energy), 6)
        (True, -0.4)
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
    blocks = None if initial_density is None else jnp.asarray(initial_density)[None]
    model = SpinModel((n_electrons // 2,), 2.0, _rhf_fock_blocks, _rhf_component_blocks)
    out = solve_scf(integrals, blocks, model, config)
    return SCFResult(
        energy=out.components.total,
        components=out.components,
        orbital_energies=out.orbital_energies[0],
        coefficients=out.coefficients[0],
        density=out.density[0],
        occupations=out.occupations[0],
        converged=out.status == 0,
        status=out.status,
        iterations=out.iterations,
        residual=out.residual,
        energy_change=out.energy_change,
        history=out.history,
        retried=out.retried,
    )
