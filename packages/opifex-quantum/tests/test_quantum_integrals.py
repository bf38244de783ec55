"""Integrals against PySCF (S, T, V, ERI), symmetry, gradients, vmap, jit caching, bad input.

PySCF is given our exact basis data (its own copies of STO-3G and 6-31G carry fewer digits, which
moves integrals by ~1e-6), and our functions are permuted to its order (s shells of an atom before
its p and d shells) when the two orders differ.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.quantum import _integrals
from opifex.quantum._basis import build_basis, double_factorial
from opifex.quantum._eri_plan import quartet_plan
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._molecule import nuclear_repulsion

pyscf_gto = pytest.importorskip("pyscf.gto")

# Bohr
H2O = ((8, (0.0, -0.143225816552, 0.0)), (1, (1.638036840407, 1.136548822547, 0.0)),
       (1, (-1.638036840407, 1.136548822547, 0.0)))  # fmt: skip
CH4 = ((6, (0.0, 0.0, 0.0)), (1, (1.18377, 1.18377, 1.18377)), (1, (-1.18377, -1.18377, 1.18377)),
       (1, (-1.18377, 1.18377, -1.18377)), (1, (1.18377, -1.18377, -1.18377)))  # fmt: skip
MOLECULES = {"H2O": H2O, "CH4": CH4}
SYMBOLS = {1: "H", 6: "C", 8: "O"}


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def _system(name):
    atoms = MOLECULES[name]
    numbers = tuple(z for z, _ in atoms)
    return numbers, np.array([xyz for _, xyz in atoms]), np.array(numbers, dtype=float)


def _pyscf_molecule(basis, coordinates):
    """A PySCF molecule with the same geometry (Bohr) and the same primitives and contractions."""
    shells_by_element = {}
    for atom in sorted({s.atom for s in basis.shells}):
        element = SYMBOLS[basis.atomic_numbers[atom]]
        if element in shells_by_element:
            continue
        shells_by_element[element] = []
        for shell in (s for s in basis.shells if s.atom == atom):
            a = np.array(shell.exponents)
            norm = (2 * a / np.pi) ** 0.75 * (4 * a) ** (shell.l / 2)
            norm /= np.sqrt(double_factorial(2 * shell.l - 1))
            raw = np.array(shell.coefficients) / norm  # PySCF renormalises
            shells_by_element[element].append([shell.l, *map(list, zip(a, raw, strict=True))])
    atoms = [(SYMBOLS[z], xyz) for z, xyz in zip(basis.atomic_numbers, coordinates, strict=True)]
    return pyscf_gto.M(
        atom=atoms, basis=shells_by_element, unit="bohr", cart=basis.cartesian, verbose=0
    )


def _to_pyscf_order(basis):
    """Our function index of each PySCF function (PySCF lists an atom's shells by l)."""
    sizes = [
        (s.l + 1) * (s.l + 2) // 2 if basis.cartesian or s.l < 2 else 2 * s.l + 1
        for s in basis.shells
    ]
    offsets = np.cumsum([0, *sizes])
    order = sorted(
        range(len(basis.shells)), key=lambda k: (basis.shells[k].atom, basis.shells[k].l)
    )
    return np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in order])


CASES = [
    pytest.param("H2O", "sto-3g", False, id="H2O-sto-3g"),
    pytest.param("H2O", "6-31g", False, id="H2O-6-31g", marks=pytest.mark.e2e),
    pytest.param("CH4", "6-31g", False, id="CH4-6-31g", marks=pytest.mark.e2e),
    pytest.param("H2O", "6-31g*", False, id="H2O-6-31g*-spherical", marks=pytest.mark.e2e),
    pytest.param("CH4", "sto-3g", False, id="CH4-sto-3g", marks=pytest.mark.e2e),
    pytest.param("H2O", "6-31g*", True, id="H2O-6-31g*-cartesian", marks=pytest.mark.e2e),
    pytest.param("CH4", "6-31g*", True, id="CH4-6-31g*-cartesian", marks=pytest.mark.e2e),
    pytest.param("CH4", "6-31g*", False, id="CH4-6-31g*-spherical", marks=pytest.mark.e2e),
    # ANO-RCC-MB: general contractions (several shells share 14 primitives)
    pytest.param("H2O", "ano-rcc-mb", False, id="H2O-ano-rcc-mb", marks=pytest.mark.e2e),
]


@pytest.mark.slow
@pytest.mark.parametrize(("molecule", "name", "cartesian"), CASES)
def test_integrals_match_pyscf(molecule, name, cartesian):
    numbers, coordinates, charges = _system(molecule)
    basis = build_basis(numbers, name, cartesian=cartesian)
    ints = compute_integrals(basis, coordinates, charges)
    mol = _pyscf_molecule(basis, coordinates)
    assert mol.nao == basis.n_functions
    # our cartesian components are unit-normalised, PySCF's are not
    overlap = mol.intor("int1e_ovlp")
    scale = 1 / np.sqrt(np.diag(overlap)) if cartesian else np.ones(mol.nao)
    p = _to_pyscf_order(basis)
    pair = np.ix_(p, p)
    for ours, key in ((ints.overlap, "int1e_ovlp"), (ints.kinetic, "int1e_kin"),
                      (ints.nuclear, "int1e_nuc")):  # fmt: skip
        expected = mol.intor(key) * np.outer(scale, scale)
        np.testing.assert_allclose(np.asarray(ours)[pair], expected, rtol=0, atol=1e-10)
    eri = np.einsum("ijkl,i,j,k,l->ijkl", mol.intor("int2e"), scale, scale, scale, scale)
    np.testing.assert_allclose(np.asarray(ints.eri)[np.ix_(p, p, p, p)], eri, rtol=0, atol=1e-10)
    assert abs(float(ints.nuclear_repulsion) - mol.energy_nuc()) < 1e-12


@pytest.mark.e2e
def test_eri_has_eightfold_symmetry_and_only_unique_quartets_are_computed():
    numbers, coordinates, charges = _system("H2O")
    basis = build_basis(numbers, "6-31g*")
    eri = np.asarray(compute_integrals(basis, coordinates, charges).eri)
    for perm in ("jikl", "ijlk", "jilk", "klij", "lkij", "klji", "lkji"):
        np.testing.assert_allclose(eri, np.einsum(f"ijkl->{perm}", eri), rtol=0, atol=1e-14)
    n_shells = len(basis.shells)
    n_pairs = n_shells * (n_shells + 1) // 2
    assert sum(q.n_quartets for q in quartet_plan(basis)) == n_pairs * (n_pairs + 1) // 2
    assert len(quartet_plan(basis)) == 21  # s, p, d: pair classes 6 -> 21 quartet classes


def _weighted_sum(basis, charges):
    n = basis.n_functions
    weights = [jnp.asarray(np.random.default_rng(k).normal(size=(n,) * d)) for k, d in
               enumerate((2, 2, 2, 4))]  # fmt: skip

    def scalar(coordinates):
        ints = compute_integrals(basis, coordinates, charges)
        matrices = (ints.overlap, ints.kinetic, ints.nuclear, ints.eri)
        return sum(jnp.sum(w * m) for w, m in zip(weights, matrices, strict=True)) + (
            ints.nuclear_repulsion
        )

    return scalar


@pytest.mark.e2e
def test_gradients_match_finite_differences():
    numbers, coordinates, charges = _system("H2O")
    scalar = _weighted_sum(build_basis(numbers, "sto-3g"), charges)
    x = jnp.asarray(coordinates)
    grad = np.asarray(jax.grad(scalar)(x))
    assert np.all(np.isfinite(grad))
    h = 1e-4
    fd = np.zeros((3, 3))
    for a in range(3):
        for k in range(3):
            e = np.zeros((3, 3))
            e[a, k] = h
            fd[a, k] = (scalar(x + e) - scalar(x - e)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-7)


@pytest.mark.e2e
def test_forward_mode_equals_reverse_mode_with_d_shells():
    numbers, coordinates, charges = _system("H2O")
    scalar = _weighted_sum(build_basis(numbers, "6-31g*"), charges)
    x = jnp.asarray(coordinates)
    np.testing.assert_allclose(jax.jacfwd(scalar)(x), jax.grad(scalar)(x), rtol=1e-11, atol=1e-11)


@pytest.mark.slow
def test_vmap_over_geometries_equals_one_by_one():
    numbers, coordinates, charges = _system("H2O")
    basis = build_basis(numbers, "sto-3g")
    shifts = np.random.default_rng(0).normal(scale=0.05, size=(3, 3, 3))
    batch = jnp.asarray(coordinates + shifts)
    batched = jax.vmap(lambda x: compute_integrals(basis, x, charges))(batch)
    assert batched.eri.shape == (3, 7, 7, 7, 7)
    for k in range(3):
        single = compute_integrals(basis, batch[k], charges)
        for a, b in zip(batched, single, strict=True):
            np.testing.assert_allclose(a[k], b, rtol=1e-13, atol=1e-14)


def test_second_call_with_new_coordinates_does_not_retrace(monkeypatch):
    numbers, coordinates, charges = _system("H2O")
    basis = build_basis(numbers, "sto-3g")
    first = compute_integrals(basis, coordinates, charges)
    traces = []
    original = _integrals.primitive_pairs
    monkeypatch.setattr(_integrals, "primitive_pairs", lambda *a: traces.append(1) or original(*a))
    second = compute_integrals(basis, coordinates * 1.05, charges)
    assert not traces
    assert float(jnp.abs(second.nuclear - first.nuclear).max()) > 1e-3


def test_nuclear_repulsion_is_pairwise_and_finite_for_one_atom():
    x = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    z = jnp.array([1.0, 2.0, 3.0])
    assert float(nuclear_repulsion(x, z)) == pytest.approx(2 / 2 + 3 / 3 + 6 / np.sqrt(13))
    assert float(nuclear_repulsion(x[:1], z[:1])) == 0.0
    assert np.all(np.isfinite(jax.grad(nuclear_repulsion)(x, z)))


def test_bad_input_is_rejected():
    numbers, coordinates, charges = _system("H2O")
    basis = build_basis(numbers, "sto-3g")
    with pytest.raises(ValueError, match="coordinates"):
        compute_integrals(basis, coordinates[:2], charges)
    with pytest.raises(ValueError, match="nuclear_charges"):
        compute_integrals(basis, coordinates, charges[:2])
    with pytest.raises(TypeError, match="BasisSet"):
        compute_integrals("sto-3g", coordinates, charges)


@pytest.mark.slow
def test_needs_float64():
    numbers, coordinates, charges = _system("H2O")
    jax.config.update("jax_enable_x64", False)
    with pytest.raises(RuntimeError, match="64-bit"):
        compute_integrals(build_basis(numbers, "sto-3g"), coordinates, charges)
