"""Direct SCF (``DirectERI``) and the Coulomb-only supermatrix: the layouts below a budget.

References: the dense tensor's ``einsum`` J and K (the dense tensor itself is checked against
PySCF in ``test_quantum_integrals``) and the stored supermatrices' SCF energies and gradients.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.quantum import (
    SCFConfig,
    _eri_plan,
    build_basis,
    molecule_from_name,
    nuclear_gradient,
    run_rhf,
    run_scf,
    run_uhf,
)
from opifex.quantum._direct import DENSITY_SCREENING, DirectERI, _negligible_blocks
from opifex.quantum._eri_engine import QuartetArrays
from opifex.quantum._eri_supermatrix import ERISupermatrix
from opifex.quantum._integrals import compute_integrals, eri_memory_mb

TIGHT = SCFConfig(conv_tol=1e-12, conv_tol_grad=1e-9)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _integrals(name, basis_name, layout, cartesian=False):
    molecule = molecule_from_name(name)
    basis = build_basis(molecule.atomic_numbers, basis_name, cartesian=cartesian)
    xyz = jnp.asarray(molecule.coordinates)
    return molecule, compute_integrals(
        basis, xyz, jnp.asarray(molecule.nuclear_charges), eri_layout=layout
    )


@pytest.mark.e2e
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_direct_coulomb_and_exchange_equal_the_dense_tensors(cartesian):
    _, dense = _integrals("H2O", "6-31g*", "dense", cartesian)  # s, p and d shells
    _, direct = _integrals("H2O", "6-31g*", "direct", cartesian)
    assert isinstance(direct.eri, DirectERI)
    n = dense.overlap.shape[0]
    density = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)))  # not symmetric
    symmetric = 0.5 * (density + density.T)
    coulomb, exchange = direct.eri.coulomb_exchange(density)
    np.testing.assert_allclose(
        coulomb, jnp.einsum("ijkl,kl->ij", dense.eri, symmetric), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        exchange, jnp.einsum("ikjl,kl->ij", dense.eri, symmetric), rtol=0, atol=1e-12
    )


@pytest.mark.e2e
def test_direct_rhf_and_uhf_reach_the_stored_energies_in_the_same_cycles():
    molecule, stored = _integrals("NH3", "6-31g", "supermatrix")
    _, direct = _integrals("NH3", "6-31g", "direct")
    n = molecule.n_electrons
    for run in (lambda ints: run_rhf(ints, n), lambda ints: run_uhf(ints, n // 2 + 1, n // 2 - 1)):
        ours, reference = run(direct), run(stored)
        assert bool(ours.converged)
        assert abs(float(ours.value) - float(reference.value)) < 1e-10
        assert int(ours.num_steps) == int(reference.num_steps)


@pytest.mark.e2e
def test_auto_takes_the_first_layout_that_fits_the_budget():
    water = molecule_from_name("H2O")
    basis = build_basis(water.atomic_numbers, "6-31g*")  # 18 functions: dense below 48
    xyz, charges = jnp.asarray(water.coordinates), jnp.asarray(water.nuclear_charges)
    expected = {
        eri_memory_mb(basis, "dense"): np.ndarray,
        eri_memory_mb(basis, "coulomb_supermatrix"): ERISupermatrix,
        0.01: DirectERI,
    }
    for budget, kind in expected.items():
        eri = compute_integrals(basis, xyz, charges, max_memory=budget).eri
        assert isinstance(np.asarray(eri) if kind is np.ndarray else eri, kind), budget
    coulomb_only = compute_integrals(basis, xyz, charges, max_memory=0.3).eri
    assert coulomb_only.exchange is None


@pytest.mark.e2e
def test_smaller_budgets_reach_the_same_energies_and_forces():
    # 6-31G (s and p shells): the direct gradient program of 6-31G* takes minutes to compile;
    # d shells under direct are checked against the dense tensor above
    water = molecule_from_name("H2O")
    coulomb_only = eri_memory_mb(build_basis(water.atomic_numbers, "6-31g"), "coulomb_supermatrix")
    # cycles compared at the default tolerances (at TIGHT's 1e-12 Eh, near the energy's
    # rounding, the last cycle can fall either side between layouts)
    stored = run_scf(water, "6-31g")
    reference = nuclear_gradient(water, "6-31g", config=TIGHT)
    for budget in (coulomb_only, 0.01):  # the Coulomb supermatrix alone, then direct
        result = run_scf(water, "6-31g", max_memory=budget)
        assert bool(result.converged)
        assert abs(float(result.value) - float(stored.value)) < 1e-9
        assert int(result.num_steps) == int(stored.num_steps)
        gradient = nuclear_gradient(water, "6-31g", config=TIGHT, max_memory=budget)
        np.testing.assert_allclose(gradient, reference, rtol=0, atol=1e-9)
    moved = dataclasses.replace(water, coordinates=np.asarray(water.coordinates) * 1.02)
    step = run_scf(moved, "6-31g", max_memory=0.01)
    assert float(step.value) != pytest.approx(float(stored.value), abs=1e-6)


@pytest.mark.e2e
def test_density_screening_skips_the_blocks_a_small_density_change_cannot_reach(monkeypatch):
    monkeypatch.setattr(_eri_plan, "_BLOCK_ELEMENTS", 1)  # small blocks: many to skip or not
    _, direct = _integrals("H2O", "6-31g", "direct")
    eri = direct.eri
    n = eri.n_functions
    rng = np.random.default_rng(2)
    change = rng.normal(size=(n, n))
    # small enough that the bounds of some blocks (not all: water is compact) fall below the
    # threshold; in larger molecules, with pairs of distant shells, larger changes do too
    change = 1e-13 * (change + change.T)
    screened = eri.screened()
    skip = _negligible_blocks(eri.basis, eri.pair_bound, change, DENSITY_SCREENING)
    quartets, _ = eri.plan
    decisions = [
        bool(skip(key, QuartetArrays(*(np.asarray(a)[k] for a in arrays[:2]), arrays.count[k])))
        for key, arrays in zip(eri.keys, quartets, strict=True)
        for k in range(arrays.count.shape[0])
        if int(arrays.count[k]) > 0
    ]
    assert 0 < sum(decisions) < len(decisions)  # some blocks skipped, not all
    both = zip(screened.coulomb_exchange(change), eri.coulomb_exchange(change), strict=True)
    for ours, full in both:  # what the skipped blocks add: under twice the threshold per block
        assert 0 < float(jnp.abs(ours - full).max()) < 2 * len(decisions) * DENSITY_SCREENING
    with pytest.raises(ValueError, match="Schwarz bounds"):
        dataclasses.replace(eri, pair_bound=None).screened()
