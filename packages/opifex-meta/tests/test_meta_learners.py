"""The meta-learner façades against closed forms, in float64.

Tasks are quadratics ``f_c(x) = 0.5 (x - c)^T H (x - c)`` with a diagonal ``H`` and a centre
``c ~ N(MEAN, I)`` per task; the query loss is the same function (a family whose loss ignores
its key). ``K`` SGD steps of rate ``alpha`` give ``x_K - c = (I - alpha H)^K (phi - c)``, so:

* MAML, FOMAML and Reptile all have their expected meta-gradient vanish at ``phi = MEAN``;
* Meta-SGD with one step of per-coordinate rates ``r`` has expected query loss
  ``0.5 sum_i h_i (1 - r_i h_i)^2 (1 + (phi_i - MEAN_i)^2)``: zero at ``r_i = 1 / h_i``,
  whatever the start;
* the query loss of a held-out task after ``k`` steps is
  ``0.5 sum_i h_i (1 - alpha h_i)^(2k) (phi_i - c_i)^2``.

Each façade is also the ``meta_train`` run of its documented settings (bit-identical).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.metatrain import LearnedInit, MetaTrainConfig, meta_train
from opifex.meta import (
    GradientBasedMetaLearner,
    MAMLConfig,
    MAMLOptimizer,
    MetaL2OConfig,
    MetaL2OIntegration,
    MetaSGDConfig,
    ReptileConfig,
    ReptileOptimizer,
    evaluate_adaptation,
)

H = np.array([2.0, 1.0, 0.5])
MEAN = np.array([1.0, -2.0, 0.5])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@dataclasses.dataclass(frozen=True)
class Centres:
    """``0.5 sum_i h_i (x_i - c_i)^2`` with ``c ~ N(MEAN, I)``; the loss ignores its key."""

    def sample(self, key):
        return jnp.asarray(MEAN) + jax.random.normal(key, (3,), jnp.float64)

    def init(self, key, task):
        return jnp.zeros(3)

    def loss(self, params, task, key):
        return 0.5 * jnp.sum(jnp.asarray(H) * (params - task) ** 2)


FAMILY = Centres()
TRAIN = {"validation_every": 100, "num_validation_tasks": 32, "progress": False}


@pytest.mark.e2e
@pytest.mark.parametrize(
    "learner",
    [
        MAMLOptimizer(MAMLConfig(0.3, 0.05, inner_steps=2, meta_batch_size=16)),
        MAMLOptimizer(MAMLConfig(0.3, 0.05, inner_steps=2, meta_batch_size=16, second_order=False)),
        ReptileOptimizer(ReptileConfig(0.5, 0.3, inner_steps=2, meta_batch_size=16)),
        MetaL2OIntegration(optax.adam(0.1), MetaL2OConfig(0.05, inner_steps=2, meta_batch_size=16)),
    ],
    ids=["maml", "fomaml", "reptile", "adam-start"],
)
def test_learned_starts_reach_the_mean_centre(learner):
    result = learner.meta_train_family(FAMILY, jnp.zeros(3), 300, **TRAIN)
    # the expected meta-gradient vanishes at MEAN (for Adam's inner steps by symmetry of the
    # centre's noise about MEAN); |MEAN - 0| = 2.3, measured within 0.12 for all four
    np.testing.assert_allclose(learner.initialization(result.phi), MEAN, atol=0.3)
    metric = result.history.validation_metric
    assert metric[-1] < 0.5 * metric[0]


@pytest.mark.e2e
def test_meta_sgd_learns_the_inverse_curvature_as_its_rates():
    learner = GradientBasedMetaLearner(
        MetaSGDConfig(inner_learning_rate=0.1, meta_learning_rate=0.03, meta_batch_size=32)
    )
    result = learner.meta_train_family(FAMILY, jnp.zeros(3), 600, **TRAIN)
    # one step with r_i = 1 / h_i lands on any task's centre: rates (0.5, 1, 2) from 0.1
    np.testing.assert_allclose(result.phi["rates"], 1 / H, rtol=0.1)
    metric = result.history.validation_metric
    assert metric[-1] < 1e-3 * metric[0]


@pytest.mark.e2e
def test_the_facades_are_meta_train_with_their_documented_settings():
    maml = MAMLOptimizer(MAMLConfig(0.3, 0.05, inner_steps=2, meta_batch_size=4))
    result = maml.meta_train_family(
        FAMILY, jnp.zeros(3), 5, key=jax.random.key(3), validation_every=5, progress=False
    )
    config = MetaTrainConfig(
        estimator="full_backprop",
        num_tasks=4,
        horizon=2,
        truncation_length=2,
        num_outer_steps=5,
        outer_learning_rate=0.05,
        meta_loss="final_query",
        validation_metric="final_loss",
        clip_norm=None,
        validation_every=5,
        num_validation_tasks=100,
    )
    inner = LearnedInit(FAMILY, optax.sgd(0.3))
    direct = meta_train(jax.random.key(3), jnp.zeros(3), inner, config, progress=False)
    np.testing.assert_array_equal(result.phi, direct.phi)
    np.testing.assert_array_equal(result.history.meta_loss, direct.history.meta_loss)
    reptile = ReptileOptimizer(ReptileConfig(meta_batch_size=4)).train_config(7)
    assert (reptile.estimator, reptile.outer_optimizer, reptile.outer_learning_rate) == (
        "reptile",
        "sgd",
        0.1,
    )
    meta_sgd = GradientBasedMetaLearner(
        MetaSGDConfig(use_second_order=False, regularization_strength=0.01)
    ).train_config(7)
    assert (meta_sgd.estimator, meta_sgd.weight_decay) == ("first_order", 0.01)


@pytest.mark.slow
def test_evaluate_adaptation_is_the_closed_form_query_loss():
    alpha, phi = 0.3, jnp.asarray([0.5, 0.0, -1.0])
    curve = evaluate_adaptation(
        jax.random.key(0), phi, LearnedInit(FAMILY, optax.sgd(alpha)), num_tasks=40
    )
    # the held-out centres: evaluate_adaptation splits each task key in four, the first
    # draws the task
    keys = jax.random.split(jax.random.key(0), 40)
    centres = np.stack([FAMILY.sample(jax.random.split(k, 4)[0]) for k in keys])
    factor = (1 - alpha * H) ** 2
    expected = np.stack(
        [
            0.5 * np.sum(H * factor**k * (np.asarray(phi) - centres) ** 2, axis=1)
            for k in (0, 1, 10)
        ],
        axis=1,
    )
    np.testing.assert_allclose(curve.losses, expected, rtol=1e-10)
    np.testing.assert_allclose(curve.mean, expected.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(
        curve.ci95, 1.96 * expected.std(axis=0, ddof=1) / np.sqrt(40), rtol=1e-8
    )


@pytest.mark.slow
def test_adapt_on_task_arrays_is_sgd_on_the_support_loss():
    def loss_fn(w, x, y):
        return 0.5 * jnp.mean((x @ w - y) ** 2)

    x = jax.random.normal(jax.random.key(0), (10, 2), jnp.float64)
    y = x @ jnp.asarray([1.5, -0.5])
    maml = MAMLOptimizer(MAMLConfig(inner_learning_rate=0.2, inner_steps=3), loss_fn=loss_fn)
    adapted = maml.adapt(jnp.zeros(2), (x, y))
    w, xn, yn = np.zeros(2), np.asarray(x), np.asarray(y)
    for _ in range(3):  # gradient of 0.5 mean (x w - y)^2 is x^T (x w - y) / n
        w = w - 0.2 * xn.T @ (xn @ w - yn) / len(yn)
    np.testing.assert_allclose(adapted, w, rtol=1e-12)
    np.testing.assert_allclose(maml.adapt(jnp.zeros(2), (x, y), steps=0), np.zeros(2))


def test_meta_sgd_adapts_with_its_learned_rates():
    learner = GradientBasedMetaLearner(MetaSGDConfig(trajectory_length=1))
    phi = {"init": jnp.zeros(3), "rates": jnp.asarray(1 / H)}
    task = jnp.asarray([0.3, 0.2, 0.1])
    np.testing.assert_allclose(learner.adapt(phi, task, family=FAMILY), task, rtol=1e-12)


@pytest.mark.e2e
def test_meta_train_on_task_arrays_counts_epochs_in_meta_batches():
    def loss_fn(w, x, y):
        return jnp.mean((x @ w - y) ** 2)

    slopes = jax.random.normal(jax.random.key(0), (10, 2), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (10, 8, 2), jnp.float64)
    y = jnp.einsum("tnd,td->tn", x, slopes)
    maml = MAMLOptimizer(MAMLConfig(0.1, 0.01, meta_batch_size=4), loss_fn=loss_fn)
    support, query = (x[:, :4], y[:, :4]), (x[:, 4:], y[:, 4:])
    result = maml.meta_train(jnp.zeros(2), support, query, 3, progress=False)
    assert len(result.history.meta_loss) == 3 * 3  # ceil(10 / 4) meta-batches per epoch
    with pytest.raises(ValueError, match="needs the loss"):
        MAMLOptimizer().meta_train(jnp.zeros(2), support, query, 1)
    with pytest.raises(ValueError, match="same number of tasks"):
        maml.meta_train(jnp.zeros(2), support, (x[:5, 4:], y[:5, 4:]), 1)
    with pytest.raises(ValueError, match="NaN or inf"):
        maml.meta_train(jnp.zeros(2), (x[:, :4], y[:, :4] * jnp.nan), query, 1)
    with pytest.raises(ValueError, match="num_meta_epochs must be >= 1"):
        maml.meta_train(jnp.zeros(2), support, query, 0)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: MAMLConfig(inner_learning_rate=0.0), ValueError, "inner_learning_rate"),
        (lambda: MAMLConfig(inner_steps=0), ValueError, "inner_steps must be >= 1"),
        (lambda: MAMLConfig(second_order="yes"), TypeError, "second_order must be a bool"),
        (lambda: MAMLOptimizer(ReptileConfig()), TypeError, "config must be a MAMLConfig"),
        (lambda: MAMLOptimizer(loss_fn=3), TypeError, "loss_fn must be callable"),
        (lambda: ReptileConfig(task_sampling_strategy="x"), ValueError, "must be one of"),
        (lambda: ReptileConfig(meta_batch_size=0), ValueError, "meta_batch_size"),
        (lambda: MetaSGDConfig(regularization_strength=-1.0), ValueError, "regularization"),
        (lambda: MetaSGDConfig(trajectory_length=0), ValueError, "trajectory_length"),
        (lambda: MetaL2OIntegration("adam"), TypeError, "GradientTransformation"),
        (lambda: MetaL2OConfig(second_order=1), TypeError, "second_order must be a bool"),
        (
            lambda: MAMLOptimizer().meta_train_family(object(), jnp.zeros(3), 1),
            TypeError,
            "family must be a TaskFamily",
        ),
        (lambda: MAMLOptimizer().adapt(jnp.zeros(3), (1, 2)), ValueError, "needs a family"),
        (
            lambda: evaluate_adaptation(
                jax.random.key(0), jnp.zeros(3), LearnedInit(FAMILY, optax.sgd(0.1)), steps=()
            ),
            TypeError,
            "steps must be a non-empty sequence",
        ),
    ],
)
def test_bad_settings_raise_naming_the_argument(build, error, message):
    with pytest.raises(error, match=message):
        build()
