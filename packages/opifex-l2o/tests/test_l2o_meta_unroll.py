"""Unrolled inner optimisation against hand-written optax loops: the recorded losses (after
each update), resets at the horizon (a new task and a fresh start, mid-truncation), staggered
batches, jit (no retrace for a new horizon or phi) and vmap (same numbers as a loop)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core.families import QuadraticFamily
from opifex.l2o import init_learnable_sgd_params, learnable_sgd
from opifex.l2o._unroll import (
    UnrollOutput,
    UnrollState,
    init_unroll,
    init_unrolls,
    truncation_meta_loss,
    unroll,
)

QUADRATIC = QuadraticFamily(dimension=4)
PHI = init_learnable_sgd_params(0.02, 0.5)


@dataclasses.dataclass(frozen=True)
class Centers:
    """``||x - c||^2`` with a random centre ``c``, always started from ``x = 0``."""

    def sample(self, key):
        return {"center": jax.random.normal(key, (3,))}

    def init(self, key, task):
        return jnp.zeros(3)

    def loss(self, params, task, key):
        return jnp.sum((params - task["center"]) ** 2)


def reference(family, params, task, num_steps, learning_rate=0.02, momentum=0.5):
    """optax.sgd's losses after each step and final parameters."""
    opt = optax.sgd(learning_rate, momentum=momentum)
    opt_state, losses = opt.init(params), []
    for _ in range(num_steps):
        grads = jax.grad(family.loss)(params, task, None)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(family.loss(params, task, None))
    return np.array(losses), params


def run(key, state, num_steps, horizon, family=QUADRATIC, phi=PHI):
    kwargs = {"family": family, "make_optimizer": learnable_sgd}
    return unroll(key, phi, state, num_steps=num_steps, horizon=horizon, **kwargs)


def test_unroll_records_the_loss_after_each_update_and_persists_its_state():
    state = init_unroll(jax.random.key(0), PHI, QUADRATIC, learnable_sgd)
    assert int(state.step) == 0 and state.params.shape == (4,)
    expected_losses, expected_params = reference(QUADRATIC, state.params, state.task, 8)
    # two truncations of 4 steps continue where the first stopped (momentum included)
    mid, out1 = run(jax.random.key(1), state, 4, 100)
    end, out2 = run(jax.random.key(2), mid, 4, 100)
    losses = np.concatenate([out1.losses, out2.losses])
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
    np.testing.assert_allclose(end.params, expected_params, rtol=1e-5, atol=1e-7)
    assert int(end.step) == 8 and not np.any(out1.restarted | out2.restarted)
    np.testing.assert_allclose(truncation_meta_loss(out2), expected_losses[4:].mean(), rtol=1e-5)


def test_an_unroll_at_its_horizon_restarts_on_a_new_task_mid_truncation():
    family = Centers()
    state = init_unroll(jax.random.key(0), PHI, family, learnable_sgd)
    end, out = run(jax.random.key(1), state, 5, 3, family=family)
    assert out.restarted.tolist() == [False, False, False, True, True]
    assert int(end.step) == 2
    old_losses, _ = reference(family, state.params, state.task, 3)
    np.testing.assert_allclose(out.losses[:3], old_losses, rtol=1e-5)
    assert not np.allclose(end.task["center"], state.task["center"])  # a new task
    new_losses, new_params = reference(family, jnp.zeros(3), end.task, 2)  # from a fresh start
    np.testing.assert_allclose(out.losses[3:], new_losses, rtol=1e-5)
    np.testing.assert_allclose(end.params, new_params, rtol=1e-5)
    # the fresh start comes from the truncation's key
    again, _ = run(jax.random.key(1), state, 5, 3, family=family)
    other, _ = run(jax.random.key(7), state, 5, 3, family=family)
    np.testing.assert_array_equal(again.task["center"], end.task["center"])
    assert not np.allclose(other.task["center"], end.task["center"])


def test_init_unrolls_staggers_the_step_counters():
    states = init_unrolls(
        jax.random.key(0),
        PHI,
        family=Centers(),
        make_optimizer=learnable_sgd,
        num_tasks=4,
        horizon=12,
    )
    assert states.step.tolist() == [0, 3, 6, 9] and states.step.dtype == jnp.int32
    centers = np.asarray(states.task["center"])
    assert len({tuple(c) for c in centers.round(6)}) == 4  # four different tasks
    # so they reach the horizon in different truncations of 3 steps
    step = jax.jit(jax.vmap(lambda k, s: run(k, s, 3, 12, family=Centers())))
    first_reset = []
    for t in range(5):
        states, out = step(jax.random.split(jax.random.key(t), 4), states)
        first_reset.append(np.asarray(out.restarted.any(axis=1)))
    assert [int(np.argmax(col)) for col in np.array(first_reset).T] == [4, 3, 2, 1]


def test_unroll_jits_without_retracing_and_vmaps_like_a_loop():
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: init_unroll(k, PHI, QUADRATIC, learnable_sgd))(keys)
    step_keys = jax.random.split(jax.random.key(1), 3)
    jitted = jax.jit(
        lambda phi, k, s, h: unroll(
            k, phi, s, family=QUADRATIC, make_optimizer=learnable_sgd, num_steps=4, horizon=h
        )
    )
    batched = jax.vmap(jitted, in_axes=(None, 0, 0, None))
    ends, outs = batched(PHI, step_keys, states, jnp.int32(50))
    for i in range(3):
        state = jax.tree.map(lambda x, i=i: x[i], states)
        end, out = run(step_keys[i], state, 4, 50)
        np.testing.assert_allclose(outs.losses[i], out.losses, rtol=1e-5)
        np.testing.assert_allclose(ends.params[i], end.params, rtol=1e-5, atol=1e-7)
    # a new horizon value or a new phi is traced, not a retrace
    state0 = jax.tree.map(lambda x: x[0], states)
    jitted(PHI, step_keys[0], state0, jnp.int32(50))
    jitted(init_learnable_sgd_params(0.1, 0.9), step_keys[1], state0, jnp.int32(2))
    assert jitted._cache_size() == 1
    assert isinstance(ends, UnrollState) and isinstance(outs, UnrollOutput)
