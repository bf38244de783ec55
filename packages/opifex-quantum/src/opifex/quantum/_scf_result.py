"""What an SCF run returns: energies, orbitals, density, convergence report and history."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core import SolveStatus, status_message
from opifex.quantum._fock import coulomb_matrix
from opifex.quantum._integrals_types import Integrals


class EnergyComponents(NamedTuple):
    """The Hartree-Fock energy split into its parts (Hartree, 0-d arrays).

    Attributes:
        kinetic: ``tr(D T)``.
        nuclear_attraction: ``tr(D V)`` (negative).
        coulomb: classical electron-electron repulsion ``1/2 tr(D J[D])``.
        exchange: exchange energy (negative).
        one_electron: ``kinetic + nuclear_attraction``.
        two_electron: ``coulomb + exchange``.
        nuclear_repulsion: nucleus-nucleus repulsion.

    Example:
        >>> import jax.numpy as jnp
        >>> parts = EnergyComponents(*(jnp.zeros(()),) * 7)
        >>> float(parts.total)
        0.0
    """

    kinetic: jax.Array
    nuclear_attraction: jax.Array
    coulomb: jax.Array
    exchange: jax.Array
    one_electron: jax.Array
    two_electron: jax.Array
    nuclear_repulsion: jax.Array

    @property
    def total(self) -> jax.Array:
        """The total energy ``one_electron + two_electron + nuclear_repulsion``."""
        return self.one_electron + self.two_electron + self.nuclear_repulsion

    @classmethod
    def of(cls, density: jax.Array, exchange: jax.Array, integrals: Integrals) -> EnergyComponents:
        """The parts of the energy of the total density ``D`` given its exchange energy.

        The kinetic, nuclear-attraction and Coulomb parts depend on ``D`` alone; only the
        exchange energy differs between RHF and UHF, so the caller supplies it.

        Example:
            >>> import jax.numpy as jnp
            >>> one = jnp.ones((1, 1))
            >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one[None, None], 0.0 * one[0, 0])
            >>> round(float(EnergyComponents.of(2.0 * one, jnp.asarray(-0.6), ints).total), 6)
            -0.4
        """
        kinetic = jnp.sum(density * integrals.kinetic)
        nuclear_attraction = jnp.sum(density * integrals.nuclear)
        coulomb = 0.5 * jnp.sum(density * coulomb_matrix(density, integrals.eri))
        return cls(
            kinetic=kinetic,
            nuclear_attraction=nuclear_attraction,
            coulomb=coulomb,
            exchange=exchange,
            one_electron=kinetic + nuclear_attraction,
            two_electron=coulomb + exchange,
            nuclear_repulsion=jnp.asarray(integrals.nuclear_repulsion),
        )


class SCFResult(NamedTuple):
    """The outcome of ``run_rhf`` / ``run_uhf``: a pytree, so it passes through ``jit``/``vmap``.

    Attributes:
        energy: total energy (Eh) of ``density``.
        components: the ``EnergyComponents`` of ``energy``.
        orbital_energies: ``(n,)`` for RHF, ``(2, n)`` alpha and beta for UHF, ascending.
        coefficients: orbital coefficients (columns), ``(n, n)`` RHF or ``(2, n, n)`` UHF.
        density: RHF total density ``(n, n)``; UHF alpha and beta densities ``(2, n, n)``.
        occupations: orbital occupation numbers, shaped like ``orbital_energies``.
        converged: ``status == SolveStatus.SUCCESS`` (0-d bool).
        status: a ``SolveStatus`` code (0-d int32): ``SUCCESS``, ``MAX_STEPS_REACHED`` or
            ``NONFINITE``.
        iterations: SCF cycles run, both attempts together (0-d int32).
        residual: orbital-gradient norm of the last cycle (see ``SCFConfig.conv_tol_grad``).
        energy_change: energy change of the last cycle.
        history: ``{"energy", "energy_change", "residual"}``, one entry per cycle, of fixed
            length ``max_scf_iterations`` (plus ``retry_iterations``), NaN-padded.
        retried: whether the shifted/damped second attempt ran (0-d bool).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from opifex.quantum._rhf import run_rhf
        >>> from opifex.quantum._integrals_types import Integrals
        >>> with jax.enable_x64(True):
        ...     one = jnp.ones((1, 1))
        ...     ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), jnp.zeros(()))
        ...     result = run_rhf(ints, 2)
        >>> result.message
        'converged: the tolerance was met'
    """

    energy: jax.Array
    components: EnergyComponents
    orbital_energies: jax.Array
    coefficients: jax.Array
    density: jax.Array
    occupations: jax.Array
    converged: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array
    energy_change: jax.Array
    history: dict[str, jax.Array]
    retried: jax.Array

    @property
    def message(self) -> str:
        """A sentence explaining ``status`` (only for a concrete, unbatched result)."""
        return status_message(int(self.status))

    @property
    def status_name(self) -> str:
        """The ``SolveStatus`` name of ``status`` (only for a concrete, unbatched result)."""
        return SolveStatus(int(self.status)).name
