"""make_energy_fn: the energy of orbitals/densities, its gradient, and direct minimisation.

The reference is our own converged SCF (``run_scf``, itself checked against PySCF in
test_quantum_scf.py). Direct minimisation with optax's L-BFGS from the core-Hamiltonian
orbitals reaches the SCF energy to about 1e-13 Eh in 50 steps (RHF H2O and UHF OH in STO-3G);
the tests assert 1e-9 Eh.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.quantum import EnergyFunction, make_energy_fn, molecule_from_name, run_scf
from opifex.quantum._scf_config import SCFConfig

_TIGHT = SCFConfig(conv_tol=1e-12, conv_tol_grad=1e-8)
_MINIMISATION_STEPS = 50


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


def _reference(name):
    """The converged SCF, the energy function, and the SCF's occupied orbitals."""
    with jax.enable_x64(True):
        molecule = molecule_from_name(name)
        result = run_scf(molecule, "sto-3g", config=_TIGHT, guess="core")
        assert bool(result.converged)
        energy_fn = make_energy_fn(molecule, "sto-3g")
        if energy_fn.method == "rhf":
            occupied = result.aux.coefficients[:, : energy_fn.n_alpha]
        else:
            occupied = (
                result.aux.coefficients[0][:, : energy_fn.n_alpha],
                result.aux.coefficients[1][:, : energy_fn.n_beta],
            )
    return result, energy_fn, occupied


@pytest.fixture(scope="module")
def water():
    return _reference("H2O")


@pytest.fixture(scope="module")
def hydroxyl():
    return _reference("OH")


@jax.jit
def _lbfgs(energy_fn: EnergyFunction, start):
    """``_MINIMISATION_STEPS`` steps of optax L-BFGS (zoom line search) in a ``fori_loop``."""
    optimiser = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(energy_fn)

    def step(_, carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = optimiser.update(
            grad, state, params, value=value, grad=grad, value_fn=energy_fn
        )
        return optax.apply_updates(params, updates), state

    params, _ = jax.lax.fori_loop(0, _MINIMISATION_STEPS, step, (start, optimiser.init(start)))
    return params, energy_fn(params)


@pytest.mark.e2e
def test_energy_of_scf_orbitals_and_density_is_the_scf_energy(water):
    result, energy_fn, occupied = water
    assert (energy_fn.method, energy_fn.n_alpha, energy_fn.n_beta) == ("rhf", 5, 5)
    assert float(energy_fn(occupied)) == pytest.approx(float(result.value), abs=1e-10)
    assert float(energy_fn.from_density(result.params)) == pytest.approx(
        float(result.value), abs=1e-10
    )


@pytest.mark.e2e
def test_energy_is_invariant_to_mixing_occupied_orbitals(water):
    result, energy_fn, occupied = water
    mixing = np.random.default_rng(0).normal(size=(5, 5)) + 3.0 * np.eye(5)
    assert float(energy_fn(occupied @ mixing)) == pytest.approx(float(result.value), abs=1e-10)


def test_gradient_matches_finite_differences_and_vanishes_at_the_scf_solution(water):
    _, energy_fn, occupied = water
    rng = np.random.default_rng(1)
    point = occupied + 0.05 * rng.normal(size=occupied.shape)
    gradient = jax.jit(jax.grad(energy_fn))
    g = np.asarray(gradient(point))
    h = 1e-5
    for _ in range(3):
        direction = rng.normal(size=occupied.shape)
        fd = (energy_fn(point + h * direction) - energy_fn(point - h * direction)) / (2 * h)
        assert float(fd) == pytest.approx(float(np.sum(g * direction)), abs=1e-7)
    # Mixing the occupied orbitals does not change the energy: no gradient along C @ A.
    assert abs(float(np.sum(g * (point @ rng.normal(size=(5, 5)))))) < 1e-9
    assert float(jnp.linalg.norm(gradient(occupied))) < 1e-7  # stationary at the SCF solution


@pytest.mark.slow
def test_direct_minimisation_with_optax_lbfgs_reaches_the_rhf_energy(water):
    result, energy_fn, _ = water
    start = energy_fn.core_guess()
    assert float(energy_fn(start)) > float(result.value) + 1.0  # a real optimisation
    params, energy = _lbfgs(energy_fn, start)
    assert float(energy) == pytest.approx(float(result.value), abs=1e-9)
    density = (
        2.0 * params @ jnp.linalg.solve(params.T @ energy_fn.integrals.overlap @ params, params.T)
    )
    np.testing.assert_allclose(density, result.params, atol=1e-5)


@pytest.mark.e2e
def test_uhf_energy_and_direct_minimisation(hydroxyl):
    result, energy_fn, occupied = hydroxyl
    assert (energy_fn.method, energy_fn.n_alpha, energy_fn.n_beta) == ("uhf", 5, 4)
    assert float(energy_fn(occupied)) == pytest.approx(float(result.value), abs=1e-10)
    assert float(energy_fn.from_density(result.params)) == pytest.approx(
        float(result.value), abs=1e-10
    )
    mixed = (occupied[0] @ (np.eye(5) + 0.3), occupied[1] @ (2.0 * np.eye(4)))
    assert float(energy_fn(mixed)) == pytest.approx(float(result.value), abs=1e-10)
    start = energy_fn.core_guess()
    assert float(energy_fn(start)) > float(result.value) + 0.5
    _, energy = _lbfgs(energy_fn, start)
    assert float(energy) == pytest.approx(float(result.value), abs=1e-9)


def test_wrong_coefficient_shapes_are_rejected(water):
    _, energy_fn, occupied = water
    with pytest.raises(ValueError, match=r"coefficients must have shape \(7, 5\), got \(7, 4\)"):
        energy_fn(occupied[:, :4])
    with pytest.raises(ValueError, match="shape"):
        energy_fn(occupied.T)
    uhf = dataclasses.replace(energy_fn, method="uhf", n_alpha=5, n_beta=4)  # shapes only
    with pytest.raises(ValueError, match=r"coefficients\[1\] must have shape \(7, 4\)"):
        uhf((occupied, occupied))
    with pytest.raises(ValueError, match=r"coefficients\[0\] must have shape \(7, 5\)"):
        uhf((occupied[:, :4], occupied[:, :4]))


def test_needs_float64():
    molecule = molecule_from_name("H2")
    jax.config.update("jax_enable_x64", False)
    with pytest.raises(RuntimeError, match="64-bit"):
        make_energy_fn(molecule, "sto-3g")
