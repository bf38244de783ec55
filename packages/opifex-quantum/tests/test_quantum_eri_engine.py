"""The blocked two-electron engine: unique quartets, blocks, Schwarz screening, supermatrices.

The dense tensor (the one-shot kernel of ``_two_electron``) is checked against PySCF in
``test_quantum_integrals``; here the blocked engine's supermatrices, blocking and screening are
checked against it (and against its ``einsum`` J and K).
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.quantum import _eri_plan, _heap, _integrals, build_basis, molecule_from_name, run_rhf
from opifex.quantum._eri_engine import primitive_quartet_integrals
from opifex.quantum._eri_plan import pair_layout, quartet_plan, rounded_up
from opifex.quantum._integrals import compute_integrals
from opifex.quantum._shell_pairs import primitive_pairs, shell_pairs
from opifex.quantum._two_electron import compact_quartet_integrals


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _integrals_of(name, basis_name, **kwargs):
    molecule = molecule_from_name(name)
    basis = build_basis(molecule.atomic_numbers, basis_name)
    coordinates = jnp.asarray(molecule.coordinates)
    charges = jnp.asarray(molecule.nuclear_charges)
    return basis, compute_integrals(basis, coordinates, charges, **kwargs)


def test_the_plan_lists_every_unique_shell_quartet_once():
    basis = build_basis(molecule_from_name("H2O").atomic_numbers, "6-31g*")
    layout = pair_layout(basis)
    seen = set()
    for quartets in quartet_plan(basis):
        n = quartets.n_quartets
        bra = layout.class_offsets[quartets.bra] + quartets.bra_pair[:n]
        ket = layout.class_offsets[quartets.ket] + quartets.ket_pair[:n]
        seen |= {(max(b, k), min(b, k)) for b, k in zip(bra.tolist(), ket.tolist(), strict=True)}
        assert sum(quartets.block_count) == n
    n_pairs = layout.pair_shells.shape[0]
    assert seen == {(a, b) for a in range(n_pairs) for b in range(a + 1)}


@pytest.mark.parametrize(
    ("chunk", "by_bound"),
    [(7, False), (2**22, False), (7, True)],
    ids=["rows-in-chunks", "one-chunk", "ordered-by-bound"],
)
def test_the_screened_plan_keeps_exactly_the_quartets_above_the_threshold(
    monkeypatch, chunk, by_bound
):
    monkeypatch.setattr(_eri_plan, "_COMBINATION_CHUNK", chunk)  # 7: a few bra pairs at a time
    basis = build_basis(molecule_from_name("H2O").atomic_numbers, "6-31g*")
    layout = pair_layout(basis)
    n_pairs = layout.pair_shells.shape[0]
    bound = np.random.default_rng(1).uniform(0.0, 1.0, n_pairs)  # any bounds will do
    kept = set()
    for quartets in quartet_plan(basis, bound, 0.3, by_bound=by_bound):
        n = quartets.n_quartets
        bra = layout.class_offsets[quartets.bra] + quartets.bra_pair[:n]
        ket = layout.class_offsets[quartets.ket] + quartets.ket_pair[:n]
        kept |= set(zip(bra.tolist(), ket.tolist(), strict=True))
        if by_bound:  # largest first
            assert (np.diff(bound[bra] * bound[ket]) <= 0).all()
        else:  # bra pair major
            assert (np.diff(bra) >= 0).all()
    expected = {(a, b) for a in range(n_pairs) for b in range(a + 1) if bound[a] * bound[b] >= 0.3}
    assert kept == expected and 0 < len(expected) < n_pairs * (n_pairs + 1) // 2


@pytest.mark.e2e
def test_supermatrices_give_the_dense_coulomb_and_exchange_matrices():
    _, dense = _integrals_of("H2O", "6-31g*", eri_layout="dense")
    _, packed = _integrals_of("H2O", "6-31g*", eri_layout="supermatrix")
    eri = np.asarray(dense.eri)
    density = np.random.default_rng(0).normal(size=eri.shape[:2])
    density = density + density.T
    coulomb = np.einsum("ijkl,kl->ij", eri, density)
    exchange = np.einsum("ikjl,kl->ij", eri, density)
    np.testing.assert_allclose(packed.eri.coulomb_matrix(density), coulomb, rtol=0, atol=1e-13)
    np.testing.assert_allclose(packed.eri.exchange_matrix(density), exchange, rtol=0, atol=1e-13)
    np.testing.assert_allclose(packed.eri.dense(), eri, rtol=0, atol=1e-14)


@pytest.mark.e2e
def test_small_blocks_give_the_same_integrals(monkeypatch):
    basis, reference = _integrals_of("H2O", "6-31g*", eri_layout="dense")
    monkeypatch.setattr(_eri_plan, "_BLOCK_ELEMENTS", 1)  # the smallest blocks: 256 quartets
    plan = quartet_plan(basis)
    assert max(len(q.block_count) for q in plan) > 4
    _, blocked = _integrals_of("H2O", "6-31g*", eri_layout="supermatrix", screening=0.0)
    np.testing.assert_allclose(blocked.eri.dense(), reference.eri, rtol=0, atol=1e-14)


@pytest.mark.slow
def test_screening_drops_distant_quartets_within_the_threshold():
    molecule = molecule_from_name("H2")
    shift = np.array([0.0, 0.0, 30.0])
    far = np.concatenate([molecule.coordinates, molecule.coordinates + shift])
    basis = build_basis((1, 1, 1, 1), "6-31g")
    charges = jnp.ones(4)
    screened = compute_integrals(basis, far, charges, eri_layout="supermatrix").eri.dense()
    full = compute_integrals(basis, far, charges, eri_layout="dense").eri
    keys, _, _ = _integrals.integral_plan(basis, far, _integrals.SCREENING_THRESHOLD)
    n_pairs = pair_layout(basis).pair_shells.shape[0]
    kept = sum(q.n_quartets for q in quartet_plan(basis, _bounds(basis, far), 1e-14))
    assert kept < n_pairs * (n_pairs + 1) // 2
    assert len(keys) >= 1
    np.testing.assert_allclose(screened, full, rtol=0, atol=1e-14)


@pytest.mark.e2e
def test_primitive_screening_keeps_the_integrals_and_drops_distant_primitives():
    molecule = molecule_from_name("CH4")
    basis = build_basis(molecule.atomic_numbers, "6-31g")
    coordinates = np.asarray(molecule.coordinates)
    kept = _eri_plan.primitive_selection(basis, coordinates, 1e-16)
    every = _eri_plan.primitive_selection(basis)
    assert sum(int(s.count.sum()) for s in kept) < sum(int(s.count.sum()) for s in every)
    for selection, pair_class in zip(kept, shell_pairs(basis)[0], strict=True):
        assert sorted(selection.order.tolist()) == list(range(pair_class.coef.size))
    charges = jnp.asarray(molecule.nuclear_charges)
    screened = compute_integrals(basis, coordinates, charges, eri_layout="supermatrix")
    full = compute_integrals(basis, coordinates, charges, eri_layout="dense")
    np.testing.assert_allclose(screened.eri.dense(), full.eri, rtol=0, atol=1e-13)


def _bounds(basis, coordinates):
    keys, arrays = _eri_plan_arguments(basis)
    return np.asarray(
        _integrals._schwarz_bounds(basis, jnp.asarray(coordinates), arrays, keys=keys)
    )


def _eri_plan_arguments(basis):
    from opifex.quantum._eri_engine import plan_arguments

    return plan_arguments(_eri_plan.diagonal_plan(basis), _eri_plan.primitive_selection(basis))


def test_block_counts_are_rounded_to_four_sizes_per_octave():
    assert [rounded_up(n) for n in range(9)] == list(range(9))
    assert [rounded_up(n) for n in (9, 10, 11, 13, 15, 17, 33, 1000)] == [
        10,
        10,
        12,
        14,
        16,
        20,
        40,
        1024,
    ]


@pytest.mark.e2e
def test_rhf_energy_with_supermatrices_equals_the_dense_one():
    molecule = molecule_from_name("H2O")
    energies = []
    for layout in ("dense", "supermatrix"):
        _, ints = _integrals_of("H2O", "6-31g", eri_layout=layout)
        result = run_rhf(ints, molecule.n_electrons)
        assert bool(result.converged)
        energies.append(float(result.value))
    assert abs(energies[0] - energies[1]) < 1e-11


@pytest.mark.slow
def test_large_stored_integrals_are_compiled_first_and_the_freed_heap_released(monkeypatch):
    _, reference = _integrals_of("H2O", "sto-3g", eri_layout="supermatrix")
    released = []
    monkeypatch.setattr(_integrals, "release_free_heap", lambda: released.append(1) or True)
    monkeypatch.setattr(_integrals, "_RELEASE_HEAP_MB", 0.0)  # every stored layout is "large"
    _, ints = _integrals_of("H2O", "sto-3g", eri_layout="supermatrix")
    assert len(released) == 2  # before the run (compiled already) and after it
    for ours, theirs in zip(jax.tree.leaves(ints), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_release_free_heap_gives_freed_memory_back_to_the_system():
    if _heap._malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim (not glibc)")
    resident = Path("/proc/self/statm")
    # 100 MB of 64 kB heap blocks (below glibc's mmap threshold), each followed by a small one
    # that stays: freed, they lie between live blocks, where free() does not return them
    chunks, keepers = [], []
    for _ in range(1600):
        chunks.append(bytearray(64_000))
        keepers.append(bytearray(600))
    del chunks
    before = int(resident.read_text().split()[1])
    assert _heap.release_free_heap()
    after = int(resident.read_text().split()[1])
    assert (before - after) * os.sysconf("SC_PAGE_SIZE") > 50e6


def test_unknown_layout_and_bad_screening_are_errors():
    basis = build_basis((1, 1), "sto-3g")
    xyz, charges = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]]), jnp.ones(2)
    with pytest.raises(ValueError, match="eri_layout"):
        compute_integrals(basis, xyz, charges, eri_layout="packed")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="screening"):
            compute_integrals(basis, xyz, charges, screening=bad)


@pytest.mark.e2e
def test_nuclear_gradient_through_the_blocked_engine_equals_the_dense_one():
    molecule = molecule_from_name("H2O")
    basis = build_basis(molecule.atomic_numbers, "6-31g")
    charges = jnp.asarray(molecule.nuclear_charges)

    def energy(coordinates, layout):
        ints = compute_integrals(basis, coordinates, charges, eri_layout=layout)
        return run_rhf(ints, molecule.n_electrons).value

    coordinates = jnp.asarray(molecule.coordinates)
    dense = jax.grad(energy)(coordinates, "dense")
    blocked = jax.grad(energy)(coordinates, "supermatrix")
    assert float(jnp.abs(dense).max()) > 1e-2  # not at a stationary point
    np.testing.assert_allclose(blocked, dense, rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("bra_ket", [(0, 0), (4, 1), (5, 5)], ids=str)
def test_the_fast_and_the_compact_kernels_compute_the_same_integrals(bra_ket):
    # the blocked layouts use the fast kernel, the dense path of small bases the compact one
    # (quicker to compile); classes of H2O/6-31G*: ss, ps, pp, ds, dp, dd (p and d on O only:
    # (dp|pp) is one-centre and odd, zero)
    molecule = molecule_from_name("H2O")
    basis = build_basis(molecule.atomic_numbers, "6-31g*")
    classes, _ = shell_pairs(basis)
    bra, ket = (classes[k] for k in bra_ket)
    bra_pp, ket_pp = (primitive_pairs(c, jnp.asarray(molecule.coordinates)) for c in (bra, ket))
    rng = np.random.default_rng(0)
    bra_prim = rng.integers(0, bra.coef.size, 64)
    ket_prim = rng.integers(0, ket.coef.size, 64)
    fast = primitive_quartet_integrals(bra, ket, bra_pp, ket_pp, bra_prim, ket_prim)
    compact = compact_quartet_integrals(bra, ket, bra_pp, ket_pp, bra_prim, ket_prim)
    scale = float(jnp.abs(compact).max())
    assert scale > 1e-3  # the draw holds integrals of some size
    np.testing.assert_allclose(jnp.moveaxis(fast, -1, 0), compact, rtol=0, atol=1e-14 * scale)
