"""The SAD guess: spherically averaged atomic densities vs PySCF's atomic HF, and the H2O guess.

Each (element, basis) compiles its own atomic integrals (several seconds), so the fast tests
use STO-3G H and O only; 6-31G and more elements are marked slow.
"""

import functools
import json
from importlib import resources

import jax
import numpy as np
import pytest

from opifex.quantum import (
    _guess,
    atomic_density,
    build_basis,
    compute_integrals,
    element_symbol,
    molecule_from_name,
    rhf_energy,
    run_scf,
    superposition_of_atomic_densities,
)
from opifex.quantum._scf_config import SCFConfig

_SLOW = pytest.mark.slow
_E2E = pytest.mark.e2e  # the exhaustive sweep: every element and basis
ATOMS = [
    pytest.param(1, "sto-3g", id="H-sto-3g"),
    pytest.param(8, "sto-3g", id="O-sto-3g", marks=_E2E),
    pytest.param(6, "sto-3g", id="C-sto-3g", marks=_E2E),
    pytest.param(7, "sto-3g", id="N-sto-3g", marks=_E2E),
    pytest.param(10, "sto-3g", id="Ne-sto-3g", marks=_E2E),
    pytest.param(17, "sto-3g", id="Cl-sto-3g", marks=_E2E),
    *[
        pytest.param(z, "6-31g", id=f"{element_symbol(z)}-6-31g", marks=_E2E)
        for z in (1, 6, 7, 8, 10, 17)
    ],
]


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


@functools.cache
def _atom_integrals(z, name):
    return compute_integrals(build_basis((z,), name), np.zeros((1, 3)), np.array([float(z)]))


@functools.cache
def _pyscf_atomic_hf(z, name):
    """PySCF's spherically averaged atomic RHF (fractional occupations), on our basis data."""
    gto = pytest.importorskip("pyscf.gto")
    atom_hf = pytest.importorskip("pyscf.scf.atom_hf")
    file = {"sto-3g": "sto-3g.json", "6-31g": "6-31g.json"}[name]
    text = resources.files("opifex.quantum").joinpath("basis_data", file).read_text()
    shells = json.loads(text)["elements"][str(z)]
    symbol = element_symbol(z)
    basis = {symbol: [[m, *map(list, zip(a, c, strict=True))] for m, a, c in shells]}
    mol = gto.M(atom=f"{symbol} 0 0 0", basis=basis, spin=z % 2, verbose=0)
    energy, _, coefficients, occupations = atom_hf.get_atm_nrhf(mol)[symbol]
    return energy, (coefficients * occupations) @ coefficients.T


@pytest.mark.slow
@pytest.mark.parametrize(("z", "name"), ATOMS)
def test_atomic_density_holds_z_electrons(z, name):
    density = atomic_density(z, name, False)
    overlap = np.asarray(_atom_integrals(z, name).overlap)
    np.testing.assert_allclose(np.trace(density @ overlap), z, atol=1e-10)
    np.testing.assert_allclose(density, density.T, atol=1e-14)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PySCF's atom_hf
@pytest.mark.parametrize(("z", "name"), [a for a in ATOMS if a.values[0] > 1])
def test_atomic_density_equals_pyscf_spherically_averaged_hf(z, name):
    expected_energy, expected_density = _pyscf_atomic_hf(z, name)
    density = atomic_density(z, name, False)
    energy = float(rhf_energy(density, _atom_integrals(z, name)))
    assert energy == pytest.approx(expected_energy, abs=1e-9)
    np.testing.assert_allclose(density, expected_density, atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PySCF's atom_hf
@_SLOW
@pytest.mark.parametrize("name", ["sto-3g", pytest.param("6-31g", marks=pytest.mark.e2e)])
def test_hydrogen_is_a_one_electron_atom(name):
    """H has no self-repulsion: its density is the lowest core-Hamiltonian orbital, as in PySCF."""
    density = atomic_density(1, name, False)
    ints = _atom_integrals(1, name)
    overlap, core = np.asarray(ints.overlap), np.asarray(ints.kinetic + ints.nuclear)
    values, vectors = np.linalg.eigh(overlap)
    x = vectors / np.sqrt(values)
    lowest = x @ np.linalg.eigh(x.T @ core @ x)[1][:, 0]
    np.testing.assert_allclose(density, np.outer(lowest, lowest), atol=1e-10)
    expected_energy, expected_density = _pyscf_atomic_hf(1, name)
    np.testing.assert_allclose(density, expected_density, atol=1e-6)
    assert float(lowest @ core @ lowest) == pytest.approx(expected_energy, abs=1e-9)


@pytest.mark.parametrize(
    ("z", "name"),
    [
        pytest.param(8, "sto-3g", id="O-sto-3g", marks=_E2E),
        pytest.param(6, "sto-3g", id="C-sto-3g", marks=_E2E),
        pytest.param(6, "6-31g", id="C-6-31g", marks=_E2E),
    ],
)
def test_open_p_shell_density_is_spherical(z, name):
    """C (2p^2) and O (2p^4) share their 2p electrons equally among x, y and z."""
    basis = build_basis((z,), name)
    density = atomic_density(z, name, False)
    functions_l = np.concatenate([np.full(2 * shell.l + 1, shell.l) for shell in basis.shells])
    s, p = np.flatnonzero(functions_l == 0), np.flatnonzero(functions_l == 1)
    assert p.size == 3 * (len(basis.shells) - s.size)
    np.testing.assert_allclose(density[np.ix_(s, p)], 0.0, atol=1e-10)  # no s-p coupling
    for first in p[::3]:  # each p shell: x, y, z
        block = density[first : first + 3, first : first + 3]
        np.testing.assert_allclose(np.diag(block), block[0, 0], atol=1e-10)
        np.testing.assert_allclose(block - np.diag(np.diag(block)), 0.0, atol=1e-10)
    overlap = np.asarray(_atom_integrals(z, name).overlap)
    p_electrons = np.trace(density[np.ix_(p, p)] @ overlap[np.ix_(p, p)])
    np.testing.assert_allclose(p_electrons, z - 4, atol=1e-8)  # all but 1s^2 2s^2


@pytest.mark.e2e  # 14 s cold: compiles SAD atoms and a whole SCF
def test_sad_guess_for_water_is_block_diagonal():
    basis = build_basis((8, 1, 1), "sto-3g")
    guess = superposition_of_atomic_densities(basis)
    oxygen, hydrogen = atomic_density(8, "sto-3g", False), atomic_density(1, "sto-3g", False)
    expected = np.zeros((7, 7))
    expected[:5, :5], expected[5:6, 5:6], expected[6:, 6:] = oxygen, hydrogen, hydrogen
    np.testing.assert_array_equal(guess, expected)
    np.testing.assert_array_equal(basis.function_atoms, [0, 0, 0, 0, 0, 1, 2])
    assert np.trace(oxygen @ np.asarray(_atom_integrals(8, "sto-3g").overlap)) == pytest.approx(8)


@_SLOW
@pytest.mark.e2e  # 9 s cold per molecule: two whole SCFs
@pytest.mark.parametrize("name", ["H2O", "OH"])
def test_sad_and_core_guesses_reach_the_same_energy(name):
    molecule = molecule_from_name(name)
    config = SCFConfig(conv_tol=1e-11)
    sad = run_scf(molecule, "sto-3g", guess="sad", config=config)
    core = run_scf(molecule, "sto-3g", guess="core", config=config)
    assert bool(sad.converged) and bool(core.converged)
    assert float(sad.value) == pytest.approx(float(core.value), abs=1e-9)
    assert int(sad.num_steps) <= int(core.num_steps)


@pytest.mark.e2e
def test_unconverged_atomic_scf_raises(monkeypatch):
    monkeypatch.setattr(_guess, "_MAX_ITERATIONS", 1)
    # __wrapped__ bypasses the functools.cache of converged densities
    with pytest.raises(RuntimeError, match=r"Z=8 in sto-3g did not converge"):
        atomic_density.__wrapped__(8, "sto-3g", False)
