"""A plain, differentiable Hartree-Fock energy of orbitals or densities, for outside optimisers.

``make_energy_fn`` computes the integrals of one molecule in one basis once and returns an
``EnergyFunction``: ``energy_fn(coefficients)`` is the Hartree-Fock energy of the determinant
spanned by any full-rank occupied coefficients (they are orthonormalised inside, with no
eigendecomposition, so every gradient step is valid), and ``energy_fn.from_density(density)``
evaluates the energy functional of a density matrix. Direct minimisation with an optax optimiser
or a learned SCF step drives these without touching integrals.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from opifex.quantum._basis import BasisSet
from opifex.quantum._integrals_types import Integrals
from opifex.quantum._molecule import Molecule
from opifex.quantum._precision import require_x64
from opifex.quantum._rhf import rhf_energy
from opifex.quantum._scf import molecular_integrals, resolve_method
from opifex.quantum._scf_model import orthogonalizer
from opifex.quantum._uhf import uhf_energy


def _projected_density(coefficients: jax.Array, overlap: jax.Array) -> jax.Array:
    """``C (C^T S C)^-1 C^T``: the density of the orthonormalised orbitals spanned by ``C``."""
    metric = coefficients.T @ overlap @ coefficients
    return coefficients @ jnp.linalg.solve(metric, coefficients.T)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["integrals"],
    meta_fields=["method", "n_alpha", "n_beta"],
)
@dataclasses.dataclass(frozen=True)
class EnergyFunction:
    """The Hartree-Fock energy of one molecule in one basis (see ``make_energy_fn``).

    Attributes:
        integrals: the molecule's ``Integrals``.
        method: ``"rhf"`` or ``"uhf"``.
        n_alpha: number of alpha (for RHF: doubly occupied) orbitals.
        n_beta: number of beta orbitals (equal to ``n_alpha`` for RHF).
    """

    integrals: Integrals
    method: str
    n_alpha: int
    n_beta: int

    def __call__(self, coefficients: jax.Array | tuple[jax.Array, jax.Array]) -> jax.Array:
        """Energy of occupied orbital coefficients.

        Args:
            coefficients: RHF: ``(n, n_alpha)``; UHF: a pair ``(C_alpha, C_beta)`` of shapes
                ``(n, n_alpha)`` and ``(n, n_beta)``. Any full-rank columns: they need not be
                orthonormal.

        Returns:
            The total energy in Hartree.
        """
        overlap = self.integrals.overlap
        if self.method == "rhf":
            self._check(coefficients, self.n_alpha, "coefficients")
            return self.from_density(2.0 * _projected_density(coefficients, overlap))
        if not isinstance(coefficients, tuple | list) or len(coefficients) != 2:
            raise ValueError("UHF coefficients must be a pair (C_alpha, C_beta)")
        alpha, beta = coefficients
        self._check(alpha, self.n_alpha, "coefficients[0]")
        self._check(beta, self.n_beta, "coefficients[1]")
        densities = jnp.stack(
            [_projected_density(alpha, overlap), _projected_density(beta, overlap)]
        )
        return self.from_density(densities)

    def from_density(self, density: jax.Array) -> jax.Array:
        """The energy functional of a density matrix (RHF: total ``(n, n)``; UHF ``(2, n, n)``).

        It equals the Hartree-Fock energy for an idempotent density with the right electron
        count; for other densities it is the same formula evaluated as given.
        """
        energy = rhf_energy if self.method == "rhf" else uhf_energy
        return energy(density, self.integrals)

    def core_guess(self) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Occupied orbitals of the core Hamiltonian: a starting point for minimisation."""
        orthogonaliser = orthogonalizer(self.integrals.overlap)
        _, rotated = jnp.linalg.eigh(
            orthogonaliser.T @ self.integrals.core_hamiltonian @ orthogonaliser
        )
        orbitals = orthogonaliser @ rotated
        if self.method == "rhf":
            return orbitals[:, : self.n_alpha]
        return orbitals[:, : self.n_alpha], orbitals[:, : self.n_beta]

    def _check(self, coefficients: jax.Array, n_occupied: int, name: str) -> None:
        expected = (self.integrals.overlap.shape[0], n_occupied)
        if jnp.shape(coefficients) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {jnp.shape(coefficients)}")


def make_energy_fn(
    molecule: Molecule,
    basis: str | BasisSet = "sto-3g",
    *,
    method: str | None = None,
    cartesian: bool = False,
) -> EnergyFunction:
    """The Hartree-Fock energy of ``molecule`` as a plain function of orbitals or densities.

    Args:
        molecule: the molecule (fixed geometry).
        basis: a basis-set name or a ``BasisSet``.
        method: ``"rhf"``, ``"uhf"`` or ``None`` (from the multiplicity).
        cartesian: cartesian d functions when ``basis`` is a name.

    Returns:
        An ``EnergyFunction``; differentiate it with ``jax.grad``.

    Example:
        >>> import jax
        >>> from opifex.quantum._geometries import molecule_from_name
        >>> with jax.enable_x64(True):
        ...     energy_fn = make_energy_fn(molecule_from_name("H2"))
        ...     c = energy_fn.core_guess()
        ...     print(round(float(energy_fn(c)), 6), jax.grad(energy_fn)(c).shape)
        -1.116759 (2, 1)
    """
    require_x64("make_energy_fn")
    method = resolve_method(molecule, method)
    integrals = molecular_integrals(molecule, basis, cartesian=cartesian)
    if method == "rhf":
        return EnergyFunction(
            integrals, method, molecule.n_electrons // 2, molecule.n_electrons // 2
        )
    return EnergyFunction(integrals, method, molecule.n_alpha, molecule.n_beta)
