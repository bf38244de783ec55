"""``WarmStartStore``: the nearest stored solution of the same structure within the threshold,
the oldest dropped first, and clear errors for bad capacities, thresholds and descriptors."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core.metatrain import WarmStartStore
from opifex.core.metatrain._warm_start import check_descriptor


def test_store_returns_the_nearest_solution_within_the_threshold():
    store = WarmStartStore(capacity=3, threshold=1.0)
    store.add([0.0, 0.0], jnp.zeros(2))
    store.add([0.5, 0.0], jnp.ones(2))
    store.add([0.0, 0.9], {"w": jnp.ones(2)})  # another structure: never a candidate
    found = store.nearest([0.4, 0.1], jnp.zeros(2))
    np.testing.assert_array_equal(found.params, jnp.ones(2))
    assert found.distance == pytest.approx(np.hypot(0.1, 0.1))
    assert store.nearest([3.0, 0.0], jnp.zeros(2)) is None
    assert store.nearest([0.0, 0.0, 0.0], jnp.zeros(2)) is None  # other descriptor length
    assert store.nearest([0.0, 0.0], jnp.zeros(3)) is None  # other shapes


def test_store_drops_the_oldest_first():
    store = WarmStartStore(capacity=2, threshold=10.0)
    for i in range(3):
        store.add([float(i)], jnp.full(1, float(i)))
    assert len(store) == 2
    assert float(store.nearest([0.0], jnp.zeros(1)).params[0]) == 1.0


def test_store_errors():
    with pytest.raises(ValueError, match="capacity"):
        WarmStartStore(0, 1.0)
    with pytest.raises(ValueError, match="threshold"):
        WarmStartStore(2, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        check_descriptor([1.0, np.nan])
    with pytest.raises(ValueError, match="1-d"):
        check_descriptor([[1.0]])
    with pytest.raises(TypeError, match="numbers"):
        check_descriptor(["a"])


def test_neighbors_are_the_k_nearest_within_the_threshold_in_order():
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(12, 3))
    store = WarmStartStore(capacity=12, threshold=1.5)
    for i, d in enumerate(descriptors):
        store.add(d, jnp.full(2, float(i)))
    query = np.zeros(3)
    distances = np.linalg.norm(descriptors, axis=1)
    expected = [i for i in np.argsort(distances, kind="stable") if distances[i] <= 1.5][:4]
    found = store.neighbors(query, jnp.zeros(2), k=4)
    assert [int(w.params[0]) for w in found] == expected
    np.testing.assert_allclose([w.distance for w in found], distances[expected])
    assert store.nearest(query, jnp.zeros(2)).distance == found[0].distance
    assert store.neighbors(query, jnp.zeros(3), k=4) == []  # another shape
    with pytest.raises(ValueError, match="k must be >= 1"):
        store.neighbors(query, jnp.zeros(2), k=0)
