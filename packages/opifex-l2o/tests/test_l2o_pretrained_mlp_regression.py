"""The shipped MLP-regression optimiser ``mlp_regression_mlp``: it loads as recorded and, on
fresh teacher-student tasks, reaches 10 % of the initial loss in fewer steps than Adam at the
learning rate the benchmark tuned (an independent plain optax loop, not opifex's runner)."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from opifex.core.families import TeacherStudentMLPFamily
from opifex.l2o import MLP_REGRESSION_MLP, load_pretrained, pretrained_names

FAMILY = TeacherStudentMLPFamily(layer_sizes=(8, 16, 4), num_points=512, batch_size=32)
NUM_STEPS = 60


def _curves(optimizer, keys):
    """Minibatch loss before each step, ``NUM_STEPS + 1`` values per task."""

    def one(key):
        task_key, init_key, batch_key = jax.random.split(key, 3)
        task = FAMILY.sample(task_key)
        params = FAMILY.init(init_key, task)

        def step(carry, i):
            params, state = carry
            loss = lambda p: FAMILY.loss(p, task, jax.random.fold_in(batch_key, i))  # noqa: E731
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grads, state, params, value=value)
            return (optax.apply_updates(params, updates), state), value

        carry = (params, optimizer.init(params))
        _, losses = jax.lax.scan(step, carry, np.arange(NUM_STEPS + 1))
        return losses

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def _steps_to_tenth(curves):
    """First step whose loss is at most 10 % of the task's initial loss (``inf``: never)."""
    reached = curves <= 0.1 * curves[:, :1]
    return np.where(reached.any(axis=1), reached.argmax(axis=1), np.inf)


@pytest.mark.slow
def test_the_shipped_mlp_regression_optimiser_is_faster_than_tuned_adam_on_fresh_tasks():
    assert "mlp_regression_mlp" in pretrained_names()
    pretrained = load_pretrained("mlp_regression_mlp")
    metadata = pretrained.metadata
    assert metadata["horizon"] == 200
    assert metadata["family"].startswith("TeacherStudentMLPFamily(layer_sizes=(8, 16, 4)")
    assert tuple(metadata["hidden_sizes"]) == MLP_REGRESSION_MLP.hidden_sizes
    assert metadata["lr_scale"] == MLP_REGRESSION_MLP.lr_scale
    keys = jax.random.split(jax.random.key(2024), 32)  # not the benchmark's or training's keys
    learned = _curves(pretrained.optimizer, keys)
    adam_lr = metadata["baseline"]["adam_learning_rate"]  # tuned by the benchmark at 200 steps
    adam = _curves(optax.adam(adam_lr), keys)
    assert np.all(np.isfinite(learned))
    learned_steps, adam_steps = _steps_to_tenth(learned), _steps_to_tenth(adam)
    assert np.all(np.isfinite(learned_steps))
    assert np.median(learned_steps) < np.median(adam_steps)
