"""Basis sets: shipped data vs basis-set-exchange, sizes and shell order vs PySCF, normalisation.

PySCF is built from our own JSON data (its built-in STO-3G is rounded to fewer digits than
basis-set-exchange), so only the placement and counting of functions is compared with it.
More basis sets, f and g functions and heavier elements: ``test_quantum_basis_sets.py``.
"""

import functools
import importlib.util
import json
from importlib import resources
from pathlib import Path

import jax
import numpy as np
import pytest

from opifex.quantum import (
    build_basis,
    create_molecular_system,
    element_symbol,
    known_basis_sets,
    molecular_integrals,
    molecule_from_name,
)
from opifex.quantum._basis import basis_elements
from opifex.quantum._one_electron import one_electron_integrals

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "generate_basis_data.py"
_FILES = {
    "sto-3g": "sto-3g",
    "6-31g": "6-31g",
    "6-31g*": "6-31gstar",
    "6-31g**": "6-31gstarstar",
    "cc-pvdz": "cc-pvdz",
    "cc-pvtz": "cc-pvtz",
    "def2-svp": "def2-svp",
    "def2-tzvp": "def2-tzvp",
    "ano-rcc-mb": "ano-rcc-mb",
    "def2-universal-jkfit": "def2-universal-jkfit",
    "cc-pvtz-jkfit": "cc-pvtz-jkfit",
}
_MOLECULES = ("H2O", "CH4", "N2", "HeH+", "LiH")


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


def _shipped(name):
    path = resources.files("opifex.quantum").joinpath("basis_data", f"{_FILES[name]}.json")
    return json.loads(path.read_text())["elements"]


def _pyscf_molecule(molecule, name, cartesian):
    """A PySCF molecule with our geometry and the shells of our JSON file, in file order."""
    gto = pytest.importorskip("pyscf.gto")
    data = _shipped(name)
    basis = {
        element_symbol(z): [[m, *map(list, zip(a, c, strict=True))] for m, a, c in data[str(z)]]
        for z in set(molecule.atomic_numbers)
    }
    atoms = [
        (element_symbol(z), tuple(map(float, xyz)))
        for z, xyz in zip(molecule.atomic_numbers, np.asarray(molecule.coordinates), strict=True)
    ]
    spin = molecule.multiplicity - 1
    return gto.M(
        atom=atoms, basis=basis, unit="bohr", charge=molecule.charge, spin=spin, cart=cartesian,
        verbose=0,
    )  # fmt: skip


@functools.cache
def _script():
    pytest.importorskip("basis_set_exchange")
    spec = importlib.util.spec_from_file_location("generate_basis_data", _SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize("name", sorted(_FILES))
def test_shipped_data_equals_basis_set_exchange(name):
    bse = pytest.importorskip("basis_set_exchange")
    script = _script()
    assert set(script.BASIS_SETS) == set(_FILES)
    # every element H..Kr basis-set-exchange has for the set (none needs an ECP below Rb)
    data = bse.get_basis(script.BASIS_SETS[name], header=False)["elements"]
    covered = sorted(int(z) for z in data if int(z) <= 36)
    assert not any("ecp_potentials" in data[str(z)] for z in covered)
    assert list(basis_elements(name)) == covered == sorted(map(int, _shipped(name)))
    regenerated = {str(z): script._shells(data[str(z)]) for z in covered}
    assert regenerated == _shipped(name)  # exact: the same floats, shells and order
    assert script.regenerate(name)["elements"] == regenerated


def test_a_few_elements_against_basis_set_exchange_directly():
    bse = pytest.importorskip("basis_set_exchange")
    carbon = bse.get_basis("6-31G*", elements=[6], header=False)["elements"]["6"]
    ours = _shipped("6-31g*")["6"]
    # 6-31G* carbon: s, then two SP shells split into s + p, then one d.
    assert [shell[0] for shell in ours] == [0, 0, 1, 0, 1, 2]
    sp = carbon["electron_shells"][1]
    assert sp["angular_momentum"] == [0, 1]
    assert ours[1][1] == ours[2][1] == [float(a) for a in sp["exponents"]]
    assert ours[2][2] == [float(c) for c in sp["coefficients"][1]]
    hydrogen = bse.get_basis("STO-3G", elements=[1], header=False)["elements"]["1"]
    shell = hydrogen["electron_shells"][0]
    assert _shipped("sto-3g")["1"] == [
        [0, [float(a) for a in shell["exponents"]], [float(c) for c in shell["coefficients"][0]]]
    ]


def _every_element(name):
    """All the elements a basis set covers, one atom each, 3 Bohr apart on a line."""
    atoms = [(z, (0.0, 0.0, 3.0 * k)) for k, z in enumerate(basis_elements(name))]
    return create_molecular_system(atoms, unit="bohr")


@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
@pytest.mark.parametrize("name", sorted(_FILES))
def test_sizes_and_shell_order_match_pyscf(name, cartesian):
    covered = set(basis_elements(name))
    molecules = [molecule_from_name(m) for m in _MOLECULES]
    for molecule in [m for m in molecules if covered >= set(m.atomic_numbers)] + [
        _every_element(name)
    ]:
        molecule_name = "".join(molecule.symbols)
        basis = build_basis(molecule.atomic_numbers, name, cartesian=cartesian)
        mol = _pyscf_molecule(molecule, name, cartesian)
        assert basis.n_functions == mol.nao_nr(), (molecule_name, name)
        assert basis.n_cartesian == mol.nao_cart()
        if molecule.n_atoms <= 5:  # T is dense: 8321 x 6149 for every def2-universal-jkfit atom
            assert basis.cartesian_to_basis.shape == (basis.n_cartesian, basis.n_functions)
        # PySCF sorts each atom's shells by angular momentum; the JSON lists s, p, s, p, ...
        assert [(s.atom, s.l) for s in basis.shells] == [
            (mol.bas_atom(i), mol.bas_angular(i)) for i in range(mol.nbas)
        ]
        assert [(s.exponents, s.l) for s in basis.shells] == [
            (tuple(mol.bas_exp(i)), mol.bas_angular(i)) for i in range(mol.nbas)
        ]
        slices = mol.aoslice_by_atom()[:, 2:]
        ao_atoms = np.concatenate([np.full(b - a, atom) for atom, (a, b) in enumerate(slices)])
        np.testing.assert_array_equal(basis.function_atoms, ao_atoms)


def test_known_sizes_and_aliases():
    water = (8, 1, 1)
    assert build_basis(water, "STO-3G").n_functions == 7
    assert build_basis(water, "6-31g").n_functions == 13
    assert build_basis(water, "6-31G(d)").n_functions == 18
    assert build_basis(water, "6-31g*", cartesian=True).n_functions == 19
    assert build_basis(water, "6-31g**").n_functions == 24
    assert build_basis(["O", "H", "H"], "6-31g(d,p)").shells == build_basis(water, "6-31g**").shells
    assert set(known_basis_sets()) >= set(_FILES) | {"6-31g(d)", "6-31g(d,p)"}


_overlap = jax.jit(lambda basis, xyz, z: one_electron_integrals(basis, xyz, z)[0], static_argnums=0)


@functools.cache
def _carbon_overlap(cartesian):
    """Overlap of one carbon atom in 6-31G*: s, s, s, p, p, d (off the origin on purpose)."""
    basis = build_basis([6], "6-31g*", cartesian=cartesian)
    return np.asarray(_overlap(basis, np.array([[0.3, -0.2, 0.1]]), np.array([6.0])))


@pytest.mark.e2e
def test_overlap_diagonal_is_one_with_cartesian_d():
    overlap = _carbon_overlap(True)
    assert overlap.shape == (15, 15)
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-12)
    # unit-normalised xx and yy overlap by <x^2|y^2> / <x^4> = 1/3, for any exponents
    np.testing.assert_allclose(overlap[9, 12], 1.0 / 3.0, atol=1e-12)


@pytest.mark.e2e
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_molecular_overlap_diagonal_is_one(cartesian):
    water = molecule_from_name("H2O")
    overlap = np.asarray(molecular_integrals(water, "6-31g*", cartesian=cartesian).overlap)
    assert overlap.shape == ((19, 19) if cartesian else (18, 18))
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-12)


@pytest.mark.slow
def test_lone_d_shell_is_orthonormal_real_solid_harmonics():
    basis = build_basis([6], "6-31g*")
    assert [s.l for s in basis.shells] == [0, 0, 0, 1, 1, 2]
    overlap = _carbon_overlap(False)
    assert overlap.shape == (14, 14)
    np.testing.assert_allclose(overlap[9:, 9:], np.eye(5), atol=1e-12)
    np.testing.assert_allclose(overlap[:3, 9:], 0.0, atol=1e-12)  # traceless: orthogonal to s
    np.testing.assert_allclose(overlap[3:9, 9:], 0.0, atol=1e-12)  # even: orthogonal to p
    # The same five functions from the cartesian overlap: raw components are T_cart^-1 of it.
    raw = np.diag(1.0 / np.diag(build_basis([6], "6-31g*", cartesian=True).cartesian_to_basis))
    block = (raw @ basis.cartesian_to_basis[:, 9:])[-6:]
    cartesian = _carbon_overlap(True)[9:, 9:]
    np.testing.assert_allclose(block.T @ cartesian @ block, np.eye(5), atol=1e-12)
    # ... and they are xy, yz, z2, xz, x2-y2: the monomial content of each column.
    xx, xy, xz, yy, yz, zz = range(6)
    expected_nonzero = [{xy}, {yz}, {xx, yy, zz}, {xz}, {xx, yy}]
    assert [set(np.flatnonzero(column)) for column in block.T] == expected_nonzero


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown basis set 'cc-pv5z'"):
        build_basis([1], "cc-pv5z")
    with pytest.raises(ValueError, match=r"no data for element K \(Z=19, atom 1\)"):
        build_basis([8, 19], "cc-pvdz")
    with pytest.raises(ValueError, match=r"it covers H, B-F, Al-Cl, Ga-Br$"):
        build_basis(["Fe"], "cc-pvtz-jkfit")
    with pytest.raises(ValueError, match="empty"):
        build_basis([], "sto-3g")
    with pytest.raises(ValueError, match="Xx"):
        build_basis(["Xx"], "sto-3g")
