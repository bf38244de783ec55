"""The ``log_mean`` and ``final_query`` meta-losses, against hand-written references."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.metatrain import (
    LearnedOptimizer,
    MetaTrainConfig,
    UnrollOutput,
    full_backprop,
    pes,
    truncated_bptt,
    truncated_es,
    truncation_meta_loss,
)

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


INNER = LearnedOptimizer(FixedQuadratic(), _toy_sgd)


def reference_losses(phi, num_steps):
    """Loss after each step of the SGD recursion ``x <- x (1 - lr a)``."""
    x, losses = X0, []
    for _ in range(num_steps):
        x = x * (1.0 - jnp.exp(phi["log_lr"]) * A)
        losses.append(0.5 * jnp.sum(A * x**2))
    return jnp.stack(losses)


def reference_log_mean(phi, num_steps):
    """Mean over steps of log(loss after the step)."""
    return jnp.mean(jnp.log(reference_losses(phi, num_steps)))


def test_truncation_meta_loss_log_mean_and_final_query():
    out = UnrollOutput(jnp.array([4.0, 0.5, 2.0]), jnp.zeros(3, bool))
    np.testing.assert_allclose(truncation_meta_loss(out, "log_mean"), np.log(4.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(truncation_meta_loss(out), 6.5 / 3, rtol=1e-6)
    # final_query: the query loss of each unroll that ends in the truncation (two here)
    ended = jnp.array([False, True, True])
    out = out._replace(ended=ended, query_losses=jnp.array([7.0, 3.0, 5.0]))
    np.testing.assert_allclose(truncation_meta_loss(out, "final_query"), 8.0)


@pytest.mark.slow
def test_final_query_gradients_of_truncated_and_whole_unrolls():
    phi = {"log_lr": jnp.log(jnp.float32(0.12))}
    horizon = 8
    final = jax.value_and_grad(lambda p: reference_losses(p, horizon)[-1])(phi)
    for estimator in (
        truncated_bptt(INNER, horizon, meta_loss="final_query"),  # one truncation: exact
        full_backprop(INNER, horizon, meta_loss="final_query"),
    ):
        state = estimator.init(jax.random.key(0), phi, 1, horizon)
        grad, _, info = estimator.estimate(jax.random.key(1), phi, state, horizon)
        np.testing.assert_allclose(info.meta_loss, final[0], rtol=1e-5)
        np.testing.assert_allclose(grad["log_lr"], final[1]["log_lr"], rtol=1e-4)
    # truncations of 4: the first has no final loss (zero gradient); the second sees only
    # its own 4 steps (truncation bias): d/dlog_lr of the loss of x4 (1 - lr a)^4, x4 fixed
    estimator = truncated_bptt(INNER, 4, meta_loss="final_query")
    state = estimator.init(jax.random.key(0), phi, 1, horizon)
    first, state, info = estimator.estimate(jax.random.key(1), phi, state, horizon)
    assert first["log_lr"] == 0 and info.meta_loss == 0
    second, _, info = estimator.estimate(jax.random.key(2), phi, state, horizon)
    x4 = X0 * (1.0 - 0.12 * A) ** 4

    def last_four(p):
        x = x4 * (1.0 - jnp.exp(p["log_lr"]) * A) ** 4
        return 0.5 * jnp.sum(A * x**2)

    np.testing.assert_allclose(info.meta_loss, final[0], rtol=1e-5)
    np.testing.assert_allclose(second["log_lr"], jax.grad(last_four)(phi)["log_lr"], rtol=1e-4)
    assert abs(second["log_lr"] - final[1]["log_lr"]) > 0.2 * abs(final[1]["log_lr"])


def test_truncated_bptt_log_mean_is_exact_gradient_over_the_full_horizon():
    phi = {"log_lr": jnp.log(jnp.float32(0.12))}
    horizon = 8
    estimator = truncated_bptt(INNER, horizon, meta_loss="log_mean")
    state = estimator.init(jax.random.key(0), phi, 1, horizon)
    grad, _, info = estimator.estimate(jax.random.key(1), phi, state, horizon)
    expected = jax.value_and_grad(reference_log_mean)(phi, horizon)
    np.testing.assert_allclose(info.meta_loss, expected[0], rtol=1e-5)
    np.testing.assert_allclose(grad["log_lr"], expected[1]["log_lr"], rtol=1e-4)


def test_truncated_es_reports_the_log_mean_meta_loss():
    phi = {"log_lr": jnp.log(jnp.float32(0.05))}
    estimator = truncated_es(INNER, 5, sigma=0.01, num_particles=4, meta_loss="log_mean")
    state = estimator.init(jax.random.key(0), phi, 1, 20)
    _, _, info = estimator.estimate(jax.random.key(1), phi, state, 20)
    np.testing.assert_allclose(info.meta_loss, reference_log_mean(phi, 5), rtol=1e-5)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: truncated_bptt(INNER, 5, meta_loss=m),
        lambda m: pes(INNER, 5, sigma=0.1, num_particles=2, meta_loss=m),
        lambda m: truncated_es(INNER, 5, sigma=0.1, num_particles=2, meta_loss=m),
        lambda m: full_backprop(INNER, 5, meta_loss=m),
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
        truncated_bptt(INNER, 5, meta_loss=None)
