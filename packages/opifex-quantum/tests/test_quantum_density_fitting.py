"""Density fitting (RI-JK) against PySCF's density-fitted integrals, energies and gradients.

PySCF gets the same orbital and auxiliary basis data (``to_pyscf`` and ``pyscf_basis``), so
the fitted quantities must agree to rounding: PySCF inverts the metric by Cholesky as we do.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.quantum import (
    DensityFittedERI,
    build_basis,
    molecule_from_name,
    nuclear_gradient,
    run_scf,
)
from opifex.quantum import _density_fitting as df_module
from opifex.quantum._df_plan import auxiliary_classes, metric_plan, three_centre_plan
from opifex.quantum._eri_plan import pair_layout
from opifex.quantum._integrals import compute_integrals, eri_memory_mb
from opifex.quantum._pyscf import pyscf_basis, to_pyscf
from opifex.quantum._shell_pairs import shell_pairs

AUX = "def2-universal-jkfit"


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _pyscf_df(molecule, basis, method="rhf"):
    from pyscf import scf

    mol = to_pyscf(molecule, basis)
    mf = (scf.RHF if method == "rhf" else scf.UHF)(mol).density_fit(
        auxbasis=pyscf_basis(molecule.atomic_numbers, AUX)
    )
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert mf.converged
    return mf


def test_auxiliary_classes_hold_every_auxiliary_function_once():
    aux = build_basis(molecule_from_name("H2O").atomic_numbers, AUX)
    functions = np.concatenate([c.func_a.ravel() for c in auxiliary_classes(aux)])
    assert sorted(functions.tolist()) == list(range(aux.n_functions))
    assert all((c.exp_b == 0).all() and c.l_b == 0 for c in auxiliary_classes(aux))


def test_the_plans_cover_every_combination_and_screening_drops_only_small_ones():
    molecule = molecule_from_name("H2O")
    basis = build_basis(molecule.atomic_numbers, "6-31g")
    aux = build_basis(molecule.atomic_numbers, AUX)
    n_pairs = sum(c.n_pairs for c in shell_pairs(basis)[0])
    n_aux_shells = len(aux.shells)
    assert sum(q.n_quartets for q in three_centre_plan(basis, aux)) == n_pairs * n_aux_shells
    assert sum(q.n_quartets for q in metric_plan(aux)) == n_aux_shells * (n_aux_shells + 1) // 2
    pair_bound = np.geomspace(1e-9, 1.0, n_pairs)
    aux_bound = np.geomspace(1e-9, 1.0, n_aux_shells)
    screened = three_centre_plan(basis, aux, pair_bound, aux_bound, 1e-10)
    kept = sum(q.n_quartets for q in screened)
    expected = int((np.outer(pair_bound, aux_bound) >= 1e-10).sum())
    assert kept == expected < n_pairs * n_aux_shells


@pytest.mark.slow
@pytest.mark.parametrize("chunk_elements", [2**22, 7 * 16])  # one chunk; several, a partial one
def test_fitted_coulomb_and_exchange_equal_the_fitted_tensor(monkeypatch, chunk_elements):
    monkeypatch.setattr(df_module, "_CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(0)
    basis = build_basis([1, 1], "6-31g")  # 4 functions, 10 extended pairs
    layout = pair_layout(basis)
    n, n_aux = layout.n_functions, 17
    packed = rng.normal(size=(n_aux, layout.n_ext))
    factor = packed[:, layout.index]  # (n_aux, n, n), symmetric
    eri = DensityFittedERI(jnp.asarray(packed), basis, basis)
    density = rng.normal(size=(n, n))
    dense = np.einsum("pij,pkl->ijkl", factor, factor)
    symmetric = 0.5 * (density + density.T)
    np.testing.assert_allclose(
        eri.coulomb_matrix(density), np.einsum("ijkl,kl->ij", dense, symmetric), atol=1e-12
    )
    np.testing.assert_allclose(
        eri.exchange_matrix(density), np.einsum("ikjl,kl->ij", dense, symmetric), atol=1e-12
    )
    stacked = np.stack([density, density.T])
    np.testing.assert_allclose(
        jax.vmap(eri.exchange_matrix)(stacked), eri.exchange_matrix(stacked), atol=1e-12
    )


def test_bad_auxiliary_arguments_are_errors():
    molecule = molecule_from_name("H2O")
    basis = build_basis(molecule.atomic_numbers, "sto-3g")
    aux = build_basis(molecule.atomic_numbers, AUX)
    xyz, charges = jnp.asarray(molecule.coordinates), jnp.asarray(molecule.nuclear_charges)
    with pytest.raises(ValueError, match="needs an auxbasis"):
        compute_integrals(basis, xyz, charges, eri_layout="density_fitted")
    with pytest.raises(ValueError, match="only used by"):
        compute_integrals(basis, xyz, charges, eri_layout="dense", auxbasis=aux)
    with pytest.raises(ValueError, match="placed on atoms"):
        compute_integrals(basis, xyz, charges, auxbasis=build_basis([8, 1], AUX))
    with pytest.raises(ValueError, match="cartesian"):
        compute_integrals(basis, xyz, charges, auxbasis=build_basis([8, 1, 1], AUX, cartesian=True))
    with pytest.raises(TypeError, match="auxbasis"):
        run_scf(molecule, "sto-3g", auxbasis=3)
    with pytest.raises(ValueError, match="unknown basis set"):
        run_scf(molecule, "sto-3g", auxbasis="no-such-fit")


@pytest.fixture(scope="module")
def water_631g():
    with jax.enable_x64(True):
        molecule = molecule_from_name("H2O")
        basis = build_basis(molecule.atomic_numbers, "6-31g")
        aux = build_basis(molecule.atomic_numbers, AUX)
        xyz, charges = jnp.asarray(molecule.coordinates), jnp.asarray(molecule.nuclear_charges)
        fitted = compute_integrals(basis, xyz, charges, auxbasis=aux)
        unscreened = compute_integrals(basis, xyz, charges, auxbasis=aux, screening=0.0)
    return molecule, fitted, unscreened


@pytest.mark.e2e
def test_fitted_integrals_equal_pyscfs(water_631g):
    from pyscf import df

    molecule, fitted, unscreened = water_631g
    mol = to_pyscf(molecule, "6-31g")
    auxmol = df.addons.make_auxmol(mol, pyscf_basis(molecule.atomic_numbers, AUX))
    three = df.incore.aux_e2(mol, auxmol, intor="int3c2e", aosym="s1")
    metric = auxmol.intor("int2c2e")
    reference = np.einsum("ijp,pq,klq->ijkl", three, np.linalg.inv(metric), three)
    np.testing.assert_allclose(fitted.eri.dense(), reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fitted.eri.factor, unscreened.eri.factor, rtol=0, atol=1e-13)


@pytest.mark.e2e
def test_density_fitted_rhf_energy_and_gradient_equal_pyscfs():
    molecule = molecule_from_name("H2O")
    mf = _pyscf_df(molecule, "6-31g")
    result = run_scf(molecule, "6-31g", auxbasis=AUX)
    assert bool(result.converged)
    assert abs(float(result.value) - mf.e_tot) < 1e-8
    assert int(result.num_steps) <= mf.cycles
    gradient = nuclear_gradient(molecule, "6-31g", auxbasis=AUX)
    np.testing.assert_allclose(gradient, mf.nuc_grad_method().kernel(), rtol=0, atol=1e-6)


@pytest.mark.e2e
def test_density_fitted_uhf_energy_equals_pyscfs():
    molecule = molecule_from_name("OH")
    mf = _pyscf_df(molecule, "sto-3g", method="uhf")
    result = run_scf(molecule, "sto-3g", auxbasis=AUX)
    assert bool(result.converged)
    assert abs(float(result.value) - mf.e_tot) < 1e-8


def test_the_memory_budget_refuses_integrals_that_do_not_fit_before_computing_them():
    molecule = molecule_from_name("H2O")
    basis = build_basis(molecule.atomic_numbers, "6-31g")
    aux = build_basis(molecule.atomic_numbers, AUX)
    n, n_aux = basis.n_functions, aux.n_functions
    assert eri_memory_mb(basis, "dense") == 8 * n**4 / 1e6
    n_ext = pair_layout(basis).n_ext
    assert eri_memory_mb(basis, "supermatrix") == 16 * n_ext**2 / 1e6
    assert eri_memory_mb(basis, "coulomb_supermatrix") == 8 * n_ext**2 / 1e6
    assert eri_memory_mb(basis, "density_fitted", aux) == 16 * n_aux * n_ext / 1e6
    xyz, charges = jnp.asarray(molecule.coordinates), jnp.asarray(molecule.nuclear_charges)
    # asked for by name, a layout over the budget is refused ("auto" would go direct)
    for layout in ("dense", "supermatrix", "coulomb_supermatrix"):
        with pytest.raises(MemoryError, match="direct"):
            compute_integrals(basis, xyz, charges, eri_layout=layout, max_memory=0.01)
    assert eri_memory_mb(basis, "direct") == 0.0
    with pytest.raises(MemoryError, match="raise max_memory"):
        run_scf(molecule, "6-31g", auxbasis=AUX, max_memory=0.1)
    with pytest.raises(ValueError, match="max_memory"):
        compute_integrals(basis, xyz, charges, max_memory=0)


def test_exchange_from_occupied_orbitals_equals_exchange_from_their_density():
    rng = np.random.default_rng(1)
    basis = build_basis([1, 1], "6-31g")
    layout = pair_layout(basis)
    eri = DensityFittedERI(jnp.asarray(rng.normal(size=(11, layout.n_ext))), basis, basis)
    orbitals = rng.normal(size=(layout.n_functions, 2))
    density = orbitals @ orbitals.T
    np.testing.assert_allclose(
        eri.exchange_matrix(density, orbitals), eri.exchange_matrix(density), atol=1e-12
    )
    spin_orbitals = np.stack([orbitals, np.c_[orbitals[:, :1], np.zeros(4)]])
    spin_densities = np.einsum("sik,sjk->sij", spin_orbitals, spin_orbitals)
    np.testing.assert_allclose(
        jax.vmap(eri.exchange_matrix)(spin_densities, spin_orbitals),
        jax.vmap(eri.exchange_matrix)(spin_densities),
        atol=1e-12,
    )
