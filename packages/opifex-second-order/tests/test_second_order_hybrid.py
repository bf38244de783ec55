"""Hybrid Adam -> L-BFGS: each switching criterion fires inside jit (one compiled, vmapped
step for all of them), the loss decreases after the switch, no recompilation, the solver
driver and the optax interface. float64 throughout.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.second_order import (
    HybridOptimizer,
    HybridOptimizerConfig,
    HybridState,
    LBFGSConfig,
    hybrid_optimizer,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


TRACES = {"bowl": 0}


def bowl(x, curvature):
    """``curvature * ||x - 1||^2``: value = grad_norm^2 / (4 curvature), which lets one
    curvature trip the loss test first and another the gradient test first."""
    TRACES["bowl"] += 1
    return curvature * jnp.sum((x - 1.0) ** 2)


LOSS_T, GRAD_T, MAX_ADAM = 0.01, 0.1, 30
CONFIG = HybridOptimizerConfig(
    learning_rate=0.1, switch_threshold=LOSS_T, grad_norm_threshold=GRAD_T, max_adam_steps=MAX_ADAM
)


@pytest.mark.slow
def test_each_switching_criterion_fires_under_jit_and_vmap():
    opt = HybridOptimizer(CONFIG)
    d = np.sqrt(0.5)
    # steep bowl close by: the loss test; flat bowl far away: the gradient test;
    # unit bowl very far away: Adam's step budget
    x0 = jnp.array([[1 + 0.3 * d, 1 + 0.3 * d], [1 + 8 * d, 1 + 8 * d], [11.0, 11.0]])
    curvature = jnp.array([100.0, 0.01, 1.0])
    step = jax.jit(jax.vmap(lambda p, s, c: opt.step(p, s, bowl, c)))
    state = jax.vmap(opt.init)(x0)
    assert isinstance(state, HybridState) and not bool(jnp.any(opt.has_switched(state)))
    assert state.switched.shape == (3,) and state.switched.dtype == jnp.bool_

    gradient = jax.jit(jax.vmap(jax.grad(bowl)))  # to record which criterion fired
    params, values, grad_norms, switched = x0, [], [], []
    for _ in range(45):
        grads = gradient(params, curvature)
        grad_norms.append(np.linalg.norm(np.asarray(grads), axis=1))
        params, state, value = step(params, state, curvature)
        values.append(np.asarray(value))  # loss at the params passed in
        switched.append(np.asarray(opt.has_switched(state)))
        if len(values) == 1:
            traces = TRACES["bowl"]
    assert TRACES["bowl"] == traces  # 44 more calls, no retrace, hence no recompilation
    values, grad_norms, switched = np.array(values), np.array(grad_norms), np.array(switched)

    assert switched[-1].all()
    first = switched.argmax(axis=0)  # the step at which each run switched
    np.testing.assert_array_equal(np.asarray(state.switch_step), first)
    loss_test = values[first, range(3)] <= LOSS_T
    grad_test = grad_norms[first, range(3)] <= GRAD_T
    budget = first == MAX_ADAM
    # each run was switched by exactly the criterion it was built for, and only then
    np.testing.assert_array_equal(loss_test, [True, False, False])
    np.testing.assert_array_equal(grad_test, [False, True, False])
    np.testing.assert_array_equal(budget, [False, False, True])
    for run in range(3):
        before = slice(0, first[run])
        assert not np.any(values[before, run] <= LOSS_T)
        assert not np.any(grad_norms[before, run] <= GRAD_T)
        # once switched, L-BFGS decreases the loss at every step, down to the minimum
        after = values[first[run] :, run]
        assert np.all(np.diff(after) <= 1e-15)
        assert after[-1] <= 1e-20
    np.testing.assert_allclose(np.asarray(params), np.ones((3, 2)), atol=1e-9)
    np.testing.assert_array_equal(np.asarray(state.adam_steps), first)


@pytest.mark.slow
def test_minimize_runs_adam_then_lbfgs_to_convergence():
    config = dataclasses.replace(
        CONFIG,
        learning_rate=1e-2,
        switch_threshold=None,
        grad_norm_threshold=None,
        max_adam_steps=20,
        lbfgs_config=LBFGSConfig(atol=1e-8),
    )
    rosenbrock = lambda x: 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2  # noqa: E731
    result = HybridOptimizer(config).minimize(rosenbrock, jnp.array([-1.2, 1.0]))
    assert result.status_name == "SUCCESS" and float(result.grad_norm) <= 1e-8
    np.testing.assert_allclose(np.asarray(result.params), [1.0, 1.0], atol=1e-7)
    assert int(result.stats["switch_step"]) == 20 and int(result.stats["num_adam_steps"]) == 20
    trace = np.asarray(result.trace["switched"][: int(result.num_steps) + 1])
    assert trace[:21].sum() == 0 and trace[21:].all()
    # one evaluation per Adam step, then the line searches' evaluations
    assert int(result.stats["num_fun_evals"]) >= int(result.num_steps) + 1
    # a budget that ends in the Adam phase: not converged, never switched
    short = HybridOptimizer(config).minimize(rosenbrock, jnp.array([-1.2, 1.0]), max_steps=5)
    assert short.status_name == "MAX_STEPS_REACHED" and not bool(short.converged)
    assert int(short.stats["switch_step"]) == -1


def test_optax_gradient_transformation_interface():
    opt = hybrid_optimizer(dataclasses.replace(CONFIG, max_adam_steps=5))
    assert isinstance(opt, optax.GradientTransformationExtraArgs)
    value_and_grad = optax.value_and_grad_from_state(bowl)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, 3.0, state=state)
        updates, state = opt.update(
            grad, state, params, value=value, grad=grad, value_fn=bowl, curvature=3.0
        )
        return optax.apply_updates(params, updates), state, value

    params, state = jnp.array([4.0, -2.0]), opt.init(jnp.array([4.0, -2.0]))
    for _ in range(10):
        params, state, _ = step(params, state)
    assert bool(state.switched) and int(state.switch_step) == 5
    np.testing.assert_allclose(np.asarray(params), [1.0, 1.0], atol=1e-9)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"switch_threshold": float("nan")}, ValueError, "switch_threshold"),
        ({"switch_threshold": "low"}, TypeError, "switch_threshold"),
        ({"grad_norm_threshold": -1.0}, ValueError, "grad_norm_threshold"),
        ({"max_adam_steps": -1}, ValueError, "max_adam_steps"),
        ({"lbfgs_config": {"atol": 1e-3}}, TypeError, "lbfgs_config"),
    ],
)
def test_config_validation(options, error, match):
    with pytest.raises(error, match=match):
        HybridOptimizerConfig(**options)


def test_bad_input_raises_clear_errors():
    opt = HybridOptimizer(CONFIG)
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.minimize(bowl, jnp.array([jnp.nan, 1.0]), 1.0)
    with pytest.raises(ValueError, match="empty pytree"):
        opt.minimize(bowl, {}, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        opt.minimize(lambda x: x, jnp.ones(2))
    with pytest.raises(TypeError, match="one floating-point dtype"):
        opt.minimize(lambda x: jnp.sum(x.astype(jnp.float64) ** 2), jnp.ones(2, jnp.float32))
    with pytest.raises(ValueError, match="max_steps"):
        opt.minimize(bowl, jnp.ones(2), 1.0, max_steps=-3)
    with pytest.raises(TypeError, match="HybridOptimizerConfig"):
        HybridOptimizer({"learning_rate": 0.1})


def test_adam_lr_is_the_deprecated_spelling_of_learning_rate():
    with pytest.warns(DeprecationWarning, match="'adam_lr' is deprecated"):
        assert HybridOptimizerConfig(adam_lr=0.05) == HybridOptimizerConfig(learning_rate=0.05)
