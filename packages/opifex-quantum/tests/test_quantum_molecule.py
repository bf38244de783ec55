"""Molecule layer: elements, Molecule pytree, XYZ input, the test-molecule library.

References: PySCF's ``energy_nuc`` and ``grad_nuc`` (when installed), T. D. Crawford's
Programming Project #3 (water nuclear repulsion), closed-form values and finite differences.
"""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.quantum._elements import atomic_number, element_symbol
from opifex.quantum._geometries import known_molecules, molecule_from_name
from opifex.quantum._molecule import BOHR_IN_ANGSTROM, Molecule, create_molecular_system

# Crawford, "Programming Projects", Project #3, enuc.dat for geom.dat (water).
CRAWFORD_WATER_ENUC = 8.002367061810450

H2_BOHR = [("H", (0.0, 0.0, 0.0)), ("H", (0.0, 0.0, 1.4))]


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


def _pyscf_mol(mol: Molecule):
    gto = pytest.importorskip("pyscf.gto")
    atom = [
        (s, tuple(map(float, xyz))) for s, xyz in zip(mol.symbols, mol.coordinates, strict=True)
    ]
    return gto.M(
        atom=atom,
        unit="Bohr",
        basis="sto-3g",
        charge=mol.charge,
        spin=mol.multiplicity - 1,
        verbose=0,
    )


# ----------------------------------------------------------------------------- elements


def test_atomic_number_symbols_numbers_and_case():
    assert atomic_number("H") == 1
    assert atomic_number("kr") == 36
    assert atomic_number("CL") == 17
    assert atomic_number(" Fe ") == 26
    assert atomic_number("8") == 8
    assert atomic_number(np.int64(6)) == 6
    assert element_symbol(29) == "Cu"
    assert element_symbol("ne") == "Ne"


@pytest.mark.parametrize(
    ("element", "error", "match"),
    [
        ("Xx", ValueError, "unknown element 'Xx'"),
        ("", ValueError, "unknown element ''"),
        ("Rb", ValueError, "unknown element 'Rb'"),
        (0, ValueError, "atomic number 0"),
        (200, ValueError, "atomic number 200"),
        (-1, ValueError, "atomic number -1"),
        (True, TypeError, "symbol or an atomic number"),
        (1.0, TypeError, "symbol or an atomic number, got float"),
        (None, TypeError, "symbol or an atomic number"),
    ],
)
def test_atomic_number_rejects_unknown(element, error, match):
    with pytest.raises(error, match=match):
        atomic_number(element)


# ----------------------------------------------------------------------------- Molecule


def test_h2_units_and_closed_form_repulsion():
    bohr = create_molecular_system(H2_BOHR, unit="bohr")
    angstrom = create_molecular_system(
        [("H", (0, 0, 0)), ("h", (0, 0, 1.4 * BOHR_IN_ANGSTROM))], unit="Angstrom"
    )
    np.testing.assert_allclose(angstrom.coordinates, bohr.coordinates, rtol=0, atol=1e-14)
    assert bohr.coordinates.dtype == np.float64
    energy = bohr.nuclear_repulsion()
    assert energy.dtype == jnp.float64
    assert float(energy) == pytest.approx(1 / 1.4, abs=1e-15)


def test_angstrom_conversion_matches_pyscf():
    gto = pytest.importorskip("pyscf.gto")
    atoms = [("O", (0.0, 0.0, 0.1173)), ("H", (0.0, 0.7572, -0.4692)), ("H", (0, -0.7572, -0.4692))]
    ours = create_molecular_system(atoms)
    theirs = gto.M(atom=atoms, unit="Angstrom", basis="sto-3g", verbose=0)
    np.testing.assert_allclose(ours.coordinates, theirs.atom_coords(), rtol=0, atol=1e-13)


def test_crawford_water_nuclear_repulsion():
    water = molecule_from_name("H2O")
    assert float(water.nuclear_repulsion()) == pytest.approx(CRAWFORD_WATER_ENUC, abs=1e-12)


@pytest.mark.parametrize("name", known_molecules())
def test_nuclear_repulsion_matches_pyscf(name):
    mol = molecule_from_name(name)
    reference = _pyscf_mol(mol)
    assert float(mol.nuclear_repulsion()) == pytest.approx(reference.energy_nuc(), abs=1e-10)
    assert mol.n_electrons == reference.nelectron
    assert (mol.n_alpha, mol.n_beta) == reference.nelec


@pytest.mark.slow
def test_nuclear_gradient_matches_pyscf_and_finite_differences():
    grad_rhf = pytest.importorskip("pyscf.grad.rhf")
    methane = molecule_from_name("CH4")
    displaced = np.random.default_rng(0).normal(scale=0.1, size=(5, 3))
    mol = dataclasses.replace(methane, coordinates=methane.coordinates + displaced)

    grad = jax.grad(lambda m: m.nuclear_repulsion())(mol)
    assert isinstance(grad, Molecule)
    assert grad.atomic_numbers == mol.atomic_numbers
    np.testing.assert_allclose(grad.coordinates, grad_rhf.grad_nuc(_pyscf_mol(mol)), atol=1e-10)

    energy = jax.jit(lambda r: dataclasses.replace(mol, coordinates=r).nuclear_repulsion())
    step = 1e-5
    finite_difference = np.zeros((5, 3))
    for index in np.ndindex(5, 3):
        shift = np.zeros((5, 3))
        shift[index] = step
        plus, minus = energy(mol.coordinates + shift), energy(mol.coordinates - shift)
        finite_difference[index] = (plus - minus) / (2 * step)
    np.testing.assert_allclose(grad.coordinates, finite_difference, atol=1e-8)
    # Translation invariance: the forces on all nuclei sum to zero.
    np.testing.assert_allclose(np.sum(grad.coordinates, axis=0), 0.0, atol=1e-12)


def test_single_atom_has_zero_repulsion_and_finite_gradient():
    helium = create_molecular_system([("He", (0.1, 0.2, 0.3))])
    assert float(helium.nuclear_repulsion()) == 0.0
    grad = jax.grad(lambda m: m.nuclear_repulsion())(helium).coordinates
    np.testing.assert_array_equal(grad, np.zeros((1, 3)))


@pytest.mark.slow
def test_vmap_jit_and_batched_coordinates():
    h2 = create_molecular_system(H2_BOHR, unit="bohr")
    distances = jnp.linspace(0.8, 3.0, 7)
    batch = jnp.zeros((7, 2, 3)).at[:, 1, 2].set(distances)
    batched = dataclasses.replace(h2, coordinates=batch)

    energies = jax.jit(jax.vmap(lambda m: m.nuclear_repulsion()))(batched)
    np.testing.assert_allclose(energies, 1.0 / distances, rtol=1e-14)
    np.testing.assert_allclose(batched.nuclear_repulsion(), 1.0 / distances, rtol=1e-14)

    forces = jax.vmap(jax.grad(lambda m: m.nuclear_repulsion()))(batched).coordinates
    assert forces.shape == (7, 2, 3)
    np.testing.assert_allclose(forces[:, 1, 2], -1.0 / distances**2, rtol=1e-14)
    assert np.all(np.isfinite(forces))


def test_molecule_is_a_pytree_with_static_metadata():
    water = molecule_from_name("h2o")
    leaves, treedef = jax.tree_util.tree_flatten(water)
    assert len(leaves) == 1 and leaves[0] is water.coordinates
    rebuilt = jax.tree_util.tree_unflatten(treedef, [np.zeros((3, 3))])
    assert (rebuilt.atomic_numbers, rebuilt.charge, rebuilt.multiplicity) == ((8, 1, 1), 0, 1)
    assert water.symbols == ("O", "H", "H")
    np.testing.assert_array_equal(water.nuclear_charges, [8.0, 1.0, 1.0])
    assert water.nuclear_charges.dtype == np.float64


LIH = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])


def test_constructor_normalises_and_validates_static_fields():
    mol = Molecule(LIH, ["Li", np.int32(1)], np.int64(0), 1)
    assert mol.atomic_numbers == (3, 1) and type(mol.charge) is int
    with pytest.raises(ValueError, match="atomic_numbers is empty"):
        Molecule(np.zeros((0, 3)), ())
    with pytest.raises(TypeError, match="atomic_numbers must be a sequence"):
        Molecule(np.zeros((1, 3)), 1)
    with pytest.raises(ValueError, match="is impossible with 2 electrons"):
        Molecule(LIH, (1, 1), 0, 2)


@pytest.mark.parametrize(
    ("coordinates", "error", "match"),
    [
        (np.zeros((3,)), ValueError, re.escape("shape (n_atoms, 3) = (2, 3)")),
        (np.zeros((2, 2)), ValueError, re.escape("got (2, 2)")),
        (np.zeros((3, 3)), ValueError, re.escape("got (3, 3)")),
        ([[0, 0, 0]], ValueError, re.escape("got (1, 3)")),
        (np.array([[0.0, 0, 0], [0, 0, np.nan]]), ValueError, r"finite: atom 1 \(H\)"),
        (np.array([[np.inf, 0, 0], [0, 0, 1.4]]), ValueError, r"finite: atom 0 \(H\)"),
        (np.zeros((2, 3)), ValueError, r"atoms 0 \(H\) and 1 \(H\) are 0 Bohr apart"),
        ([[0, 0, 0], [0, 0, 0.05]], ValueError, "are 0.05 Bohr apart; nuclei must be at least"),
        (None, TypeError, "coordinates must be an array of shape"),
        (object(), TypeError, "coordinates must be real numbers"),
        ("0 0 0", TypeError, "coordinates must be an array of shape"),
        (np.zeros((2, 3), dtype=complex), TypeError, "coordinates must be real numbers"),
        (np.ones((2, 3), dtype=bool), TypeError, "coordinates must be real numbers"),
        ([[0, 0, 0], [0, 0]], TypeError, "coordinates must be an array of shape"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_constructor_validates_coordinates_like_create_molecular_system(coordinates, error, match):
    with pytest.raises(error, match=match):
        Molecule(coordinates, (1, 1))
    if isinstance(coordinates, np.ndarray) and coordinates.dtype == np.float64:
        with pytest.raises(ValueError, match=match):  # a jax array is checked the same way
            Molecule(jnp.asarray(coordinates), (1, 1))


def test_replace_and_batches_are_validated_too():
    h2 = Molecule(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]), (1, 1))
    with pytest.raises(ValueError, match="are 0 Bohr apart"):
        dataclasses.replace(h2, coordinates=np.zeros((2, 3)))
    batch = np.zeros((4, 2, 3))
    batch[:, 1, 2] = [1.0, 1.4, 0.02, 2.0]
    with pytest.raises(ValueError, match=re.escape("are 0.02 Bohr apart (batch index (2,))")):
        dataclasses.replace(h2, coordinates=batch)
    batch[2, 1, 2] = 1.2
    assert dataclasses.replace(h2, coordinates=batch).coordinates.shape == (4, 2, 3)


def test_tracers_and_rebuilt_molecules_skip_the_value_checks():
    h2 = Molecule(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]), (1, 1))
    # jax rebuilds molecules from leaves that are no geometry at all
    _, treedef = jax.tree_util.tree_flatten(h2)
    for leaf in (object(), None, 0, np.zeros((2, 3)), np.zeros(())):
        rebuilt = jax.tree_util.tree_unflatten(treedef, [leaf])
        assert rebuilt.coordinates is leaf and rebuilt.atomic_numbers == (1, 1)
    assert jax.tree.map(lambda x: None, h2).coordinates is None
    zeros = jax.tree.map(jnp.zeros_like, h2)  # all nuclei at one point: fine for a pytree
    assert float(jnp.abs(zeros.coordinates).sum()) == 0.0
    # a gradient is a Molecule of forces, rebuilt without checks
    grad = jax.grad(lambda m: m.nuclear_repulsion())(h2)
    assert isinstance(grad, Molecule) and grad.coordinates.shape == (2, 3)
    # tracers: only the shape is checked, even for coincident nuclei
    traced = jax.jit(lambda c: Molecule(c, (1, 1)).nuclear_repulsion())
    assert np.isinf(float(traced(jnp.zeros((2, 3)))))
    energies = jax.vmap(lambda c: dataclasses.replace(h2, coordinates=c).nuclear_repulsion())(
        jnp.zeros((3, 2, 3)).at[:, 1, 2].set(jnp.array([1.0, 2.0, 4.0]))
    )
    np.testing.assert_allclose(energies, [1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match=re.escape("got (3,)")):
        jax.jit(lambda c: Molecule(c, (1, 1)).nuclear_repulsion())(jnp.zeros(3))
    # AOT lowering with shapes only
    shape = jax.ShapeDtypeStruct((2, 3), jnp.float64)
    assert Molecule(shape, (1, 1)).coordinates is shape


def test_float32_without_x64():
    h2 = create_molecular_system(H2_BOHR, unit="bohr")
    with jax.enable_x64(False):
        energy = h2.nuclear_repulsion()
    assert energy.dtype == jnp.float32
    assert float(energy) == pytest.approx(1 / 1.4, rel=1e-6)


# ----------------------------------------------------------------------------- electrons


@pytest.mark.parametrize(
    ("name", "multiplicity", "expected"),
    [
        ("H2", None, (2, 1, 1, 1)),
        ("HeH+", None, (2, 1, 1, 1)),
        ("H2O", None, (10, 1, 5, 5)),
        ("NH3", None, (10, 1, 5, 5)),
        ("CH4", None, (10, 1, 5, 5)),
        ("N2", None, (14, 1, 7, 7)),
        ("O2", None, (16, 3, 9, 7)),
        ("O2", 1, (16, 1, 8, 8)),
        ("OH", None, (9, 2, 5, 4)),
        ("OH", 4, (9, 4, 6, 3)),
        ("CO", None, (14, 1, 7, 7)),
        ("HF", None, (10, 1, 5, 5)),
        ("LiH", None, (4, 1, 2, 2)),
    ],
)
def test_electron_counts(name, multiplicity, expected):
    mol = molecule_from_name(name, multiplicity=multiplicity)
    assert (mol.n_electrons, mol.multiplicity, mol.n_alpha, mol.n_beta) == expected
    assert mol.n_alpha - mol.n_beta == mol.multiplicity - 1


def test_charge_sets_default_multiplicity():
    oh = [("O", (0, 0, 0)), ("H", (0, 0, 0.97))]
    anion = create_molecular_system(oh, charge=-1)
    assert (anion.n_electrons, anion.multiplicity, anion.n_alpha, anion.n_beta) == (10, 1, 5, 5)
    h2_cation = create_molecular_system(H2_BOHR, unit="bohr", charge=1)
    assert (h2_cation.n_electrons, h2_cation.multiplicity) == (1, 2)
    assert (h2_cation.n_alpha, h2_cation.n_beta) == (1, 0)


# ----------------------------------------------------------------------------- library


def _distance(mol, a, b):
    return float(np.linalg.norm(mol.coordinates[a] - mol.coordinates[b])) * BOHR_IN_ANGSTROM


def _angle(mol, a, center, b):
    u = mol.coordinates[a] - mol.coordinates[center]
    v = mol.coordinates[b] - mol.coordinates[center]
    return math.degrees(math.acos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))


@pytest.mark.parametrize(
    ("name", "length"),
    [
        ("H2", 0.74),
        ("HeH+", 0.7743),
        ("N2", 1.0977),
        ("O2", 1.2075),
        ("OH", 0.9697),
        ("CO", 1.1283),
        ("HF", 0.9168),
        ("LiH", 1.5949),
    ],
)
def test_diatomic_bond_lengths(name, length):
    assert _distance(molecule_from_name(name), 0, 1) == pytest.approx(length, abs=1e-12)


def test_polyatomic_internal_coordinates():
    ammonia = molecule_from_name("nh3")
    for h in (1, 2, 3):
        assert _distance(ammonia, 0, h) == pytest.approx(1.012, abs=1e-12)
    for a, b in ((1, 2), (1, 3), (2, 3)):
        assert _angle(ammonia, a, 0, b) == pytest.approx(106.7, abs=1e-9)
    methane = molecule_from_name("CH4")
    tetrahedral = math.degrees(math.acos(-1 / 3))
    for h in (1, 2, 3, 4):
        assert _distance(methane, 0, h) == pytest.approx(1.087, abs=1e-12)
    for a in range(1, 5):
        for b in range(a + 1, 5):
            assert _angle(methane, a, 0, b) == pytest.approx(tetrahedral, abs=1e-9)


def test_library_names_and_errors():
    assert known_molecules() == (
        "H2", "HeH+", "H2O", "NH3", "CH4", "N2", "O2", "OH", "CO", "HF", "LiH",
    )  # fmt: skip
    assert molecule_from_name(" heh+ ").charge == 1
    with pytest.raises(ValueError, match=r"unknown molecule 'benzene'; known: H2, HeH\+, H2O"):
        molecule_from_name("benzene")
    with pytest.raises(ValueError, match="unknown molecule 3"):
        molecule_from_name(3)
    with pytest.raises(ValueError, match="multiplicity=2 is impossible with 16 electrons"):
        molecule_from_name("O2", multiplicity=2)


# ----------------------------------------------------------------------------- XYZ input

WATER_XYZ = """3
water, Angstrom

O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
"""
WATER_ATOMS = [("O", (0, 0, 0.1173)), ("H", (0, 0.7572, -0.4692)), ("H", (0, -0.7572, -0.4692))]


def test_xyz_string_forms():
    reference = create_molecular_system(WATER_ATOMS)
    standard = create_molecular_system(WATER_XYZ)
    bare = create_molecular_system("\n".join(WATER_XYZ.splitlines()[3:]))
    no_comment = create_molecular_system("3\n\n" + "\n".join(WATER_XYZ.splitlines()[3:]))
    for mol in (standard, bare, no_comment):
        assert mol.atomic_numbers == (8, 1, 1)
        np.testing.assert_allclose(mol.coordinates, reference.coordinates, rtol=0, atol=1e-14)
    bare_bohr = create_molecular_system("H 0 0 0\nH 0 0 1.4", unit="bohr")
    assert float(bare_bohr.nuclear_repulsion()) == pytest.approx(1 / 1.4, abs=1e-15)
    charged = create_molecular_system("He 0 0 0\nH 0 0 0.7743", charge=1)
    assert (charged.charge, charged.n_electrons) == (1, 2)


def test_xyz_file_round_trip(tmp_path):
    water = molecule_from_name("H2O")
    lines = [str(water.n_atoms), "Crawford water"]
    for symbol, xyz in zip(water.symbols, water.coordinates * BOHR_IN_ANGSTROM, strict=True):
        lines.append(f"{symbol} {xyz[0]:.15f} {xyz[1]:.15f} {xyz[2]:.15f}")
    path = tmp_path / "water.xyz"
    path.write_text("\n".join(lines) + "\n")
    for source in (path, str(path)):
        mol = create_molecular_system(source)
        assert mol.atomic_numbers == water.atomic_numbers
        np.testing.assert_allclose(mol.coordinates, water.coordinates, rtol=0, atol=1e-13)
        assert float(mol.nuclear_repulsion()) == pytest.approx(CRAWFORD_WATER_ENUC, abs=1e-11)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("3\nwater\nO 0 0 0\nH 0 0.76 -0.47\n", "count line says 3 atoms but 2 atom lines follow"),
        ("1\nH\nH 0 0 0\nH 0 0 0.74\n", "count line says 1 atoms but 2 atom lines follow"),
        ("2\n", "count line says 2 atoms but 0 atom lines follow"),
        ("2\nH2\nH 0 0 0\nH 0 abc 0.74\n", "line 4: could not read the coordinates"),
        ("H 0 0 0\nH 0 0\n", re.escape("line 2: expected 'El x y z', got 'H 0 0'")),
        ("H 0 0 0 0.5\n", "line 1: expected 'El x y z'"),
        ("Xx 0 0 0\n", "unknown element 'Xx'"),
        ("H 0 0 0\nH 0 0 nan\n", "coordinates must be finite"),
        ("  \n\n", "XYZ text contains no atoms"),
    ],
)
def test_malformed_xyz(text, match):
    with pytest.raises(ValueError, match=match):
        create_molecular_system(text)


def test_xyz_units_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="XYZ text is in Angstrom, got unit='bohr'"):
        create_molecular_system(WATER_XYZ, unit="bohr")
    path = tmp_path / "water.xyz"
    path.write_text(WATER_XYZ)
    with pytest.raises(ValueError, match=r"XYZ file '.*water\.xyz' is in Angstrom"):
        create_molecular_system(path, unit="bohr")
    with pytest.raises(FileNotFoundError):
        create_molecular_system(str(tmp_path / "missing.xyz"))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("atoms", "kwargs", "error", "match"),
    [
        ([("Xx", (0, 0, 0))], {}, ValueError, re.escape("atoms[0]: unknown element 'Xx'")),
        ([("H", (0, 0, 0)), (0, (0, 0, 1))], {}, ValueError, r"atoms\[1\].*atomic number 0"),
        ([(200, (0, 0, 0))], {}, ValueError, "atomic number 200"),
        (H2_BOHR, {"unit": "nm"}, ValueError, "unit must be 'angstrom' or 'bohr', got 'nm'"),
        (H2_BOHR, {"unit": None}, ValueError, "unit must be 'angstrom' or 'bohr', got None"),
        ([], {}, ValueError, "atoms is empty"),
        (5, {}, TypeError, "atoms must be a list of"),
        ([("H", 0, 0, 0)], {}, TypeError, re.escape("atoms[0] must be an (element, (x, y, z))")),
        (["H"], {}, TypeError, re.escape("atoms[0] must be an (element, (x, y, z)) pair")),
        ([("H", (0, 0))], {}, ValueError, re.escape("atoms[0] (H) coordinates must be 3 numbers")),
        ([("H", "abc")], {}, ValueError, re.escape("atoms[0] (H) coordinates must be 3 numbers")),
        (
            [("O", (0, 0, math.nan))],
            {},
            ValueError,
            r"atoms\[0\] \(O\) coordinates must be finite",
        ),
        ([("H", (math.inf, 0, 0))], {}, ValueError, "coordinates must be finite"),
        (
            [("O", (0, 0, 0)), ("H", (0, 0, 1.0)), ("H", (0, 0, 1.05))],
            {"unit": "bohr"},
            ValueError,
            re.escape("atoms 1 (H) and 2 (H) are 0.05 Bohr apart; nuclei must be at least 0.1"),
        ),
        ([("C", (0, 0, 0)), ("O", (0, 0, 0))], {}, ValueError, r"atoms 0 \(C\) and 1 \(O\) are 0 "),
        (H2_BOHR, {"charge": 2}, ValueError, "charge=2 leaves 0 electrons"),
        (H2_BOHR, {"charge": 5}, ValueError, "charge=5 leaves -3 electrons"),
        (H2_BOHR, {"charge": 0.5}, TypeError, "charge must be an integer, got float 0.5"),
        (H2_BOHR, {"charge": True}, TypeError, "charge must be an integer"),
        (H2_BOHR, {"multiplicity": 0}, ValueError, r"multiplicity \(2S\+1\) must be at least 1"),
        (H2_BOHR, {"multiplicity": -1}, ValueError, "must be at least 1, got -1"),
        (H2_BOHR, {"multiplicity": 2}, ValueError, "an even electron count needs an odd multip"),
        (
            [("H", (0, 0, 0))],
            {"multiplicity": 1},
            ValueError,
            "impossible with 1 electrons: an odd electron count needs an even multiplicity",
        ),
        (H2_BOHR, {"multiplicity": 5}, ValueError, "needs 4 unpaired electrons but the molecule"),
        ([("H", (0, 0, 0))], {"multiplicity": 4}, ValueError, "needs 3 unpaired electrons"),
        (H2_BOHR, {"multiplicity": 3.0}, TypeError, "multiplicity must be an integer"),
    ],
)
def test_bad_input_raises_clear_errors(atoms, kwargs, error, match):
    with pytest.raises(error, match=match):
        create_molecular_system(atoms, **kwargs)
