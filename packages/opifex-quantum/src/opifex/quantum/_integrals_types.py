"""The integrals an SCF needs, as one pytree."""

from typing import NamedTuple

import jax


class Integrals(NamedTuple):
    """One- and two-electron integrals over a basis, plus the nuclear repulsion energy.

    Attributes:
        overlap: ``(n, n)`` overlap matrix ``S``.
        kinetic: ``(n, n)`` kinetic-energy matrix ``T``.
        nuclear: ``(n, n)`` nuclear-attraction matrix ``V`` (negative definite).
        eri: ``(n, n, n, n)`` electron-repulsion integrals ``(ij|kl)`` in chemists' notation.
        nuclear_repulsion: scalar nuclear repulsion energy in Hartree.
    """

    overlap: jax.Array
    kinetic: jax.Array
    nuclear: jax.Array
    eri: jax.Array
    nuclear_repulsion: jax.Array

    @property
    def core_hamiltonian(self) -> jax.Array:
        """The one-electron core Hamiltonian ``T + V``."""
        return self.kinetic + self.nuclear
