"""The shipped LASSO optimiser ``lasso25x50_mlp``: it loads as recorded and, on fresh LASSO
tasks, ends lower than Adam at the learning rate the benchmark tuned (an independent plain
optax loop, not opifex's runner)."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from opifex.core.families import LassoFamily
from opifex.l2o import LASSO25X50_MLP, load_pretrained, pretrained_names

FAMILY = LassoFamily(num_rows=25, dimension=50, l1_penalty=0.005)


def _final_losses(optimizer, keys, num_steps):
    """LASSO objective after ``num_steps`` steps on each task, from ``x_0 = 0``."""

    def one(key):
        task = FAMILY.sample(key)
        params = FAMILY.init(key, task)

        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(FAMILY.loss)(params, task, None)
            updates, state = optimizer.update(grads, state, params, value=value)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, num_steps)
        return FAMILY.loss(params, task, None)

    return np.asarray(jax.jit(jax.vmap(one))(keys))


@pytest.mark.slow
def test_the_shipped_lasso_optimiser_beats_tuned_adam_on_fresh_tasks():
    assert "lasso25x50_mlp" in pretrained_names()
    pretrained = load_pretrained("lasso25x50_mlp")
    metadata = pretrained.metadata
    assert metadata["horizon"] == 1000
    assert metadata["family"] == "LassoFamily(num_rows=25, dimension=50, l1_penalty=0.005)"
    assert metadata["features"]["use_loss"] is False  # it never sees the loss, hence not f*
    assert tuple(metadata["hidden_sizes"]) == LASSO25X50_MLP.hidden_sizes
    assert metadata["lr_scale"] == LASSO25X50_MLP.lr_scale
    keys = jax.random.split(jax.random.key(2024), 32)  # not the benchmark's or training's keys
    learned = _final_losses(pretrained.optimizer, keys, 1000)
    adam_lr = metadata["baseline"]["adam_learning_rate"]  # tuned by the benchmark at 1000 steps
    adam = _final_losses(optax.adam(adam_lr), keys, 1000)
    assert np.all(np.isfinite(learned))
    assert np.median(learned) < np.median(adam)
    assert np.mean(learned <= adam) >= 0.75
