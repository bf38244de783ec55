"""Tests for ``OptaxSolver``: any optax transformation on the ``run_solver`` driver.

The reference for every run is a plain Python loop over the same optax transformation (the
loop an optax user would write), so the adapter must reproduce it step for step; the guards
(divergence, stall, convergence) are checked against the first step of that loop at which the
documented condition holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import BestIterate, OptaxSolver, SolveStatus, run_solver


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _quadratic(x, scales):
    return 0.5 * jnp.sum(scales * (x - 1.0) ** 2)


def _noisy(x, key, scales):
    return _quadratic(x, scales) + 0.1 * jnp.sum(jax.random.normal(key, x.shape) * x)


def _reference_loop(fun, optimizer, x, num_steps, key=None, *args):
    """values[k] and params after ``num_steps`` steps of the plain optax loop."""

    def objective(k):
        if key is None:
            return lambda p: fun(p, *args)
        return lambda p: fun(p, jax.random.fold_in(key, k), *args)

    state = optimizer.init(x)
    value, grad = jax.value_and_grad(objective(0))(x)
    values, grad_norms = [float(value)], [float(optax.tree.norm(grad))]
    for k in range(num_steps):
        updates, state = optimizer.update(grad, state, x)
        x = optax.apply_updates(x, updates)
        value, grad = jax.value_and_grad(objective(k + 1))(x)
        values.append(float(value))
        grad_norms.append(float(optax.tree.norm(grad)))
    return x, np.array(values), np.array(grad_norms)


def test_matches_the_plain_optax_loop(x64):
    scales = jnp.array([1.0, 4.0, 0.25])
    optimizer = optax.adam(0.05)
    result = run_solver(OptaxSolver(_quadratic, optimizer), jnp.zeros(3), scales, max_steps=30)
    x, values, grad_norms = _reference_loop(_quadratic, optimizer, jnp.zeros(3), 30, None, scales)
    assert result.status_name == "MAX_STEPS_REACHED"  # no tolerance: the whole budget
    np.testing.assert_allclose(result.params, x, rtol=1e-12)
    np.testing.assert_allclose(result.trace["value"], values, rtol=1e-12)
    np.testing.assert_allclose(result.trace["grad_norm"], grad_norms, rtol=1e-12)
    assert int(result.stats["num_fun_evals"]) == 31
    np.testing.assert_array_equal(result.trace["num_fun_evals"], np.arange(1, 32))


@pytest.mark.slow
def test_stochastic_steps_draw_fold_in_keys_and_continue_exactly(x64):
    scales = jnp.array([1.0, 2.0])
    optimizer = optax.sgd(0.1, momentum=0.9)
    solver = OptaxSolver(_noisy, optimizer, stochastic=True)
    key = jax.random.key(3)
    whole = run_solver(solver, jnp.zeros(2), key, scales, max_steps=20)
    x, values, _ = _reference_loop(_noisy, optimizer, jnp.zeros(2), 20, key, scales)
    np.testing.assert_allclose(whole.params, x, rtol=1e-12)
    np.testing.assert_allclose(whole.trace["value"], values, rtol=1e-12)

    # the first 8 steps, then the rest from the state they left: the same run
    first = run_solver(solver, jnp.zeros(2), key, scales, max_steps=8)
    state = solver.init(jnp.zeros(2), key, scales)
    for _ in range(8):
        state = solver.step(state, key, scales)
    np.testing.assert_allclose(state.params, first.params, rtol=1e-12)
    rest = run_solver(solver, None, key, scales, init_state=state, max_steps=20)
    np.testing.assert_allclose(rest.params, whole.params, rtol=1e-12)
    np.testing.assert_allclose(rest.trace["value"][8:], whole.trace["value"][8:], rtol=1e-12)


@pytest.mark.slow
def test_convergence_tolerance_is_absolute_plus_relative(x64):
    scales = jnp.array([1.0, 3.0])
    optimizer = optax.sgd(0.2)
    _, _, grad_norms = _reference_loop(_quadratic, optimizer, jnp.zeros(2), 200, None, scales)
    atol, rtol = 1e-6, 1e-4
    expected = int(np.argmax(grad_norms <= atol + rtol * grad_norms[0]))
    solver = OptaxSolver(_quadratic, optimizer, atol=atol, rtol=rtol)
    result = run_solver(solver, jnp.zeros(2), scales, max_steps=200)
    assert result.status_name == "SUCCESS"
    assert int(result.num_steps) == expected > 0


def test_divergence_limit_is_measured_from_the_start(x64):
    # SGD with lr 2.5 on 0.5 |x|^2: x_k = (-1.5)^k x_0, f_k = 2.25^k f_0 with f_0 = 1;
    # diverged once f_k > f_0 + 10 |f_0| = 11, i.e. at k = 3 (f_3 = 11.39)
    solver = OptaxSolver(lambda x: 0.5 * jnp.sum(x**2), optax.sgd(2.5), divergence_factor=10.0)
    result = run_solver(solver, jnp.ones(2), max_steps=50)
    assert result.status_name == "DIVERGED"
    assert int(result.num_steps) == 3
    assert float(result.value) == pytest.approx(2.25**3)


@pytest.mark.slow
def test_stall_window_and_rtol(x64):
    # f = 1 + exp(-x) decreases by less than 1e-3 relative per step once x is large
    def fun(x):
        return 1.0 + jnp.exp(-x[0])

    optimizer = optax.sgd(1.0)
    _, values, _ = _reference_loop(fun, optimizer, jnp.zeros(1), 300)
    window, stall_rtol = 5, 1e-3
    reference, since, expected = values[0], 0, None
    for k in range(1, len(values)):
        if values[k] < reference - stall_rtol * abs(reference):
            reference, since = values[k], 0
        else:
            since += 1
        if since >= window:
            expected = k
            break
    solver = OptaxSolver(fun, optimizer, stall_window=window, stall_rtol=stall_rtol)
    result = run_solver(solver, jnp.zeros(1), max_steps=300)
    assert result.status_name == "STALLED"
    assert int(result.num_steps) == expected


def test_keep_best_returns_the_lowest_finite_iterate(x64):
    # on a noisy objective the last iterate is not the best one seen
    solver = OptaxSolver(_noisy, optax.sgd(0.3), stochastic=True, keep_best=True)
    result = run_solver(solver, jnp.ones(2), jax.random.key(0), jnp.ones(2), max_steps=40)
    values = np.asarray(result.trace["value"])
    assert isinstance(result.aux, BestIterate)
    assert float(result.aux.value) == values.min()
    assert float(result.aux.value) <= float(result.value)


@pytest.mark.e2e
def test_line_search_optimiser_reuses_its_evaluations(x64):
    def rosenbrock(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    optimizer = optax.lbfgs()
    result = run_solver(OptaxSolver(rosenbrock, optimizer, atol=1e-8), jnp.zeros(4), max_steps=200)
    # the reference: the optax documentation's L-BFGS loop, counting line-search trials
    x, state = jnp.zeros(4), optimizer.init(jnp.zeros(4))
    value_and_grad = optax.value_and_grad_from_state(rosenbrock)
    evaluations = 1
    for _ in range(int(result.num_steps)):
        value, grad = value_and_grad(x, state=state)
        updates, state = optimizer.update(
            grad, state, x, value=value, grad=grad, value_fn=rosenbrock
        )
        x = optax.apply_updates(x, updates)
        evaluations += int(optax.tree.get(state, "num_linesearch_steps"))
    assert result.status_name == "SUCCESS"
    np.testing.assert_allclose(result.params, x, rtol=1e-10)
    np.testing.assert_allclose(result.params, np.ones(4), atol=1e-6)
    assert int(result.stats["num_fun_evals"]) == evaluations


def test_vmap_jit_and_no_recompilation(x64):
    traces = []
    solver = OptaxSolver(_quadratic, optax.adam(0.1), atol=1e-5)

    @jax.jit
    def solve(x0, scales):
        traces.append(None)
        return jax.vmap(lambda x: run_solver(solver, x, scales, max_steps=500))(x0)

    starts = jnp.array([[0.0, 0.0], [3.0, -2.0], [1.0, 1.0]])
    batched = solve(starts, jnp.array([1.0, 2.0]))
    solve(starts + 1.0, jnp.array([2.0, 0.5]))
    assert len(traces) == 1
    for i in range(3):
        single = run_solver(solver, starts[i], jnp.array([1.0, 2.0]), max_steps=500)
        assert int(single.num_steps) == int(batched.num_steps[i])
        np.testing.assert_allclose(single.params, batched.params[i], rtol=1e-10)
    assert int(batched.num_steps[2]) == 0  # already at the optimum
    assert bool(jnp.all(batched.status == SolveStatus.SUCCESS))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fun": 3}, TypeError, "fun"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"atol": -1.0}, ValueError, "atol"),
        ({"rtol": float("nan")}, ValueError, "rtol"),
        ({"divergence_factor": 0.0}, ValueError, "divergence_factor"),
        ({"stall_window": 0}, ValueError, "stall_window"),
        ({"stall_rtol": -0.1}, ValueError, "stall_rtol"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"fun": jnp.sum, "optimizer": optax.sgd(0.1), **kwargs}
    fun, optimizer = arguments.pop("fun"), arguments.pop("optimizer")
    with pytest.raises(error, match=match):
        OptaxSolver(fun, optimizer, **arguments)


def test_resume_keeps_the_run_clock_and_its_start(x64):
    scales = jnp.array([1.0, 2.0])
    solver = OptaxSolver(
        _noisy, optax.adam(0.01), stochastic=True, divergence_factor=1.0, atol=1e-3, rtol=0.1
    )
    key, near = jax.random.key(5), jnp.array([0.999, 1.001])
    state = solver.resume(near, 7, 10.0, 5.0, key, scales)
    assert int(state.num_steps) == 7
    assert float(state.limit) == 20.0  # 10 + 1.0 * |10|: the run's start, not this point's
    assert float(state.threshold) == pytest.approx(1e-3 + 0.1 * 5.0)
    # the value is on step 7's minibatch
    assert float(state.value) == pytest.approx(
        float(_noisy(near, jax.random.fold_in(key, 7), scales))
    )
    result = run_solver(solver, None, key, scales, init_state=state, max_steps=12)
    assert int(result.num_steps) <= 12
    assert np.all(np.isnan(np.asarray(result.trace["value"])[:7]))
