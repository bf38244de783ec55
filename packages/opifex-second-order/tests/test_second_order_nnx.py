"""Fine-tuning a tiny Flax NNX model with L-BFGS through opifex.core's NNX adapter.

Skipped when flax (an optional dependency) is missing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import opifex.core
from opifex.second_order import minimize

nnx = pytest.importorskip("flax.nnx")


class _TinyMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(1, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def _mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


@pytest.mark.slow
def test_lbfgs_fine_tunes_an_nnx_model():
    model = _TinyMLP(nnx.Rngs(0))
    x = jnp.linspace(-2.0, 2.0, 32)[:, None]
    y = jnp.sin(1.5 * x)
    graphdef, params, rest = opifex.core.split_nnx(model)
    fun = opifex.core.nnx_objective(_mse, graphdef, rest)
    initial = float(fun(params, x, y))

    result = minimize(fun, params, x, y, atol=1e-3, max_steps=300)

    assert jax.tree.structure(result.params) == jax.tree.structure(params)
    assert result.status_name in ("SUCCESS", "MAX_STEPS_REACHED", "STALLED")
    assert float(result.value) < 1e-2 * initial
    tuned = opifex.core.merge_nnx(graphdef, result.params, rest)
    np.testing.assert_allclose(float(_mse(tuned, x, y)), float(result.value), rtol=1e-4)
    # the original model is untouched
    assert float(_mse(model, x, y)) == pytest.approx(initial, rel=1e-6)
