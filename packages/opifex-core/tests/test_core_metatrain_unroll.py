"""Unrolled inner optimisation against hand-written optax loops: the recorded losses (after
each update), resets at the horizon (a new task and a fresh start, mid-truncation), the end
of an unroll and its query losses (a separate draw), first-order unrolls, staggered batches,
jit (no retrace for a new horizon or phi) and vmap (same numbers as a loop)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.families import QuadraticFamily
from opifex.core.metatrain import (
    LearnedInit,
    LearnedOptimizer,
    UnrollOutput,
    UnrollState,
    init_unroll,
    init_unrolls,
    truncation_meta_loss,
    unroll,
)

QUADRATIC = QuadraticFamily(dimension=4)
PHI = {"learning_rate": jnp.float32(0.02), "momentum": jnp.float32(0.5)}


def momentum_sgd(phi):
    """``optax.sgd`` whose learning rate and momentum are the meta-parameters."""
    return optax.sgd(phi["learning_rate"], momentum=phi["momentum"])


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


def inner(family=QUADRATIC):
    return LearnedOptimizer(family, momentum_sgd)


def run(key, state, num_steps, horizon, family=QUADRATIC, phi=PHI, **options):
    kwargs = {"inner": inner(family), "num_steps": num_steps, "horizon": horizon}
    return unroll(key, phi, state, **kwargs, **options)


def test_unroll_records_the_loss_after_each_update_and_persists_its_state():
    state = init_unroll(jax.random.key(0), PHI, inner())
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
    state = init_unroll(jax.random.key(0), PHI, inner(family))
    end, out = run(jax.random.key(1), state, 5, 3, family=family)
    assert out.restarted.tolist() == [False, False, False, True, True]
    assert out.ended.tolist() == [False, False, True, False, False]
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
    states = init_unrolls(jax.random.key(0), PHI, inner=inner(Centers()), num_tasks=4, horizon=12)
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


@pytest.mark.slow
def test_unroll_jits_without_retracing_and_vmaps_like_a_loop():
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: init_unroll(k, PHI, inner()))(keys)
    step_keys = jax.random.split(jax.random.key(1), 3)
    jitted = jax.jit(lambda phi, k, s, h: unroll(k, phi, s, inner=inner(), num_steps=4, horizon=h))
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
    new_phi = {"learning_rate": jnp.float32(0.1), "momentum": jnp.float32(0.9)}
    jitted(new_phi, step_keys[1], state0, jnp.int32(2))
    assert jitted._cache_size() == 1
    assert isinstance(ends, UnrollState) and isinstance(outs, UnrollOutput)


@dataclasses.dataclass(frozen=True)
class NoisyCenters:
    """``||x - c - n||^2``: the loss's key draws a noise ``n`` (a minibatch of the centre)."""

    def sample(self, key):
        return {"center": jax.random.normal(key, (3,))}

    def init(self, key, task):
        return jnp.zeros(3)

    def loss(self, params, task, key):
        return jnp.sum((params - task["center"] - 0.3 * jax.random.normal(key, (3,))) ** 2)


def test_query_losses_are_a_separate_draw_at_the_same_parameters():
    family = NoisyCenters()
    maml = LearnedInit(family, optax.sgd(0.1))
    phi = jnp.array([0.5, -0.5, 1.0])
    state = init_unroll(jax.random.key(0), phi, maml)
    np.testing.assert_array_equal(state.params, phi)  # MAML starts from phi
    kwargs = {"inner": maml, "num_steps": 4, "horizon": 4}
    _, out = unroll(jax.random.key(1), phi, state, query=True, **kwargs)
    _, plain = unroll(jax.random.key(1), phi, state, **kwargs)
    assert plain.query_losses is None
    np.testing.assert_array_equal(plain.losses, out.losses)  # the same trajectory
    assert out.ended.tolist() == [False, False, False, True]
    # the query loss is the loss of the same parameters on another draw of the noise
    assert not np.any(np.isclose(out.query_losses, out.losses, rtol=1e-3))
    np.testing.assert_allclose(truncation_meta_loss(out, "final_query"), out.query_losses[-1])
    # on a deterministic family the two draws agree
    exact = LearnedInit(Centers(), optax.sgd(0.1))
    start = init_unroll(jax.random.key(0), phi, exact)
    _, same = unroll(jax.random.key(1), phi, start, inner=exact, num_steps=4, horizon=4, query=True)
    np.testing.assert_array_equal(same.query_losses, same.losses)
    with pytest.raises(ValueError, match="query=True"):
        truncation_meta_loss(plain, "final_query")


@dataclasses.dataclass(frozen=True)
class FixedSets(Centers):
    """A few-shot family: the inner steps see ``loss``, the query ``query_loss`` (a shifted
    centre); neither depends on its key."""

    def loss(self, params, task, key):
        return jnp.sum((params - task["center"]) ** 2)

    def query_loss(self, params, task, key):
        return jnp.sum((params - task["center"] - 1.0) ** 2)


def test_a_family_query_loss_is_the_query_of_an_unroll():
    family = FixedSets()
    inner = LearnedInit(family, optax.sgd(0.1))
    phi = jnp.array([0.5, -0.5, 1.0])
    state = init_unroll(jax.random.key(0), phi, inner)
    _, out = unroll(jax.random.key(1), phi, state, inner=inner, num_steps=3, horizon=3, query=True)
    # SGD on ||x - c||^2 with rate 0.1: x_k - c = 0.8^k (phi - c)
    offset = phi - state.task["center"]
    expected = [float(jnp.sum((0.8**k * offset - 1.0) ** 2)) for k in (1, 2, 3)]
    np.testing.assert_allclose(out.query_losses, expected, rtol=1e-5)
    np.testing.assert_allclose(
        out.losses, [0.64**k * jnp.sum(offset**2) for k in (1, 2, 3)], rtol=1e-5
    )


def test_first_order_unrolls_hold_the_inner_gradients_constant():
    # SGD from phi on ||x - c||^2: x_K - c = (1 - 2 lr)^K (phi - c), so d x_K / d phi is
    # (1 - 2 lr)^K with second derivatives and 1 without them (FOMAML)
    family, lr, steps = Centers(), 0.1, 3
    maml = LearnedInit(family, optax.sgd(lr))
    phi = jnp.array([0.5, -0.5, 1.0])
    state = init_unroll(jax.random.key(0), phi, maml)

    def end_params(phi, first_order):
        start = state._replace(params=phi)
        kwargs = {"inner": maml, "num_steps": steps, "horizon": steps}
        return unroll(jax.random.key(1), phi, start, first_order=first_order, **kwargs)[0].params

    exact, first = (jax.jacobian(end_params)(phi, f) for f in (False, True))
    np.testing.assert_allclose(exact, (1 - 2 * lr) ** steps * np.eye(3), rtol=1e-6)
    np.testing.assert_allclose(first, np.eye(3), rtol=1e-6)
    # the trajectory itself is the same
    np.testing.assert_array_equal(end_params(phi, True), end_params(phi, False))
