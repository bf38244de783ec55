"""The meta-training loop: it is the documented loop (estimator, clipping, Adam, per-step
keys), every estimator meta-trains a learning rate to its closed-form optimum, non-finite
tasks are reset and counted and non-finite steps skipped and counted, early stopping with its
patience reset at curriculum promotions, progress bar and logging (never print), bad input."""

from __future__ import annotations

import dataclasses
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.families import QuadraticFamily
from opifex.core.metatrain import (
    Curriculum,
    LearnedOptimizer,
    MetaTrainConfig,
    MetaTrainResult,
    meta_train,
    truncated_bptt,
)

LOGGER = "opifex.core.metatrain._meta_train"

SCALE = 2.0
PHI0 = {"log_lr": jnp.asarray(np.log(0.05), jnp.float32)}


@dataclasses.dataclass(frozen=True)
class Bowl:
    """``0.5 * scale * |x|^2`` from a random start; with probability ``blowup`` the scale is
    ``1e30`` instead, and any step overflows. SGD with learning rate ``1 / scale`` solves a
    task in one step, so it minimises every truncation's meta-loss: ``log_lr* = -log(scale)``.
    """

    blowup: float = 0.0

    def sample(self, key):
        start_key, blowup_key = jax.random.split(key)
        scale = jnp.where(jax.random.uniform(blowup_key) < self.blowup, 1e30, SCALE)
        return {"x0": jax.random.normal(start_key, (2,)), "scale": scale}

    def init(self, key, task):
        return task["x0"]

    def loss(self, params, task, key):
        return 0.5 * task["scale"] * jnp.sum(params**2)


def sgd(phi):
    """Plain SGD with a learnable log learning rate."""
    return optax.sgd(jnp.exp(phi["log_lr"]))


def config(**overrides):
    settings = {
        "estimator": "truncated_bptt",
        "num_tasks": 4,
        "truncation_length": 5,
        "horizon": 10,
        "num_outer_steps": 100,
        "outer_learning_rate": 0.05,
        "clip_norm": 10.0,
        "pes_sigma": 0.1,
        "num_particles": 8,
        "validation_every": 25,
        "num_validation_tasks": 4,
    }
    return MetaTrainConfig(**{**settings, **overrides})


def train(family=Bowl(), make_optimizer=sgd, phi=PHI0, key=0, **kwargs):
    options = {k: kwargs.pop(k) for k in ("curriculum", "callback", "progress") if k in kwargs}
    options.setdefault("progress", False)
    inner = LearnedOptimizer(family, make_optimizer)
    return meta_train(jax.random.key(key), phi, inner, config(**kwargs), **options)


@pytest.mark.slow
@pytest.mark.parametrize(
    "estimator",
    [
        *[pytest.param(name, marks=pytest.mark.e2e) for name in ("truncated_bptt", "pes")],
        pytest.param("truncated_es", marks=pytest.mark.e2e),
        "full_backprop",
        "first_order",
    ],
)
def test_every_estimator_meta_trains_the_learning_rate_to_its_optimum(estimator):
    result = train(estimator=estimator)
    assert isinstance(result, MetaTrainResult)
    # closed form: log_lr* = -log(2); measured within 0.03 for every estimator after 100 steps
    np.testing.assert_allclose(result.phi["log_lr"], -np.log(SCALE), atol=0.1)
    metric = result.history.validation_metric
    assert result.history.validation_step.tolist() == [0, 25, 50, 75, 100]
    assert metric[-1] < 1e-2 * metric[0]
    assert result.history.num_skipped_steps == 0 and result.history.num_nonfinite_resets == 0
    assert len(result.history.meta_loss) == 100 and np.all(np.isfinite(result.history.meta_loss))


@pytest.mark.slow
def test_meta_train_is_the_loop_of_estimator_clipping_and_adam_with_per_step_keys():
    result = train(num_outer_steps=3, clip_norm=0.5, validation_every=3, key=3)
    key = jax.random.key(3)
    estimator = truncated_bptt(LearnedOptimizer(Bowl(), sgd), 5)
    outer = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.05))
    phi, outer_state = PHI0, outer.init(PHI0)
    state = estimator.init(jax.random.fold_in(key, 0), phi, 4, 10)
    estimate = jax.jit(estimator.estimate)
    for s in range(3):
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1), s)
        grad, state, info = estimate(step_key, phi, state, 10)
        np.testing.assert_allclose(result.history.meta_loss[s], info.meta_loss, rtol=1e-5)
        np.testing.assert_allclose(result.history.grad_norm[s], optax.tree.norm(grad), rtol=1e-5)
        updates, outer_state = outer.update(grad, outer_state, phi)
        phi = optax.apply_updates(phi, updates)
    assert result.history.grad_norm.max() > 0.5  # the clipping was active
    np.testing.assert_allclose(result.phi["log_lr"], phi["log_lr"], rtol=1e-5)
    np.testing.assert_allclose(result.state.estimator_state.params, state.params, rtol=1e-5)


@pytest.mark.slow
def test_non_finite_tasks_are_reset_and_counted(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = train(Bowl(blowup=0.3), estimator="pes", num_outer_steps=20, validation_every=20)
    history = result.history
    assert history.num_nonfinite_resets == history.nonfinite_tasks.sum() > 0
    # a step is skipped exactly when every task failed
    np.testing.assert_array_equal(history.skipped, history.nonfinite_tasks == 4)
    assert np.all(np.isfinite(history.meta_loss[~history.skipped]))
    assert np.isfinite(result.phi["log_lr"]) and result.phi["log_lr"] > PHI0["log_lr"]
    # the failed tasks of the last step wait for their reset; all others are finite
    state = result.state.estimator_state
    pending = np.asarray(state.step) == 10
    assert pending.sum() >= history.nonfinite_tasks[-1]
    assert np.all(np.isfinite(np.asarray(state.params)[~pending]))
    assert "non-finite, reset" in caplog.text


@pytest.mark.slow
def test_non_finite_meta_gradients_skip_the_outer_step_and_are_counted(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = train(Bowl(blowup=1.0), num_outer_steps=4, validation_every=2)
    history = result.history
    assert history.skipped.tolist() == [True] * 4 and history.num_skipped_steps == 4
    assert history.nonfinite_tasks.tolist() == [4] * 4 and history.num_nonfinite_resets == 16
    assert np.all(np.isnan(history.meta_loss))
    np.testing.assert_array_equal(result.phi["log_lr"], PHI0["log_lr"])  # untouched
    np.testing.assert_array_equal(result.state.outer_state[1][0].count, 0)  # Adam's too
    np.testing.assert_array_equal(result.best_phi["log_lr"], PHI0["log_lr"])
    assert "step skipped" in caplog.text


def constant_sgd(phi):
    """An optimiser that ignores ``phi``: the meta-gradient is zero, the metric constant."""
    del phi
    return optax.sgd(0.05, momentum=0.5)


@pytest.mark.slow
@pytest.mark.parametrize(("curriculum", "stop"), [(None, 2), (Curriculum((5, 10), 2), 3)])
def test_early_stopping_counts_validations_without_improvement(curriculum, stop):
    phi = {"unused": jnp.zeros(())}
    result = train(
        QuadraticFamily(dimension=2),
        constant_sgd,
        phi,
        num_outer_steps=10,
        validation_every=1,
        patience=2,
        curriculum=curriculum,
    )
    # validation 0 is the best; each later one ties it (no improvement); the promotion at
    # step 2 restarts the count
    assert result.state.stopped_early and result.state.step == stop
    assert len(result.history.meta_loss) == stop
    metric = result.history.validation_metric
    assert len(metric) == stop + 1 and np.all(metric == metric[0])
    if curriculum is not None:
        assert result.history.horizon.tolist() == [5, 5, 10]


@pytest.mark.slow
def test_best_phi_is_the_phi_of_the_best_validation():
    seen = {}

    def callback(step, metrics):
        seen[step] = metrics

    result = train(
        num_outer_steps=6, validation_every=2, outer_learning_rate=0.3, callback=callback
    )
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]
    assert set(seen[1]) == {"meta_loss", "grad_norm", "skipped", "nonfinite_tasks", "horizon"}
    assert seen[2]["validation_metric"] == result.history.validation_metric[1]
    best = int(np.argmin(result.history.validation_metric))
    # rerun up to the best validation's step: its phi is best_phi
    steps = int(result.history.validation_step[best])
    if steps:
        again = train(num_outer_steps=steps, validation_every=2, outer_learning_rate=0.3)
        np.testing.assert_array_equal(result.best_phi["log_lr"], again.phi["log_lr"])
    assert result.state.best_metric == result.history.validation_metric.min()


def test_progress_bar_and_logging_never_print(capsys, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        train(num_outer_steps=2, validation_every=1, progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert "meta-train" in out.err and "meta_loss=" in out.err  # tqdm, on stderr
    assert "validation mean_loss" in caplog.text and "meta-training with" in caplog.text
    train(num_outer_steps=2, validation_every=1, progress=False)
    out = capsys.readouterr()
    assert out.out == "" and "meta-train" not in out.err


def test_meta_train_rejects_bad_arguments():
    good = config(num_outer_steps=1)
    key = jax.random.key(0)
    inner = LearnedOptimizer(Bowl(), sgd)
    with pytest.raises(TypeError, match="config must be a MetaTrainConfig"):
        meta_train(key, PHI0, inner, {"estimator": "pes"})
    with pytest.raises(TypeError, match="inner must be an InnerLoop"):
        meta_train(key, PHI0, Bowl(), good)
    with pytest.raises(TypeError, match="phi"):
        meta_train(key, {"log_lr": jnp.int32(1)}, inner, good)
    with pytest.raises(ValueError, match="phi"):
        meta_train(key, {"log_lr": jnp.asarray(jnp.nan)}, inner, good)
    with pytest.raises(ValueError, match="empty pytree"):
        meta_train(key, {}, inner, good)
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint_path"):
        meta_train(key, PHI0, inner, config(checkpoint_every=1))
    with pytest.raises(ValueError, match=r"\[truncation_length, horizon\] = \[5, 10\], got \[20\]"):
        meta_train(key, PHI0, inner, good, curriculum=Curriculum((5, 20), 1))
    whole = config(estimator="full_backprop", num_outer_steps=1)
    with pytest.raises(ValueError, match=r"\[1, horizon\] = \[1, 10\], got \[20\]"):
        meta_train(key, PHI0, inner, whole, curriculum=Curriculum((2, 20), 1))
    with pytest.raises(TypeError, match="curriculum must be a Curriculum"):
        meta_train(key, PHI0, inner, good, curriculum=(5, 10))
    with pytest.raises(TypeError, match="callback must be callable"):
        meta_train(key, PHI0, inner, good, callback=1)
    device = jax.devices()[0]
    with pytest.raises(ValueError, match=r"num_tasks \(4\) must be divisible by the number of"):
        meta_train(key, PHI0, inner, good, devices=[device] * 3)
    with pytest.raises(ValueError, match="devices must not be empty"):
        meta_train(key, PHI0, inner, good, devices=[])


def test_chunks_of_many_steps_give_the_results_of_one_step_at_a_time(caplog):
    # without a callback the steps run in compiled chunks; with one, a step at a time
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        chunked = train(num_outer_steps=40, validation_every=20)
    lengths = [
        int(b) - int(a) + 1 for a, b in re.findall(r"steps (\d+)-(\d+): one chunk", caplog.text)
    ]
    assert sum(lengths) == 40 and max(lengths) > 1
    assert all(n <= 20 for n in lengths)  # no chunk runs past a validation
    caplog.clear()
    steps = []
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        single = train(
            num_outer_steps=40, validation_every=20, callback=lambda s, m: steps.append(s)
        )
    assert steps == list(range(1, 41)) and caplog.text.count("one chunk") == 40
    np.testing.assert_array_equal(chunked.phi["log_lr"], single.phi["log_lr"])
    for a, b in zip(chunked.history, single.history, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_progress_function_is_called_after_each_chunk_instead_of_the_bar(capsys):
    calls = []
    train(num_outer_steps=40, validation_every=20, progress=lambda *a: calls.append(a))
    done = [c[0] for c in calls]
    assert done[-1] == 40 and done == sorted(done) and len(done) < 40  # chunks, not steps
    assert {c[1] for c in calls} == {40} and "meta_loss" in calls[-1][2]
    assert "meta-train" not in capsys.readouterr().err  # no tqdm bar


@pytest.mark.e2e  # ~3-4 s cold (compilation), more on a busy machine
def test_float32_meta_parameters_stay_float32_when_float64_is_on():
    # the tasks draw float64 arrays under x64, so the meta-gradient is float64: phi, Adam's
    # state and the unrolls keep the dtypes they started with
    with jax.enable_x64(True):
        result = train(estimator="pes", num_outer_steps=3, validation_every=3)
    assert result.phi["log_lr"].dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(result.state.outer_state)} <= {
        jnp.dtype("float32"),
        jnp.dtype("int32"),
    }
