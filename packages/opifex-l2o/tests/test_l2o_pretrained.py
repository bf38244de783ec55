"""Pretrained learned optimisers: the shipped weights load, rebuild the optimiser they were
trained as, and beat Adam at its tuned learning rate on fresh tasks of their family (an
independent plain optax loop); ``save_pretrained`` / ``load_pretrained`` round trip; bad input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import load_metadata, load_pytree
from opifex.core.families import QuadraticFamily
from opifex.l2o import (
    FeatureConfig,
    init_mlp_optimizer_params,
    load_pretrained,
    mlp_optimizer,
    pretrained_names,
    save_pretrained,
)


def _final_losses(optimizer, family, keys, num_steps):
    """Loss after ``num_steps`` steps on each task, by a plain optax loop (no opifex runner)."""

    def one(key):
        task = family.sample(key)
        params = family.init(jax.random.fold_in(key, 1), task)

        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(family.loss)(params, task, None)
            updates, state = optimizer.update(grads, state, params, value=value)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, num_steps)
        return family.loss(params, task, None)

    return jax.jit(jax.vmap(one))(keys)


@pytest.mark.slow
def test_the_shipped_quadratic_optimiser_beats_tuned_adam_on_fresh_tasks():
    assert "quadratic10_mlp" in pretrained_names()
    pretrained = load_pretrained("quadratic10_mlp")
    assert pretrained.metadata["horizon"] == 100
    assert pretrained.metadata["meta_train"]["estimator"] == "pes"
    family = QuadraticFamily(dimension=10)
    keys = jax.random.split(jax.random.key(2024), 64)  # not the benchmark's or training's keys
    learned = np.asarray(_final_losses(pretrained.optimizer, family, keys, 100))
    adam = np.asarray(_final_losses(optax.adam(1.0), family, keys, 100))  # benchmark-tuned lr
    assert np.all(np.isfinite(learned))
    # measured: median ratio ~0.14 (benchmarks/results/l2o.json reports it on 1000 tasks)
    assert np.median(learned / adam) < 0.5


@pytest.mark.slow
def test_save_and_load_round_trip(tmp_path, monkeypatch):
    features = FeatureConfig(use_scale=True)
    phi = init_mlp_optimizer_params(jax.random.key(0), features=features, hidden_sizes=(4,))
    path = tmp_path / "toy.npz"
    save_pretrained(
        path,
        phi,
        features=features,
        hidden_sizes=(4,),
        lr_scale=0.05,
        magnitude_scale=1.0,
        metadata={"family": "toy", "horizon": 7},
    )
    metadata = load_metadata(path)
    assert metadata["kind"] == "mlp" and metadata["horizon"] == 7
    assert metadata["features"]["use_scale"] is True
    loaded = load_pytree(path, like=phi)
    for a, b in zip(jax.tree.leaves(phi), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the rebuilt optimiser takes the same step as one built by hand, loaded by path or by
    # name from the package's directory
    import opifex.l2o._pretrained as pretrained_module

    by_path = load_pretrained(path)
    assert by_path.metadata["horizon"] == 7
    monkeypatch.setattr(pretrained_module, "_directory", lambda: tmp_path)
    assert pretrained_names() == ("toy",)
    rebuilt = load_pretrained("toy").optimizer
    assert jax.tree.structure(by_path.phi) == jax.tree.structure(phi)
    direct = mlp_optimizer(phi, features=features, lr_scale=0.05, magnitude_scale=1.0)
    params, grads = jnp.linspace(-1.0, 1.0, 5), jnp.linspace(0.5, -0.5, 5)
    got, _ = rebuilt.update(grads, rebuilt.init(params), params)
    want, _ = direct.update(grads, direct.init(params), params)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match=r"unknown pretrained optimiser 'nope'.*quadratic10_mlp"):
        load_pretrained("nope")
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        load_pretrained("missing.npz")
    phi = init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=(4,))
    with pytest.raises(ValueError, match="does not fit"):
        save_pretrained(
            "unused.npz",
            phi,
            features=FeatureConfig(),
            hidden_sizes=(8,),
            lr_scale=0.1,
            magnitude_scale=1.0,
            metadata={},
        )
