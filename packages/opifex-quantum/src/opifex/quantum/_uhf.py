"""Unrestricted Hartree-Fock: energy, Fock matrices and the SCF for open shells."""

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


def uhf_fock(
    densities: jax.Array, integrals: Integrals, orbitals: jax.Array | None = None
) -> jax.Array:
    """UHF Fock matrices ``F_s = h + J[D_a + D_b] - K[D_s]`` of ``(2, n, n)`` alpha/beta densities.

    ``orbitals``: optional ``(2, n, k)`` with ``D_s = C_s C_s^T`` (see ``exchange_matrix``).

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> [round(x, 6) for x in uhf_fock(jnp.stack([one, 0 * one]), ints).ravel().tolist()]
        [-0.5, 0.1]
    """
    if orbitals is None:
        both = jax.vmap(coulomb_and_exchange, in_axes=(0, None))(densities, integrals.eri)
    else:
        both = jax.vmap(coulomb_and_exchange, in_axes=(0, None, 0))(
            densities, integrals.eri, orbitals
        )
    coulomb, exchange = both  # J is linear: J[D_a + D_b] = J[D_a] + J[D_b]
    return integrals.core_hamiltonian + coulomb.sum(0) - exchange


def uhf_energy_components(densities: jax.Array, integrals: Integrals) -> EnergyComponents:
    """The parts of the UHF energy of ``(2, n, n)`` alpha and beta densities.

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> parts = uhf_energy_components(jnp.stack([one, 0 * one]), ints)
        >>> round(float(parts.coulomb), 6), round(float(parts.exchange), 6)
        (0.3, -0.3)
    """
    coulomb, exchange = jax.vmap(coulomb_and_exchange, in_axes=(0, None))(densities, integrals.eri)
    energy = -0.5 * jnp.sum(densities * exchange)
    return EnergyComponents.of(densities[0] + densities[1], energy, integrals, coulomb.sum(0))


def uhf_energy(densities: jax.Array, integrals: Integrals) -> jax.Array:
    """Total UHF energy of ``(2, n, n)`` alpha and beta densities (differentiable).

    Its gradient with respect to ``densities`` is ``uhf_fock(densities, integrals)``.

    Example:
        >>> import jax.numpy as jnp
        >>> one = jnp.ones((1, 1))
        >>> ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), 0.0 * one[0, 0])
        >>> round(float(uhf_energy(jnp.stack([one, 0 * one]), ints)), 6)
        -0.5
    """
    return uhf_energy_components(densities, integrals).total


def run_uhf(
    integrals: Integrals,
    n_alpha: int,
    n_beta: int,
    config: SCFConfig = SCFConfig(),  # noqa: B008 - frozen, immutable default
    initial_density: jax.Array | None = None,
) -> SolveResult:
    """Unrestricted Hartree-Fock SCF with ``n_alpha`` alpha and ``n_beta`` beta electrons.

    Same solver, jit, vmap and implicit-derivative behaviour as ``run_rhf``; the convergence
    residual joins the alpha and beta orbital gradients.

    Args:
        integrals: the ``Integrals`` of the basis (float64).
        n_alpha: alpha electrons, a Python int >= 1 (static).
        n_beta: beta electrons, a Python int >= 0 (static).
        config: ``SCFConfig`` (static).
        initial_density: ``(2, n, n)`` alpha and beta densities, or a total ``(n, n)`` density
            split in equal halves; ``None`` occupies the core-Hamiltonian orbitals.

    Returns:
        A ``SolveResult`` as for ``run_rhf``, whose density (``params``) and orbital energies,
        coefficients and occupations (``aux``) have a leading alpha/beta axis of 2.

    Raises:
        RuntimeError: if 64-bit floats are disabled.
        TypeError: for non-int electron counts or wrongly typed ``integrals``/``config``.
        ValueError: for impossible electron counts or mismatched shapes.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     one = jnp.ones((1, 1))
        ...     ints = Integrals(one, 0.5 * one, -one, 0.6 * one.reshape(1, 1, 1, 1), jnp.zeros(()))
        ...     result = run_uhf(ints, 1, 0)
        >>> bool(result.converged), round(float(result.value), 6)
        (True, -0.5)
    """
    require_x64("run_uhf")
    n = check_scf_inputs(integrals, config, initial_density, n_spin=2)
    for name, count, minimum in (("n_alpha", n_alpha, 1), ("n_beta", n_beta, 0)):
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"{name} must be a Python int, got {type(count).__name__}")
        if not minimum <= count <= n:
            raise ValueError(f"{name} must be between {minimum} and {n} (basis size), got {count}")
    densities = None if initial_density is None else spin_densities(initial_density)
    return solve_scf(integrals, densities, uhf_model(n_alpha, n_beta), config)


def spin_densities(density: jax.Array) -> jax.Array:
    """``(2, n, n)`` alpha and beta densities; a total ``(n, n)`` one is split in equal halves.

    Example:
        >>> import jax.numpy as jnp
        >>> spin_densities(2.0 * jnp.eye(1)).tolist()
        [[[1.0]], [[1.0]]]
    """
    density = jnp.asarray(density)
    return jnp.stack([0.5 * density, 0.5 * density]) if density.ndim == 2 else density


def uhf_model(n_alpha: int, n_beta: int) -> SpinModel:
    """The UHF ``SpinModel`` of ``n_alpha`` alpha and ``n_beta`` beta electrons.

    Example:
        >>> uhf_model(5, 4).n_occupied, uhf_model(5, 4).occupation
        ((5, 4), 1.0)
    """
    return SpinModel((n_alpha, n_beta), 1.0, uhf_fock, uhf_energy_components)
