"""Fixtures shared by the interface tests of every learned optimiser.

``l2o`` runs a test once per optimiser (MLP, LSTM, learnable SGD and Adam); ``problem`` is a
small separable quadratic over a pytree with a matrix, a vector and a scalar leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.l2o import (
    FeatureConfig,
    init_learnable_adam_params,
    init_learnable_sgd_params,
    init_lstm_optimizer_params,
    init_mlp_optimizer_params,
    learnable_adam,
    learnable_sgd,
    lstm_optimizer,
    mlp_optimizer,
)

_LOSS_FEATURES = FeatureConfig(use_loss=True)


def _mlp(phi, **options):
    return mlp_optimizer(phi, features=_LOSS_FEATURES, lr_scale=0.05, **options)


# name -> (phi for a seed and a dtype, the optimiser of a phi and extra options)
_OPTIMIZERS = {
    "mlp": (
        lambda seed, dtype: init_mlp_optimizer_params(
            jax.random.key(seed), features=_LOSS_FEATURES, hidden_sizes=(8,), dtype=dtype
        ),
        _mlp,
    ),
    "lstm": (
        lambda seed, dtype: init_lstm_optimizer_params(
            jax.random.key(seed), hidden_size=4, num_layers=1, dtype=dtype
        ),
        lstm_optimizer,
    ),
    "sgd": (
        lambda seed, dtype: init_learnable_sgd_params(0.05 / (1 + seed), 0.9, dtype=dtype),
        learnable_sgd,
    ),
    "adam": (
        lambda seed, dtype: init_learnable_adam_params(0.05 / (1 + seed), dtype=dtype),
        learnable_adam,
    ),
}


class L2OCase:
    """One learned optimiser: ``make`` draws ``(optimizer, phi)``, ``build(phi)`` rebuilds it."""

    def __init__(self, name):
        self.name = name
        self._make_phi, self.build = _OPTIMIZERS[name]

    def make(self, dtype=jnp.float32, seed=0):
        phi = self._make_phi(seed, dtype)
        return self.build(phi), phi


class Problem:
    """``sum over leaves of ||p - target||^2``; ``step`` counts its traces in ``traces``."""

    def __init__(self):
        self.traces = 0

    @staticmethod
    def params(dtype=jnp.float32):
        return {
            "w": jnp.arange(6.0, dtype=dtype).reshape(3, 2) / 6.0,
            "b": jnp.ones(2, dtype),
            "s": jnp.asarray(0.5, dtype),
        }

    def target(self, shift):
        return jax.tree.map(lambda p: jnp.full_like(p, shift), self.params())

    @staticmethod
    def loss(params, target):
        leaves = zip(jax.tree.leaves(params), jax.tree.leaves(target), strict=True)
        return sum(jnp.sum((p - t) ** 2) for p, t in leaves)

    def step(self, opt, params, state, target):
        self.traces += 1
        value, grads = jax.value_and_grad(self.loss)(params, target)
        updates, state = opt.update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state

    def run(self, opt, step, target, steps=2):
        params = self.params()
        state = opt.init(params)
        for _ in range(steps):
            params, state = step(params, state, target)
        return params, state


def assert_trees_close(a, b, rtol=1e-5, atol=1e-7):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.fixture(params=sorted(_OPTIMIZERS))
def l2o(request):
    return L2OCase(request.param)


@pytest.fixture
def problem():
    return Problem()


@pytest.fixture
def trees_close():
    return assert_trees_close
