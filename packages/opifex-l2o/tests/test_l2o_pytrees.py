"""Every learned optimiser (fixtures in conftest.py) on different parameter pytrees: float32
stays float32 (even with a float64 ``phi``), Flax NNX parameters, and bad input (empty or
integer parameters, mismatched gradients, unknown options)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import opifex.core


@pytest.mark.slow
def test_float32_stays_float32_with_a_float64_phi(l2o, problem):
    with jax.enable_x64(True):
        opt, phi = l2o.make(dtype=jnp.float64)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(phi))
        step = jax.jit(lambda p, s, t: problem.step(opt, p, s, t))
        params, state = problem.run(opt, step, problem.target(2.0))
        leaves = jax.tree.leaves((params, state))
        assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in leaves)
        assert any(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state))


@pytest.mark.slow
def test_trains_flax_nnx_parameters(l2o):
    nnx = pytest.importorskip("flax.nnx")

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(2, 4, rngs=rngs)
            self.out = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(jnp.tanh(self.hidden(x)))

    graphdef, params, rest = opifex.core.split_nnx(Tiny(nnx.Rngs(0)))
    fun = opifex.core.nnx_objective(
        lambda model, x, y: jnp.mean((model(x) - y) ** 2), graphdef, rest
    )
    x = jnp.linspace(-1.0, 1.0, 16).reshape(8, 2)
    y = jnp.sin(x[:, :1])
    opt, _ = l2o.make()

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(fun)(params, x, y)
        updates, state = opt.update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    new = params
    for _ in range(3):
        new, state = step(new, state)
    assert jax.tree.structure(new) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params), strict=True):
        assert a.shape == b.shape and a.dtype == jnp.float32
        assert np.all(np.isfinite(a)) and not np.array_equal(a, b)
    assert opifex.core.merge_nnx(graphdef, new, rest)(x).shape == (8, 1)


def test_bad_input(l2o, problem):
    opt, phi = l2o.make()
    with pytest.raises(ValueError, match="empty pytree"):
        opt.init({})
    with pytest.raises(TypeError, match="floating-point"):
        opt.init({"w": jnp.ones(3, jnp.int32)})
    params = problem.params()
    state = opt.init(params)
    bad = {**params, "w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="same pytree structure"):
        opt.update(bad, state, params, value=jnp.float32(1.0))
    with pytest.raises(TypeError, match="not_an_option"):
        l2o.build(phi, not_an_option=1.0)
