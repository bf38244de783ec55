"""Checkpoint and resume: a run interrupted (by an exception after a periodic checkpoint, or by
``KeyboardInterrupt`` anywhere) and resumed with the same arguments ends with exactly the
same ``phi``, history, best ``phi`` and persistent unrolls as an uninterrupted run. PES with a
curriculum is used: its state (particles, accumulated perturbations, staggered counters,
Adam's state, early-stopping counters) is the largest. Checkpoints from other settings or
keys are refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import load_metadata, load_pytree
from opifex.core.families import QuadraticFamily
from opifex.core.metatrain import Curriculum, LearnedOptimizer, MetaTrainConfig, meta_train


def momentum_sgd(phi):
    return optax.sgd(jnp.exp(phi["log_lr"]), momentum=jax.nn.sigmoid(phi["momentum_logit"]))


INNER = LearnedOptimizer(QuadraticFamily(dimension=3), momentum_sgd)
PHI0 = {"log_lr": jnp.log(jnp.float32(0.01)), "momentum_logit": jnp.float32(0.0)}
CURRICULUM = Curriculum((6, 9), steps_per_stage=3)
CONFIG = MetaTrainConfig(
    estimator="pes",
    num_tasks=2,
    truncation_length=3,
    horizon=9,
    num_outer_steps=6,
    outer_learning_rate=0.05,
    pes_sigma=0.05,
    num_particles=4,
    validation_every=2,
    num_validation_tasks=2,
    patience=5,
    checkpoint_every=2,
)


def run(path, key=0, config=CONFIG, callback=None):
    return meta_train(
        jax.random.key(key),
        PHI0,
        INNER,
        config,
        curriculum=CURRICULUM,
        checkpoint_path=path,
        progress=False,
        callback=callback,
    )


def interrupt_at(step, error):
    def callback(done, metrics):
        if done == step:
            raise error

    return callback


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def assert_same_run(resumed, reference):
    assert_trees_equal(resumed.phi, reference.phi)
    assert_trees_equal(resumed.best_phi, reference.best_phi)
    assert_trees_equal(tuple(resumed.history), tuple(reference.history))
    state, expected = resumed.state, reference.state
    assert_trees_equal(state.estimator_state, expected.estimator_state)
    assert_trees_equal(state.outer_state, expected.outer_state)
    assert state.step == expected.step == 6
    assert state.best_metric == expected.best_metric
    assert state.bad_validations == expected.bad_validations


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("reference") / "run.npz")


@pytest.mark.slow
def test_resuming_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, reference):
    path = tmp_path / "run.npz"
    with pytest.raises(RuntimeError, match="crash"):
        run(path, callback=interrupt_at(3, RuntimeError("crash")))
    assert load_metadata(path)["config"]["num_outer_steps"] == 6
    assert load_pytree(path)["state"]["step"] == 2  # the periodic checkpoint before the crash
    steps = []
    resumed = run(path, callback=lambda done, metrics: steps.append(done))
    assert steps == [3, 4, 5, 6]
    assert_same_run(resumed, reference)
    assert resumed.history.horizon.tolist() == [6, 6, 6, 9, 9, 9]


@pytest.mark.e2e
def test_resuming_after_keyboard_interrupt_reproduces_the_uninterrupted_run(tmp_path, reference):
    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        run(path, callback=interrupt_at(5, KeyboardInterrupt()))
    assert load_pytree(path)["state"]["step"] == 5  # saved on the interrupt
    assert_same_run(run(path), reference)
    # a finished run resumes to itself without a step
    steps = []
    assert_same_run(run(path, callback=lambda done, metrics: steps.append(done)), reference)
    assert steps == []


def test_a_checkpoint_of_other_settings_or_keys_is_refused(tmp_path, reference):
    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        run(path, callback=interrupt_at(1, KeyboardInterrupt()))
    other = MetaTrainConfig(**{**vars(CONFIG), "outer_learning_rate": 0.1})
    with pytest.raises(ValueError, match="different config"):
        run(path, config=other)
    with pytest.raises(ValueError, match="different key"):
        run(path, key=1)
    with pytest.raises(ValueError, match="different curriculum"):
        meta_train(jax.random.key(0), PHI0, INNER, CONFIG, checkpoint_path=path)
    with pytest.raises(TypeError, match="checkpoint_path must be a path"):
        meta_train(jax.random.key(0), PHI0, INNER, CONFIG, checkpoint_path=3)
