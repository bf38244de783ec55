"""Learnable SGD / Adam against optax.sgd / optax.adam over 10 steps on a quadratic, the
hyperparameter maps, and bad input.

Ours runs in float32 on the quadratic; the reference is optax run in float64 on the same
gradients, and the updates agree to 1e-6 relative to the largest update of each leaf. Against
optax in float32 the tolerance is looser for Adam: with b2 = 0.999, float32 optax rounds
``1 - b2`` differently in the second moment (Python double) and in the bias correction (float32
``b2``), which puts its updates 1e-5 (relative) away from exact Adam; ours computes both from
the logit and stays within 1e-6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.families import QuadraticFamily
from opifex.l2o import (
    init_learnable_adam_params,
    init_learnable_sgd_params,
    learnable_adam,
    learnable_sgd,
)
from opifex.l2o.optimizers import LearnableAdamState, LearnableSGDState

FAMILY = QuadraticFamily(dimension=6)
TASK = FAMILY.sample(jax.random.key(0))


def _loss(params):
    return FAMILY.loss(params["theta"], TASK, None) + jnp.sum((params["bias"] - 1.0) ** 2)


def _trajectory(opt, steps=10):
    """Run ``opt`` (float32) on the quadratic; return its gradients, updates and state."""
    params = {"theta": FAMILY.init(jax.random.key(1), TASK), "bias": jnp.zeros((2, 2))}
    state, grads, updates = opt.init(params), [], []
    for _ in range(steps):
        grads.append(jax.grad(_loss)(params))
        update, state = opt.update(grads[-1], state, params)
        updates.append(update)
        params = optax.apply_updates(params, update)
    return grads, updates, state


def _replay(opt, grads, dtype):
    """``opt``'s updates for the gradient sequence ``grads``, computed in ``dtype``."""
    grads = [jax.tree.map(lambda g: jnp.asarray(g, dtype), g) for g in grads]
    state, out = opt.init(grads[0]), []
    for g in grads:
        update, state = opt.update(g, state)
        out.append(update)
    return out


def _assert_close(ours, reference, rtol):
    for u, v in zip(ours, reference, strict=True):
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
            assert a.dtype == jnp.float32
            scale = float(np.max(np.abs(b)))  # cancellation in the momentum: a scale, too
            np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=rtol, atol=rtol * scale)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lr", "b1", "b2", "eps"), [(1e-2, 0.9, 0.999, 1e-8), (0.3, 0.5, 0.9, 1e-3)]
)
def test_learnable_adam_equals_optax_adam(lr, b1, b2, eps):
    grads, ours, state = _trajectory(learnable_adam(init_learnable_adam_params(lr, b1, b2, eps)))
    with jax.enable_x64(True):
        reference = _replay(optax.adam(lr, b1, b2, eps), grads, jnp.float64)
    _assert_close(ours, reference, rtol=1e-6)
    _assert_close(ours, _replay(optax.adam(lr, b1, b2, eps), grads, jnp.float32), rtol=2e-5)
    assert isinstance(state, LearnableAdamState)
    assert state.count.dtype == jnp.int32 and int(state.count) == 10
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((state.mu, state.nu)))


@pytest.mark.parametrize(("lr", "momentum"), [(1e-3, 0.9), (0.02, 0.3)])
def test_learnable_sgd_equals_optax_sgd(lr, momentum):
    grads, ours, state = _trajectory(learnable_sgd(init_learnable_sgd_params(lr, momentum)))
    with jax.enable_x64(True):
        reference = _replay(optax.sgd(lr, momentum=momentum), grads, jnp.float64)
    _assert_close(ours, reference, rtol=1e-6)
    _assert_close(ours, _replay(optax.sgd(lr, momentum=momentum), grads, jnp.float32), rtol=1e-6)
    assert isinstance(state, LearnableSGDState)


def test_hyperparameter_maps():
    with jax.enable_x64(True):
        phi = init_learnable_adam_params(0.01, 0.8, 0.95, 1e-6, dtype=jnp.float64)
        assert phi["log_learning_rate"].dtype == jnp.float64
        np.testing.assert_allclose(np.exp(phi["log_learning_rate"]), 0.01, rtol=1e-14)
        np.testing.assert_allclose(jax.nn.sigmoid(phi["b1_logit"]), 0.8, rtol=1e-14)
        np.testing.assert_allclose(jax.nn.sigmoid(phi["b2_logit"]), 0.95, rtol=1e-14)
        np.testing.assert_allclose(np.exp(phi["log_eps"]), 1e-6, rtol=1e-14)
        phi = init_learnable_sgd_params(0.5, 0.25, dtype=jnp.float64)
        np.testing.assert_allclose(jax.nn.sigmoid(phi["momentum_logit"]), 0.25, rtol=1e-14)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: init_learnable_sgd_params(0.0), ValueError, "learning_rate"),
        (lambda: init_learnable_sgd_params(0.1, 1.0), ValueError, "momentum"),
        (lambda: init_learnable_sgd_params(0.1, 0.0), ValueError, "momentum"),
        (lambda: init_learnable_adam_params(b2=1.5), ValueError, "b2"),
        (lambda: init_learnable_adam_params(eps=-1.0), ValueError, "eps"),
        (lambda: init_learnable_adam_params(dtype=jnp.int32), TypeError, "dtype"),
        (lambda: init_learnable_adam_params(beta1=0.9), TypeError, "beta1"),
        (lambda: learnable_sgd(init_learnable_adam_params()), TypeError, "keys"),
        (lambda: learnable_adam({**init_learnable_adam_params(), "extra": 1.0}), TypeError, "keys"),
        (
            lambda: learnable_adam({**init_learnable_adam_params(), "log_eps": jnp.zeros(2)}),
            ValueError,
            r"phi\['log_eps'\] must have shape \(\)",
        ),
        (
            lambda: learnable_sgd({**init_learnable_sgd_params(), "momentum_logit": 0.5}),
            TypeError,
            "floating-point array",
        ),
        (lambda: learnable_sgd(init_learnable_sgd_params(), nesterov=True), TypeError, "nesterov"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
