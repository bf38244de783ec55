"""Meta-gradients: ``jax.grad`` of a 5-step unrolled loss with respect to ``phi``, for every
learned optimiser (fixtures in conftest.py), against central finite differences in float64.

The inner problem is a random quadratic (``opifex.core.families.QuadraticFamily``) plus a
matrix leaf, and a leaf the loss ignores (its gradient is exactly zero, where a careless
``sqrt`` or ``log`` would give NaN meta-gradients). The meta-loss is the sum of the inner
losses after each step; the MLP optimiser sees the loss (``value=``) as a feature, so the
meta-gradient also flows through its loss features.

Each check is a directional derivative along a random unit direction ``v`` of ``phi``:
``(L(phi + h v) - L(phi - h v)) / 2h`` with ``h = 1e-5`` (truncation error ~h^2, rounding
~1e-16 / h) must match ``<grad L, v>`` to 1e-7 of ``||grad L||`` (observed: ~1e-10).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import tree_l2_norm, tree_vdot
from opifex.core.families import QuadraticFamily

FAMILY = QuadraticFamily(dimension=3)
STEPS, H = 5, 1e-5


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _inner_loss(params, task):
    matrix = jnp.sum((params["m"] @ jnp.ones(2) - jnp.array([1.0, -1.0])) ** 2)
    return FAMILY.loss(params["theta"], task, None) + matrix  # params["unused"] is ignored


def _meta_loss(build, phi, task, params):
    opt = build(phi)
    state, total = opt.init(params), 0.0
    for _ in range(STEPS):
        value, grads = jax.value_and_grad(_inner_loss)(params, task)
        updates, state = opt.update(grads, state, params, value=value)
        params = optax.apply_updates(params, updates)
        total = total + _inner_loss(params, task)
    return total


def _random_direction(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    v = treedef.unflatten(
        [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )
    return jax.tree.map(lambda x: x / tree_l2_norm(v), v)


@pytest.mark.e2e  # 4-8 s cold per optimiser (finite differences of a meta-loss)
def test_meta_gradient_matches_finite_differences(l2o):
    _, phi = l2o.make(dtype=jnp.float64)
    task = FAMILY.sample(jax.random.key(0))
    params = {
        "theta": FAMILY.init(jax.random.key(1), task),
        "m": jnp.array([[0.3, -0.2], [0.1, 0.4]]),
        "unused": jnp.array([0.7, -1.1]),
    }
    assert task.matrix.dtype == jnp.float64
    meta = jax.jit(lambda phi: _meta_loss(l2o.build, phi, task, params))
    grad = jax.jit(jax.grad(lambda phi: _meta_loss(l2o.build, phi, task, params)))(phi)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grad))
    norm = float(tree_l2_norm(grad))
    assert norm > 1e-3  # phi matters
    for seed in range(3):
        v = _random_direction(jax.random.key(10 + seed), phi)
        plus = meta(jax.tree.map(lambda p, d: p + H * d, phi, v))
        minus = meta(jax.tree.map(lambda p, d: p - H * d, phi, v))
        finite_difference = float(plus - minus) / (2 * H)
        directional = float(tree_vdot(grad, v))
        assert abs(finite_difference - directional) <= 1e-7 * norm, (
            finite_difference,
            directional,
            norm,
        )
