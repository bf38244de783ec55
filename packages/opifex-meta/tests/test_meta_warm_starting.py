"""WarmStartingStrategy: cropping / padding and interpolation (against
scipy.interpolate.RegularGridInterpolator and numpy.interp), the blend and the threshold,
shape-only targets, the store queries (nearest and similarity-weighted, by hand), jit / vmap
of the functional core and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.interpolate

from opifex.meta._warm_starting import (
    WARM_START_STRATEGIES,
    WarmStartingConfig,
    WarmStartingStrategy,
    resize_leaf,
    similarity_from_distance,
    target_initialization,
    transfer_params,
)

RTOL = 1e-6  # float32 arithmetic on O(1) values


def test_overlap_copies_the_shared_block_and_keeps_the_target_init_elsewhere():
    source = jnp.arange(12.0).reshape(3, 4)
    target = jnp.full((2, 5), -1.0)
    got = np.asarray(resize_leaf(source, target))
    np.testing.assert_array_equal(got[:, :4], source[:2])  # rows cropped
    np.testing.assert_array_equal(got[:, 4], [-1.0, -1.0])  # the new column: target init
    strategy = WarmStartingStrategy()
    start = strategy.initialize_from_source({"w": source}, {"w": target}, 1.0)
    np.testing.assert_array_equal(start["w"], got)


@pytest.mark.slow
def test_interpolation_matches_scipy_on_aligned_grids():
    rng = np.random.default_rng(0)
    source = rng.standard_normal((4, 6)).astype(np.float32)
    got = resize_leaf(jnp.asarray(source), jnp.zeros((7, 3)), "interpolate")
    interpolator = scipy.interpolate.RegularGridInterpolator(
        (np.linspace(0, 1, 4), np.linspace(0, 1, 6)), source.astype(np.float64)
    )
    points = np.stack(np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 3), indexing="ij"), -1)
    np.testing.assert_allclose(got, interpolator(points), rtol=1e-5, atol=1e-6)
    # 1-d against numpy.interp; a single entry is repeated
    profile = np.array([0.0, 1.0, 4.0, 9.0], np.float32)
    got_1d = resize_leaf(jnp.asarray(profile), jnp.zeros(10), "interpolate")
    expected = np.interp(np.linspace(0, 1, 10), np.linspace(0, 1, 4), profile)
    np.testing.assert_allclose(got_1d, expected, rtol=RTOL, atol=1e-6)
    np.testing.assert_array_equal(resize_leaf(jnp.ones(1), jnp.zeros(3), "interpolate"), 1.0)


def test_blend_and_threshold():
    source = {"w": jnp.array([2.0, 4.0]), "b": jnp.float32(1.0)}
    target = {"w": jnp.array([10.0, 20.0]), "b": jnp.float32(-1.0)}
    strategy = WarmStartingStrategy(similarity_threshold=0.5, transfer_fraction=0.25)
    start = strategy.initialize_from_source(source, target, 0.5)  # at the threshold: transfer
    np.testing.assert_allclose(start["w"], [0.75 * 10 + 0.25 * 2, 0.75 * 20 + 0.25 * 4])
    assert float(start["b"]) == pytest.approx(0.75 * -1 + 0.25 * 1)
    below = strategy.initialize_from_source(source, target, 0.49)
    jax.tree.map(np.testing.assert_array_equal, below, target)


def test_similarity_weighted_scales_the_fraction_by_the_similarity():
    strategy = WarmStartingStrategy("similarity_weighted", 0.0, 0.5)
    start = strategy.initialize_from_source(jnp.ones(3), jnp.zeros(3), 0.6)
    np.testing.assert_allclose(start, np.full(3, 0.5 * 0.6), rtol=RTOL)


def test_shape_targets_start_from_zeros_and_keep_their_dtype():
    source = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
    target = {"a": (4,), "b": jax.ShapeDtypeStruct((2, 3), jnp.bfloat16)}
    start = WarmStartingStrategy().initialize_from_source(source, target, 1.0)
    np.testing.assert_array_equal(start["a"], [0.0, 1.0, 2.0, 0.0])
    assert start["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(start["b"], np.float32), [[1, 1, 0], [1, 1, 0]])
    assert target_initialization(()).shape == ()  # the shape of a scalar


# ---------------------------------------------------------------- the store


def test_nearest_neighbor_uses_the_closest_stored_solution():
    strategy = WarmStartingStrategy("nearest_neighbor", similarity_threshold=0.2)
    strategy.add_solution([0.0, 0.0], jnp.full(2, 1.0))
    strategy.add_solution([3.0, 0.0], jnp.full(2, 2.0))
    strategy.add_solution([0.5, 0.0], jnp.full(3, 9.0))  # other shape: never a candidate
    [found] = strategy.query([2.0, 0.0], (2,))
    assert found.distance == pytest.approx(1.0)
    np.testing.assert_array_equal(strategy.initialize_from_store([2.0, 0.0], (2,)), [2.0, 2.0])
    # similarity 1 / (1 + 10) is below the threshold 0.2: the target init comes back
    np.testing.assert_array_equal(strategy.initialize_from_store([13.0, 0.0], (2,)), [0.0, 0.0])
    assert strategy.query([13.0, 0.0], (2,)) == []


def test_similarity_weighted_combines_the_nearest_solutions_by_similarity():
    strategy = WarmStartingStrategy(
        "similarity_weighted", similarity_threshold=0.3, transfer_fraction=0.8, num_neighbors=2
    )
    solutions = {0.0: 1.0, 1.0: 4.0, 3.0: 16.0, 10.0: 100.0}
    for descriptor, value in solutions.items():
        strategy.add_solution([descriptor], {"w": jnp.full(2, value)})
    target = {"w": jnp.array([-1.0, 1.0])}
    start = strategy.initialize_from_store([0.2], target)
    # distances 0.2, 0.8 (2.8 is within the threshold 1/0.3 - 1 but beyond num_neighbors=2)
    similarity = 1 / np.array([1.2, 1.8])
    source = (similarity @ np.array([1.0, 4.0])) / similarity.sum()
    weight = 0.8 * similarity[0]  # similarity_weighted: the nearest's similarity
    np.testing.assert_allclose(
        start["w"], (1 - weight) * np.array([-1.0, 1.0]) + weight * source, rtol=RTOL
    )
    assert [entry.distance for entry in strategy.query([0.2], target)] == pytest.approx([0.2, 0.8])


def test_store_keeps_capacity_solutions():
    strategy = WarmStartingStrategy(similarity_threshold=0.0, capacity=2)
    for i in range(3):
        strategy.add_solution([float(i)], jnp.full(1, float(i)))
    assert len(strategy.store) == 2
    assert float(strategy.query([0.0], (1,))[0].params[0]) == 1.0  # solution 0 was dropped
    assert similarity_from_distance(0.0) == 1.0
    assert WarmStartingConfig(similarity_threshold=0.25).distance_threshold == 3.0


# ---------------------------------------------------------------- functional core


CONFIG = WarmStartingConfig("similarity_weighted", similarity_threshold=0.3, resize="interpolate")


def test_jit_matches_eager_and_vmap_runs_a_batch_of_sources():
    sources = {"w": jnp.arange(12.0).reshape(3, 4)}
    target = {"w": jnp.zeros(7)}
    similarities = jnp.array([0.1, 0.5, 0.9])
    batch = jax.jit(jax.vmap(transfer_params, in_axes=(None, 0, None, 0)), static_argnums=0)(
        CONFIG, sources, target, similarities
    )
    for row, similarity in enumerate([0.1, 0.5, 0.9]):
        eager = transfer_params(CONFIG, {"w": sources["w"][row]}, target, similarity)
        np.testing.assert_allclose(batch["w"][row], eager["w"], rtol=RTOL)
    expected = 0.9 * np.interp(np.linspace(0, 1, 7), np.linspace(0, 1, 4), np.arange(8.0, 12.0))
    np.testing.assert_allclose(batch["w"][2], expected, rtol=RTOL)
    np.testing.assert_array_equal(batch["w"][0], 0.0)  # below the threshold
    # a NaN similarity (possible under jit, where it cannot be checked) transfers nothing
    jitted = jax.jit(transfer_params, static_argnums=0)
    nan_case = jitted(CONFIG, target, target, jnp.nan)
    np.testing.assert_array_equal(nan_case["w"], 0.0)
    jitted(CONFIG, target, target, 0.7)  # another similarity: no recompilation
    assert jitted._cache_size() == 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy_type": "transfer"}, ValueError, "'similarity_weighted', 'nearest_neighbor'"),
        ({"strategy_type": None}, TypeError, "strategy_type"),
        ({"resize": "cubic"}, ValueError, "'overlap', 'interpolate'"),
        ({"similarity_threshold": 1.5}, ValueError, "similarity_threshold"),
        ({"similarity_threshold": np.nan}, ValueError, "similarity_threshold"),
        ({"transfer_fraction": -0.1}, ValueError, "transfer_fraction"),
        ({"transfer_fraction": "all"}, TypeError, "transfer_fraction"),
        ({"num_neighbors": 0}, ValueError, "num_neighbors"),
        ({"capacity": 0}, ValueError, "capacity"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        WarmStartingStrategy(**kwargs)


def test_every_strategy_type_is_accepted():
    for name in WARM_START_STRATEGIES:
        assert WarmStartingStrategy(name).config.strategy_type == name


def test_bad_transfer_inputs():
    strategy = WarmStartingStrategy()
    w = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="problem_similarity"):
        strategy.initialize_from_source(w, w, np.nan)
    with pytest.raises(ValueError, match="problem_similarity"):
        strategy.initialize_from_source(w, w, 1.5)
    with pytest.raises(TypeError, match="problem_similarity"):
        strategy.initialize_from_source(w, w, "high")
    with pytest.raises(ValueError, match=r"source_params.*NaN"):
        strategy.initialize_from_source({"w": jnp.array([1.0, jnp.nan])}, w, 1.0)
    with pytest.raises(ValueError, match="same pytree structure"):
        strategy.initialize_from_source(w, {"v": jnp.ones(2)}, 1.0)
    with pytest.raises(ValueError, match=r"source_params\['w'\].*rank"):
        strategy.initialize_from_source(w, {"w": jnp.ones((2, 2))}, 1.0)
    with pytest.raises(TypeError, match="source_params"):
        strategy.initialize_from_source({"w": jnp.ones(2, jnp.int32)}, w, 1.0)
    with pytest.raises(ValueError, match="empty pytree"):
        strategy.initialize_from_source({}, {}, 1.0)
    with pytest.raises(ValueError, match="negative"):
        strategy.initialize_from_source(w, {"w": (-2,)}, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        strategy.add_solution([np.nan], w)
    with pytest.raises(ValueError, match=r"params.*NaN"):
        strategy.add_solution([1.0], {"w": jnp.array([np.inf, 0.0])})
    with pytest.raises(ValueError, match="target_shape_or_target_params"):
        strategy.initialize_from_store([1.0], {"w": jnp.array([np.nan, 0.0])})
    with pytest.raises(ValueError, match="method"):
        resize_leaf(jnp.ones(2), jnp.ones(2), "nearest")
