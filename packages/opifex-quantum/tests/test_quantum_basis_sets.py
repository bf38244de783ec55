"""Dunning, Karlsruhe and fitting basis sets, f to i functions, and K..Kr, against PySCF.

The references are independent: PySCF's cartesian-to-spherical transform (``cart2sph``), its
integrals (``int1e_*``) on the same basis-set data, its ``init_guess_by_minao``, atomic
Hartree-Fock (``atom_hf``) and RHF, and basis-set-exchange's element lists. Integral programs
with f functions compile for several seconds each, so those tests are marked slow or e2e; the
fast ones use ``same_centre_overlap`` (numpy) for one-atom overlaps.
"""

import contextlib
import functools

import jax
import numpy as np
import pytest

from opifex.quantum import (
    SCFConfig,
    Shell,
    atomic_density,
    build_basis,
    canonical_basis_name,
    compute_integrals,
    create_molecular_system,
    element_symbol,
    projected_ano_density,
    rhf_energy,
    run_scf,
    to_pyscf,
)
from opifex.quantum._basis import (
    MAX_ANGULAR_MOMENTUM,
    BasisSet,
    _normalised_coefficients,
    basis_elements,
    basis_set_data,
    cartesian_block,
)
from opifex.quantum._elements import ground_state_configuration
from opifex.quantum._guess import _angular_channels
from opifex.quantum._minao import ground_configuration, same_centre_overlap
from opifex.quantum._one_electron import one_electron_integrals

HEAVY = range(19, 37)  # K to Kr


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


def _pyscf_basis(name, elements):
    """Our shipped shells of ``name`` in PySCF's format (file order; PySCF sorts by l)."""
    return {
        element_symbol(z): [[m, *map(list, zip(a, c, strict=True))] for m, a, c in shells]
        for z, shells in basis_set_data(name).items()
        if z in elements
    }


def _pyscf_atom(z, basis, cartesian=False):
    gto = pytest.importorskip("pyscf.gto")
    symbol = element_symbol(z)
    return gto.M(atom=f"{symbol} 0 0 0", basis=basis, spin=z % 2, cart=cartesian, verbose=0)


def _unit_normalised(matrix, overlap):
    """An operator's matrix in unit-normalised functions (PySCF's cartesian d.. are not)."""
    norms = 1.0 / np.sqrt(np.diag(overlap))
    return matrix * np.outer(norms, norms)


def _pyscf_density(atom, density):
    """A PySCF density in unit-normalised functions (the inverse scaling of an operator)."""
    norms = np.sqrt(np.diag(atom.intor("int1e_ovlp")))
    return density * np.outer(norms, norms)


# --- names and coverage -----------------------------------------------------------------------


def test_names_are_case_and_punctuation_insensitive():
    assert canonical_basis_name("cc-pVDZ") == canonical_basis_name("ccpvdz") == "cc-pvdz"
    assert canonical_basis_name("CC_PVTZ") == "cc-pvtz"
    assert canonical_basis_name("def2-SVP") == canonical_basis_name("def2svp") == "def2-svp"
    assert canonical_basis_name("def2-TZVP") == "def2-tzvp"
    assert canonical_basis_name("def2-universal-JKFIT") == "def2-universal-jkfit"
    assert canonical_basis_name("cc-pVTZ/JKFIT") == "cc-pvtz-jkfit"
    assert canonical_basis_name("6-31G(d,p)") == "6-31g**"
    assert canonical_basis_name("ANO-RCC-MB") == "ano-rcc-mb"
    with pytest.raises(ValueError, match="unknown basis set 'cc-pvdz-jkfit'"):
        canonical_basis_name("cc-pvdz-jkfit")  # not in basis-set-exchange


def test_basis_elements_are_those_of_basis_set_exchange():
    bse = pytest.importorskip("basis_set_exchange")
    metadata = bse.get_metadata()
    for name, bse_name in [("cc-pvdz", "cc-pVDZ"), ("cc-pvtz-jkfit", "cc-pVTZ-JKFIT")]:
        entry = metadata[bse.misc.transform_basis_name(bse_name)]
        defined = entry["versions"][entry["latest_version"]]["elements"]
        assert basis_elements(name) == tuple(sorted(int(z) for z in defined if int(z) <= 36))
    assert 19 not in basis_elements("cc-pvtz")  # basis-set-exchange has no cc-pVTZ for K
    assert basis_elements("def2-tzvp") == tuple(range(1, 37))
    # basis-set-exchange's cc-pVTZ-JKFIT: H, B..F, Al..Cl, Ga..Br (checked just above)
    with pytest.raises(
        ValueError, match=r"no data for element Ne .*; it covers H, B-F, Al-Cl, Ga-Br$"
    ):
        build_basis(["H", "Ne"], "cc-pvtz-jkfit")


def test_highest_angular_momentum_is_that_of_the_shipped_sets():
    """MAX_ANGULAR_MOMENTUM is what the sets need (i in def2-universal-JKFIT), per BSE."""
    bse = pytest.importorskip("basis_set_exchange")
    elements = list(range(1, 37))
    highest = {}
    for name, bse_name in [
        ("cc-pvtz", "cc-pVTZ"),
        ("def2-universal-jkfit", "def2-universal-JKFIT"),
    ]:
        covered = list(basis_elements(name))
        data = bse.get_basis(bse_name, elements=covered, header=False)["elements"]
        shells = [shell for element in data.values() for shell in element["electron_shells"]]
        highest[name] = max(max(shell["angular_momentum"]) for shell in shells)
        assert highest[name] == max(s[0] for z in elements for s in basis_set_data(name).get(z, []))
    assert MAX_ANGULAR_MOMENTUM == highest["def2-universal-jkfit"] > highest["cc-pvtz"]
    build_basis(["Fe", "Kr"], "def2-universal-jkfit")  # accepted: up to i functions


# --- the spherical transform ------------------------------------------------------------------


@pytest.mark.parametrize("l", range(MAX_ANGULAR_MOMENTUM + 1))
def test_spherical_functions_are_pyscf_cart2sph(l):  # noqa: E741
    """Same functions, order and signs as PySCF: ours = c_l * cart2sph(l), one c_l > 0."""
    gto = pytest.importorskip("pyscf.gto")
    expected = gto.mole.cart2sph(l)
    ours = cartesian_block(l, False)
    assert ours.shape == expected.shape == ((l + 1) * (l + 2) // 2, 2 * l + 1)
    scale = (
        ours[np.unravel_index(np.abs(ours).argmax(), ours.shape)]
        / expected.flat[np.abs(ours).argmax()]
    )
    assert scale > 0
    np.testing.assert_allclose(ours, scale * expected, rtol=0, atol=1e-13 * np.abs(ours).max())
    cartesian = cartesian_block(l, True)
    assert cartesian.shape == (expected.shape[0],) * 2
    assert not ours.flags.writeable


def test_cartesian_block_rejects_a_bad_l():
    for bad in (-1, 1.0, True, "2"):
        with pytest.raises(ValueError, match="non-negative integer"):
            cartesian_block(bad, False)


def _single_shells(exponents=(0.7, 2.3)):
    """One uncontracted shell per exponent for every l up to MAX_ANGULAR_MOMENTUM."""
    return [[m, [a, 1.0]] for m in range(MAX_ANGULAR_MOMENTUM + 1) for a in exponents]


@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_one_atom_overlap_up_to_i_functions_equals_pyscf(cartesian):
    """Normalisation of every function, s to i: unit diagonal, PySCF's overlap elsewhere."""
    atom = _pyscf_atom(10, {"Ne": _single_shells()}, cartesian)
    shells = tuple(
        _uncontracted(0, m, a) for m, (a, _) in sorted(_single_shells(), key=lambda s: s[0])
    )
    basis = BasisSet("test", shells, cartesian, (10,))
    t = basis.cartesian_to_basis
    ours = t.T @ same_centre_overlap(shells) @ t
    expected = atom.intor("int1e_ovlp")
    np.testing.assert_allclose(ours, _unit_normalised(expected, expected), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(ours), 1.0, atol=1e-12)


@pytest.mark.parametrize(
    ("z", "name", "cartesian"),
    [
        (26, "cc-pvtz", False),
        (26, "cc-pvtz", True),
        (35, "def2-tzvp", False),
        (17, "cc-pvtz", True),
    ],
    ids=["Fe-cc-pvtz", "Fe-cc-pvtz-cart", "Br-def2-tzvp", "Cl-cc-pvtz-cart"],
)
def test_one_atom_overlap_of_shipped_sets_equals_pyscf(z, name, cartesian):
    """Contraction normalisation and shell order with f and g shells (one atom: numpy only)."""
    atom = _pyscf_atom(z, _pyscf_basis(name, {z}), cartesian)
    basis = build_basis([z], name, cartesian=cartesian)
    t = basis.cartesian_to_basis
    ours = t.T @ same_centre_overlap(basis.shells) @ t
    expected = atom.intor("int1e_ovlp")
    np.testing.assert_allclose(ours, _unit_normalised(expected, expected), rtol=0, atol=1e-12)


# --- integrals with f functions ---------------------------------------------------------------


def _uncontracted(atom, momentum, exponent):
    coefficients = _normalised_coefficients(momentum, np.array([exponent]), np.array([1.0]))
    return Shell(atom, momentum, (exponent,), coefficients)


def _check_one_electron(atoms, basis_name, cartesian, shells=None):
    molecule = create_molecular_system(atoms, unit="bohr")
    if shells is None:
        basis = build_basis(molecule.atomic_numbers, basis_name, cartesian=cartesian)
        mol = to_pyscf(molecule, basis_name, cartesian=cartesian)
    else:  # [[l, exponent], ...] per atom, uncontracted, the same in both codes
        gto = pytest.importorskip("pyscf.gto")
        labels = [f"{symbol}{k}" for k, symbol in enumerate(molecule.symbols)]
        basis = BasisSet(
            "test",
            tuple(_uncontracted(k, m, a) for k, shell in enumerate(shells) for m, a in shell),
            cartesian,
            molecule.atomic_numbers,
        )
        pyscf_shells = [[[m, [a, 1.0]] for m, a in shell] for shell in shells]
        mol = gto.M(
            atom=list(zip(labels, molecule.coordinates.tolist(), strict=True)),
            basis=dict(zip(labels, pyscf_shells, strict=True)),
            unit="bohr",
            cart=cartesian,
            verbose=0,
        )
    ours = jax.jit(lambda xyz, z: one_electron_integrals(basis, xyz, z))(
        molecule.coordinates, molecule.nuclear_charges.astype(float)
    )
    overlap = mol.intor("int1e_ovlp")
    for name, matrix in zip(("int1e_ovlp", "int1e_kin", "int1e_nuc"), ours, strict=True):
        expected = _unit_normalised(mol.intor(name), overlap)
        scale = max(1.0, np.abs(expected).max())
        np.testing.assert_allclose(np.asarray(matrix), expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_one_electron_integrals_of_f_shells_on_two_atoms_equal_pyscf(cartesian):
    atoms = [("Cl", (0.0, 0.0, 0.0)), ("H", (0.3, -0.2, 2.4))]
    _check_one_electron(atoms, None, cartesian, shells=[[[3, 0.8]], [[3, 0.5]]])


@pytest.mark.e2e
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_hcl_cc_pvtz_one_electron_integrals_equal_pyscf(cartesian):
    """HCl in cc-pVTZ: f on Cl, d on H (48 spherical, 54 cartesian functions)."""
    _check_one_electron([("Cl", (0.0, 0.0, 0.0)), ("H", (0.1, 0.2, 2.4))], "cc-pvtz", cartesian)


@pytest.mark.e2e
def test_fe_cc_pvtz_one_electron_integrals_with_g_equal_pyscf():
    _check_one_electron([("Fe", (0.0, 0.0, 0.0)), ("H", (0.1, 0.2, 3.0))], "cc-pvtz", False)


# --- configurations and guesses for K..Kr -----------------------------------------------------


@contextlib.contextmanager
def _pyscf_uses_ground_configuration(z):
    """PySCF's minao reads NRSRHF_CONFIGURATION (a list): give it the ground one for ``z``."""
    elements = pytest.importorskip("pyscf.data.elements")
    saved = elements.NRSRHF_CONFIGURATION[z]
    elements.NRSRHF_CONFIGURATION[z] = elements.CONFIGURATION[z]
    try:
        yield
    finally:
        elements.NRSRHF_CONFIGURATION[z] = saved


def test_ground_configurations_are_pyscf_configurations():
    elements = pytest.importorskip("pyscf.data.elements")
    for z in range(1, 37):
        per_l = [0, 0, 0, 0]
        for _, l, electrons in ground_state_configuration(z):  # noqa: E741
            per_l[l] += electrons
        assert per_l == elements.CONFIGURATION[z], element_symbol(z)
        configuration = ground_configuration(z)
        total = sum((2 * l + 1) * sum(occ) for l, occ in configuration.items())  # noqa: E741
        assert total == pytest.approx(z)
    assert ground_configuration(24) == {0: [2.0, 2.0, 2.0, 1.0], 1: [2.0, 2.0], 2: [1.0]}
    assert ground_configuration(29)[2] == [2.0]  # Cu 3d10 4s1
    assert ground_configuration(26)[2] == [1.2]  # Fe 3d6: 6/5 in each 3d orbital


_E2E = pytest.mark.e2e  # the exhaustive sweeps


@pytest.mark.parametrize(
    ("name", "cartesian", "elements"),
    [
        pytest.param("sto-3g", False, (19, 24, 26, 29, 35), id="sto-3g-K-Cr-Fe-Cu-Br"),
        pytest.param("sto-3g", False, HEAVY, id="sto-3g", marks=_E2E),
        pytest.param("def2-svp", False, HEAVY, id="def2-svp", marks=_E2E),
        pytest.param("cc-pvtz", False, HEAVY[1:], id="cc-pvtz", marks=_E2E),
        pytest.param("6-31g*", True, HEAVY, id="6-31g*-cartesian", marks=_E2E),
    ],
)
def test_minao_of_k_to_kr_equals_pyscf(name, cartesian, elements):
    """PySCF's minao with the ground configurations (it uses NRSRHF ones; Sc, Cr..Ni differ)."""
    hf = pytest.importorskip("pyscf.scf.hf")
    for z in elements:
        atom = _pyscf_atom(z, _pyscf_basis(name, {z}), cartesian)
        with _pyscf_uses_ground_configuration(z):
            expected = _pyscf_density(atom, hf.init_guess_by_minao(atom))
        ours = projected_ano_density(z, name, cartesian)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10, err_msg=element_symbol(z))


@pytest.mark.slow
def test_minao_with_cartesian_d_and_f_equals_pyscf():
    hf = pytest.importorskip("pyscf.scf.hf")
    for z, name in [(24, "6-31g*"), (29, "cc-pvdz"), (35, "6-31g**")]:
        atom = _pyscf_atom(z, _pyscf_basis(name, {z}), True)
        with _pyscf_uses_ground_configuration(z):
            expected = _pyscf_density(atom, hf.init_guess_by_minao(atom))
        ours = projected_ano_density(z, name, True)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10, err_msg=element_symbol(z))


@pytest.mark.parametrize(("z", "name"), [(26, "6-31g*"), (35, "cc-pvtz"), (8, "6-31g*")])
def test_cartesian_shells_split_into_pure_angular_momenta(z, name):
    """The SAD guess's pure-l functions: no overlap between different (l, m), m-independent."""
    basis = build_basis([z], name, cartesian=True)
    t = basis.cartesian_to_basis
    overlap = t.T @ same_centre_overlap(basis.shells) @ t
    transform, channels = _angular_channels(basis)
    assert transform.shape == overlap.shape and np.linalg.matrix_rank(transform) == len(transform)
    pure = transform.T @ overlap @ transform
    label = np.zeros(len(pure), dtype=int)
    for l, index in channels.items():  # noqa: E741
        label[index] = 100 * l + np.arange(2 * l + 1)  # (l, m) of each pure function
        blocks = [pure[np.ix_(i, i)] for i in index.T]
        np.testing.assert_allclose(blocks, [blocks[0]] * len(blocks), atol=1e-12)
    np.testing.assert_allclose(pure[label[:, None] != label[None, :]], 0.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(pure), 1.0, atol=1e-12)
    assert sorted(channels) == list(range(max(s.l for s in basis.shells) + 1))


@functools.cache
def _pyscf_atomic_hf(z, name):
    """PySCF's spherically averaged atomic RHF in the ground configuration, on our data."""
    atom_hf = pytest.importorskip("pyscf.scf.atom_hf")
    elements = pytest.importorskip("pyscf.data.elements")
    mol = _pyscf_atom(z, _pyscf_basis(name, {z}))
    result = atom_hf.get_atm_nrhf(mol, atomic_configuration=elements.CONFIGURATION)
    energy, _, coefficients, occupations = result[element_symbol(z)]
    return energy, (coefficients * occupations) @ coefficients.T


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PySCF's atom_hf
@pytest.mark.parametrize(("z", "name"), [(24, "6-31g"), (35, "6-31g")], ids=["Cr", "Br"])
def test_sad_density_of_heavy_atoms_equals_pyscf_atomic_hf(z, name):
    expected_energy, expected_density = _pyscf_atomic_hf(z, name)
    density = atomic_density(z, name, False)
    integrals = compute_integrals(build_basis([z], name), np.zeros((1, 3)), np.array([z]))
    assert float(rhf_energy(density, integrals)) == pytest.approx(expected_energy, abs=1e-9)
    np.testing.assert_allclose(density, expected_density, atol=1e-5)  # PySCF stops at ~1e-6


# --- RHF against PySCF ------------------------------------------------------------------------

_RHF_SYSTEMS = {
    "H2O/cc-pvdz": ("O 0 0 0.117\nH 0 0.757 -0.470\nH 0 -0.757 -0.470", "cc-pvdz"),
    "HBr/6-31g": ("H 0 0 0\nBr 0 0 1.414", "6-31g"),
    "KCl/6-31g": ("K 0 0 0\nCl 0 0 2.667", "6-31g"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("system", sorted(_RHF_SYSTEMS))
def test_rhf_energy_equals_pyscf(system):
    scf = pytest.importorskip("pyscf.scf")
    atoms, basis = _RHF_SYSTEMS[system]
    molecule = create_molecular_system(atoms)
    result = run_scf(molecule, basis, config=SCFConfig(conv_tol=1e-11))
    reference = scf.RHF(to_pyscf(molecule, basis))
    reference.conv_tol = 1e-12
    expected = reference.kernel()
    assert bool(result.converged) and reference.converged
    assert float(result.value) == pytest.approx(expected, abs=1e-8)
