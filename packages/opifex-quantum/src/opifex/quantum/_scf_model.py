"""What RHF and UHF share: spin blocks, orthogonalisation, aufbau diagonalisation, the core guess.

Densities and Fock matrices are stacks of spin blocks ``(n_spin, n, n)``: one block holding the
total density (occupation 2) for RHF, alpha and beta blocks (occupation 1) for UHF. In both
cases the electronic energy is ``sum_s <D_s, h + F_s> / 2`` and ``dE/dD_s = F_s``, so one SCF
solver (``opifex.quantum._scf_solver``) serves both. Users see an RHF density as ``(n, n)``
and UHF densities as ``(2, n, n)``; ``SpinModel.blocks`` and ``SpinModel.unblock`` convert.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from opifex.quantum._energy_components import EnergyComponents
from opifex.quantum._integrals_types import Integrals

_DEGENERACY = 1e-6  # Eh: core orbitals this close share electrons in the guess
FockBuilder = Callable[..., jax.Array]
"""``fock(blocks, integrals)``; for density-fitted integrals the solver may also pass
``orbitals`` (``SpinModel.occupied_factor``) whose ``C C^T`` are the density blocks."""


@dataclasses.dataclass(frozen=True)
class SpinModel:
    """What distinguishes RHF from UHF in the SCF (static, hashable).

    Attributes:
        n_occupied: occupied orbitals of each spin block.
        occupation: electrons per occupied orbital (2 for RHF, 1 for UHF).
        fock: ``(n_spin, n, n)`` density blocks and integrals -> Fock blocks.
        components: density blocks and integrals -> ``EnergyComponents``.

    Example:
        >>> import jax.numpy as jnp
        >>> rhf = SpinModel((1,), 2.0, None, None)
        >>> rhf.blocks(jnp.eye(3)).shape, rhf.unblock(rhf.blocks(jnp.eye(3))).shape
        ((1, 3, 3), (3, 3))
    """

    n_occupied: tuple[int, ...]
    occupation: float
    fock: FockBuilder
    components: Callable[[jax.Array, Integrals], EnergyComponents]

    @property
    def n_spin(self) -> int:
        """Number of spin blocks: 1 for RHF, 2 for UHF."""
        return len(self.n_occupied)

    def blocks(self, density: jax.Array) -> jax.Array:
        """A user-shaped density (RHF ``(n, n)``, UHF ``(2, n, n)``) as ``(n_spin, n, n)``."""
        return jnp.reshape(density, (self.n_spin, *jnp.shape(density)[-2:]))

    def unblock(self, blocks: jax.Array) -> jax.Array:
        """Spin-block arrays in the user's shape: RHF drops the leading axis of length 1."""
        return blocks[0] if self.n_spin == 1 else blocks

    def occupations(self, n: int, dtype: jnp.dtype) -> jax.Array:
        """``(n_spin, n)`` aufbau occupation numbers of ``n`` orbitals per block."""
        occupied = jnp.stack([jnp.arange(n) < k for k in self.n_occupied])
        return self.occupation * occupied.astype(dtype)

    def occupied_factor(self, coefficients: jax.Array) -> jax.Array:
        """``(n_spin, n, k)`` ``C`` with ``C C^T`` the aufbau density of each block.

        The lowest ``k = max(n_occupied)`` orbitals scaled by the square roots of their
        occupations (zero columns where a block has fewer occupied orbitals).
        """
        k = max(self.n_occupied)
        weights = self.occupations(coefficients.shape[-1], coefficients.dtype)[:, :k]
        return coefficients[..., :k] * jnp.sqrt(weights)[:, None, :]

    def diagonalize(self, fock: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Orbital energies, coefficients and aufbau density blocks of Fock blocks ``fock``.

        Args:
            fock: ``(n_spin, n, n)`` Fock blocks.
            x: the orthogonaliser of the overlap matrix (``orthogonalizer``).

        Returns:
            ``(n_spin, n)`` ascending orbital energies, ``(n_spin, n, n)`` coefficients
            (columns) and the ``(n_spin, n, n)`` density of the lowest orbitals.
        """
        energies, vectors = jnp.linalg.eigh(jnp.einsum("ai,sab,bj->sij", x, fock, x))
        coefficients = jnp.einsum("ai,sij->saj", x, vectors)
        weights = self.occupations(x.shape[0], coefficients.dtype)
        density = jnp.einsum("sai,si,sbi->sab", coefficients, weights, coefficients)
        return energies, coefficients, density


def orthogonalizer(overlap: jax.Array) -> jax.Array:
    """Canonical orthogonalisation ``X = U s^-1/2`` with ``X^T S X = 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> orthogonalizer(jnp.array([[4.0]])).tolist()
        [[0.5]]
    """
    eigenvalues, vectors = jnp.linalg.eigh(overlap)
    return vectors / jnp.sqrt(eigenvalues)


def commutator(density: jax.Array, fock: jax.Array, overlap: jax.Array, x: jax.Array):
    """``X^T (F D S - S D F) X`` for each spin block: zero at self-consistency.

    Example:
        >>> import jax.numpy as jnp
        >>> block = jnp.eye(2)[None]
        >>> float(jnp.abs(commutator(block, 3.0 * block, jnp.eye(2), jnp.eye(2))).max())
        0.0
    """
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
    core = jnp.broadcast_to(integrals.core_hamiltonian, (model.n_spin, *integrals.overlap.shape))
    x = orthogonalizer(integrals.overlap)
    energies, vectors = jnp.linalg.eigh(jnp.einsum("ai,sab,bj->sij", x, core, x))
    coefficients = jnp.einsum("ai,sij->saj", x, vectors)
    occupations = _spread_frontier(energies, model)
    return jnp.einsum("sai,si,sbi->sab", coefficients, occupations, coefficients)
