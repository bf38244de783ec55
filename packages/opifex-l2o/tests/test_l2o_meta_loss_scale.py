"""The ``log_mean`` meta-loss and the ``use_scale`` features, against hand-written references."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.l2o import FeatureConfig, MetaTrainConfig, truncation_meta_loss
from opifex.l2o._features import init_features, update_features
from opifex.l2o._pes import pes
from opifex.l2o._truncated_bptt import truncated_bptt
from opifex.l2o._truncated_es import truncated_es
from opifex.l2o._unroll import UnrollOutput

A = jnp.array([1.0, 10.0])
X0 = jnp.array([1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class FixedQuadratic:
    """``0.5 * sum(a * x^2)`` from ``x0``, whatever the keys."""

    def sample(self, key):
        return {"a": A}

    def init(self, key, task):
        return X0

    def loss(self, params, task, key):
        return 0.5 * jnp.sum(task["a"] * params**2)


def _toy_sgd(phi):
    """SGD with step size ``exp(phi['log_lr'])``."""

    def update(grads, state, params=None, **extra):
        return jax.tree.map(lambda g: -jnp.exp(phi["log_lr"]) * g, grads), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def reference_log_mean(phi, num_steps):
    """Mean over steps of log(loss after the step), SGD recursion ``x <- x (1 - lr a)``."""
    x, logs = X0, []
    for _ in range(num_steps):
        x = x * (1.0 - jnp.exp(phi["log_lr"]) * A)
        logs.append(jnp.log(0.5 * jnp.sum(A * x**2)))
    return jnp.mean(jnp.stack(logs))


def test_truncation_meta_loss_log_mean():
    out = UnrollOutput(jnp.array([4.0, 0.5, 2.0]), jnp.zeros(3, bool))
    np.testing.assert_allclose(truncation_meta_loss(out, "log_mean"), np.log(4.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(truncation_meta_loss(out), 6.5 / 3, rtol=1e-6)


def test_truncated_bptt_log_mean_is_exact_gradient_over_the_full_horizon():
    phi = {"log_lr": jnp.log(jnp.float32(0.12))}
    horizon = 8
    estimator = truncated_bptt(FixedQuadratic(), _toy_sgd, horizon, meta_loss="log_mean")
    state = estimator.init(jax.random.key(0), phi, 1, horizon)
    grad, _, info = estimator.estimate(jax.random.key(1), phi, state, horizon)
    expected = jax.value_and_grad(reference_log_mean)(phi, horizon)
    np.testing.assert_allclose(info.meta_loss, expected[0], rtol=1e-5)
    np.testing.assert_allclose(grad["log_lr"], expected[1]["log_lr"], rtol=1e-4)


def test_truncated_es_reports_the_log_mean_meta_loss():
    phi = {"log_lr": jnp.log(jnp.float32(0.05))}
    estimator = truncated_es(
        FixedQuadratic(), _toy_sgd, 5, sigma=0.01, num_particles=4, meta_loss="log_mean"
    )
    state = estimator.init(jax.random.key(0), phi, 1, 20)
    _, _, info = estimator.estimate(jax.random.key(1), phi, state, 20)
    np.testing.assert_allclose(info.meta_loss, reference_log_mean(phi, 5), rtol=1e-5)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: truncated_bptt(FixedQuadratic(), _toy_sgd, 5, meta_loss=m),
        lambda m: pes(FixedQuadratic(), _toy_sgd, 5, sigma=0.1, num_particles=2, meta_loss=m),
        lambda m: truncated_es(
            FixedQuadratic(), _toy_sgd, 5, sigma=0.1, num_particles=2, meta_loss=m
        ),
        lambda m: MetaTrainConfig(meta_loss=m),
        lambda m: truncation_meta_loss(UnrollOutput(jnp.ones(2), jnp.zeros(2, bool)), m),
    ],
)
def test_bad_meta_loss_raises(build):
    with pytest.raises(ValueError, match="meta_loss"):
        build("sum")


def test_meta_loss_must_be_a_string():
    with pytest.raises(TypeError, match="meta_loss"):
        MetaTrainConfig(meta_loss=1)
    with pytest.raises(TypeError, match="meta_loss"):
        truncated_bptt(FixedQuadratic(), _toy_sgd, 5, meta_loss=None)


def test_scale_features_restore_the_raw_values():
    config = FeatureConfig(use_scale=True)
    plain = FeatureConfig()
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    g = {"w": jnp.array([3.0, -4.0, 12.0])}
    feats, _ = update_features(config, g, init_features(config, params), params)
    base, _ = update_features(plain, g, init_features(plain, params), params)
    names = config.feature_names
    f = dict(zip(names, jnp.moveaxis(feats["w"], -1, 0), strict=True))
    # Without the scale features, the rest is what the plain configuration gives.
    kept = [i for i, n in enumerate(names) if not n.startswith("log_scale_")]
    np.testing.assert_allclose(feats["w"][:, kept], base["w"], rtol=1e-6)
    # normalised feature * exp(scale) = the raw value (first step from zero accumulators).
    raw = {"grad": g["w"], "param": params["w"], "momentum_0.9": 0.1 * g["w"]}
    for name, value in raw.items():
        np.testing.assert_allclose(f[name] * jnp.exp(f[f"log_scale_{name}"]), value, rtol=1e-5)
        np.testing.assert_allclose(
            f[f"log_scale_{name}"], jnp.log(jnp.sqrt(jnp.mean(value**2))), rtol=1e-5
        )
    assert config.num_features == plain.num_features + 16


def test_scale_features_track_the_gradient_scale():
    config = FeatureConfig(use_scale=True)
    params = {"w": jnp.ones(4)}
    g = jnp.array([1.0, -2.0, 0.5, 3.0])
    i = config.feature_names.index("log_scale_grad")
    logs = [
        update_features(config, {"w": c * g}, init_features(config, params), params)[0]["w"][0, i]
        for c in (1.0, 100.0)
    ]
    np.testing.assert_allclose(logs[1] - logs[0], np.log(100.0), rtol=1e-5)


def test_use_scale_must_be_a_bool():
    with pytest.raises(TypeError, match="use_scale"):
        FeatureConfig(use_scale=1)
