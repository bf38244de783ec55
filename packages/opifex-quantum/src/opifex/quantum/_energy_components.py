"""The Hartree-Fock energy split into its parts."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

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
    def of(
        cls,
        density: jax.Array,
        exchange: jax.Array,
        integrals: Integrals,
        coulomb_of_density: jax.Array | None = None,
    ) -> EnergyComponents:
        """The parts of the energy of the total density ``D`` given its exchange energy.

        The kinetic, nuclear-attraction and Coulomb parts depend on ``D`` alone; only the
        exchange energy differs between RHF and UHF, so the caller supplies it, and ``J[D]``
        when it has it (else it is built here).

        Example:
            >>> import jax.numpy as jnp
            >>> one = jnp.ones((1, 1))
            >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one[None, None], 0.0 * one[0, 0])
            >>> round(float(EnergyComponents.of(2.0 * one, jnp.asarray(-0.6), ints).total), 6)
            -0.4
        """
        kinetic = jnp.sum(density * integrals.kinetic)
        nuclear_attraction = jnp.sum(density * integrals.nuclear)
        if coulomb_of_density is None:
            coulomb_of_density = coulomb_matrix(density, integrals.eri)
        coulomb = 0.5 * jnp.sum(density * coulomb_of_density)
        return cls(
            kinetic=kinetic,
            nuclear_attraction=nuclear_attraction,
            coulomb=coulomb,
            exchange=exchange,
            one_electron=kinetic + nuclear_attraction,
            two_electron=coulomb + exchange,
            nuclear_repulsion=jnp.asarray(integrals.nuclear_repulsion),
        )
