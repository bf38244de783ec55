"""The MINAO guess: projected ANO-RCC-MB atomic densities against PySCF's minao guess.

For a single atom PySCF's ``init_guess_by_minao`` does what ours does (the same ANO-RCC
contractions and occupations, projected into the basis by least squares), so its density is an
independent reference; in a molecule PySCF projects over all atoms at once and ours atom by atom.
"""

import jax
import numpy as np
import pytest

from opifex.quantum import (
    BasisSet,
    build_basis,
    element_symbol,
    minao_guess,
    projected_ano_density,
)
from opifex.quantum._basis import basis_set_data
from opifex.quantum._minao import ground_configuration, same_centre_overlap
from opifex.quantum._one_electron import one_electron_integrals

ELEMENTS = range(1, 19)
BASES = [("sto-3g", False), ("6-31g", False), ("6-31g*", False), ("6-31g**", True)]


def _atom_overlap(z, name, cartesian):
    basis = build_basis((z,), name, cartesian=cartesian)
    t = basis.cartesian_to_basis
    return t.T @ same_centre_overlap(basis.shells) @ t


def test_ground_configurations_hold_the_atomic_number():
    for z in ELEMENTS:
        configuration = ground_configuration(z)
        electrons = sum((2 * m + 1) * sum(occ) for m, occ in configuration.items())
        assert electrons == pytest.approx(z)
    assert ground_configuration(7) == {0: [2.0, 2.0], 1: [1.0]}  # 1s2 2s2 2p3
    assert ground_configuration(11) == {0: [2.0, 2.0, 1.0], 1: [2.0]}  # [Ne] 3s1
    # chromium and copper: one 4s electron, a half-filled or filled 3d shell (per orbital)
    assert ground_configuration(24) == {0: [2.0, 2.0, 2.0, 1.0], 1: [2.0, 2.0], 2: [1.0]}
    assert ground_configuration(29) == {0: [2.0, 2.0, 2.0, 1.0], 1: [2.0, 2.0], 2: [2.0]}
    with pytest.raises(ValueError, match=r"H to Kr .* Z=37"):
        ground_configuration(37)


@pytest.mark.slow
@pytest.mark.parametrize("cartesian", [False, True], ids=["spherical", "cartesian"])
def test_same_centre_overlap_equals_the_integral_code(cartesian):
    oxygen = build_basis((8,), "6-31g*", cartesian=cartesian)
    ano = build_basis((8,), "ano-rcc-mb")
    both = BasisSet("test", oxygen.shells + ano.shells, cartesian, (8,))
    t = both.cartesian_to_basis
    ours = t.T @ same_centre_overlap(both.shells) @ t
    overlap = jax.jit(lambda xyz, z: one_electron_integrals(both, xyz, z)[0])
    with jax.enable_x64(True):
        expected = overlap(np.zeros((1, 3)), np.array([8.0]))
    np.testing.assert_allclose(ours, np.asarray(expected), rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "cartesian"), BASES)
def test_one_atom_equals_pyscf_minao_guess(name, cartesian):
    gto = pytest.importorskip("pyscf.gto")
    hf = pytest.importorskip("pyscf.scf.hf")
    for z in ELEMENTS:
        symbol = element_symbol(z)
        shells = sorted(basis_set_data(name)[z], key=lambda shell: shell[0])
        basis = {symbol: [[m, *map(list, zip(a, c, strict=True))] for m, a, c in shells]}
        atom = gto.M(atom=f"{symbol} 0 0 0", basis=basis, spin=z % 2, cart=cartesian, verbose=0)
        expected = hf.init_guess_by_minao(atom)
        # our cartesian components are unit-normalised, PySCF's are not
        norms = np.sqrt(np.diag(atom.intor("int1e_ovlp")))
        expected = expected * np.outer(norms, norms)
        ours = projected_ano_density(z, name, cartesian)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12, err_msg=symbol)


@pytest.mark.parametrize(("name", "cartesian"), BASES)
def test_projection_keeps_at_most_the_atoms_electrons(name, cartesian):
    for z in ELEMENTS:
        density = projected_ano_density(z, name, cartesian)
        np.testing.assert_allclose(density, density.T, atol=1e-14)
        assert np.linalg.eigvalsh(density).min() > -1e-12
        electrons = np.trace(density @ _atom_overlap(z, name, cartesian))
        kept = 0.94 if name == "sto-3g" else 0.99  # STO-3G sodium keeps 94.8%, 6-31G F 99.7%
        assert kept * z < electrons <= z + 1e-9, (z, electrons)


def test_in_the_ano_basis_itself_the_projection_is_exact():
    for z in ELEMENTS:
        electrons = np.trace(
            projected_ano_density(z, "ano-rcc-mb", False) @ _atom_overlap(z, "ano-rcc-mb", False)
        )
        assert electrons == pytest.approx(z, abs=1e-7)  # the ANOs are orthonormal to ~1e-8


def test_water_guess_is_block_diagonal_over_atoms():
    basis = build_basis((8, 1, 1), "6-31g")
    guess = minao_guess(basis)
    expected = np.zeros((13, 13))
    expected[:9, :9] = projected_ano_density(8, "6-31g", False)
    expected[9:11, 9:11] = expected[11:, 11:] = projected_ano_density(1, "6-31g", False)
    np.testing.assert_array_equal(guess, expected)
