"""The optax interface of every learned optimiser (fixtures in conftest.py): jit (no retrace on
later calls, none for a new ``phi`` either), vmap over a batch of tasks (same numbers as a
loop), ``optax.chain`` with extra arguments, and non-finite gradients (propagated, and skipped
by ``optax.apply_if_finite``). The eager numbers are checked against references in the
per-optimiser test files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


@pytest.mark.slow
def test_jit_never_retraces_not_even_for_a_new_phi(l2o, problem, trees_close):
    opt, phi = l2o.make()
    target = problem.target(2.0)
    closed, _ = problem.run(opt, jax.jit(lambda p, s, t: problem.step(opt, p, s, t)), target, 3)
    assert problem.traces == 1
    assert not np.allclose(closed["w"], problem.params()["w"])  # it moved
    # meta-training style: phi is an argument of the jitted function
    other_opt, other_phi = l2o.make(seed=1)
    with_phi = jax.jit(lambda phi, p, s, t: problem.step(l2o.build(phi), p, s, t))
    problem.traces = 0
    got, _ = problem.run(opt, lambda p, s, t: with_phi(phi, p, s, t), target, 3)
    other, _ = problem.run(other_opt, lambda p, s, t: with_phi(other_phi, p, s, t), target, 3)
    assert problem.traces == 1
    trees_close(got, closed)
    assert not np.allclose(other["w"], got["w"])


@pytest.mark.slow
def test_vmap_over_tasks_matches_a_loop(l2o, problem, trees_close):
    opt, _ = l2o.make()
    shifts = jnp.array([-1.0, 0.5, 3.0])
    targets = jax.vmap(problem.target)(shifts)
    params = jax.tree.map(lambda p: jnp.broadcast_to(p, (3, *p.shape)), problem.params())
    state = jax.vmap(opt.init)(params)
    step = jax.jit(jax.vmap(lambda p, s, t: problem.step(opt, p, s, t)))
    for _ in range(2):
        params, state = step(params, state, targets)
    one_task = jax.jit(lambda p, s, t: problem.step(opt, p, s, t))
    for i, shift in enumerate(shifts):
        one, one_state = problem.run(opt, one_task, problem.target(shift))
        trees_close(jax.tree.map(lambda x, i=i: x[i], params), one)
        trees_close(jax.tree.map(lambda x, i=i: x[i], state), one_state)


@pytest.mark.slow
def test_chains_with_gradient_clipping(l2o, problem, trees_close):
    opt, _ = l2o.make()
    chained = optax.chain(optax.clip_by_global_norm(1.0), opt)
    params = problem.params()
    value, grads = jax.value_and_grad(problem.loss)(params, problem.target(10.0))
    assert float(optax.tree.norm(grads)) > 10.0  # the clipping is active
    updates, state = jax.jit(chained.update)(grads, chained.init(params), params, value=value)
    clipped = jax.tree.map(lambda g: g / optax.tree.norm(grads), grads)
    want, want_state = jax.jit(opt.update)(clipped, opt.init(params), params, value=value)
    trees_close(updates, want)
    trees_close(state[1], want_state)


@pytest.mark.slow
def test_nonfinite_gradients_propagate_unless_skipped(l2o, problem, trees_close):
    opt, _ = l2o.make()
    params = problem.params()
    value, grads = jax.value_and_grad(problem.loss)(params, problem.target(2.0))
    grads["w"] = grads["w"].at[0, 0].set(jnp.nan)
    state = opt.init(params)
    updates, new_state = jax.jit(opt.update)(grads, state, params, value=value)
    assert np.isnan(updates["w"][0, 0])  # not zeroed
    assert np.all(np.isfinite(updates["b"]))  # other tensors are unaffected
    assert any(np.any(np.isnan(leaf)) for leaf in jax.tree.leaves(new_state))
    guarded = optax.apply_if_finite(opt, max_consecutive_errors=3)
    guarded_state = guarded.init(params)
    updates, guarded_state = jax.jit(guarded.update)(grads, guarded_state, params, value=value)
    assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))
    trees_close(guarded_state.inner_state, state, rtol=0, atol=0)
