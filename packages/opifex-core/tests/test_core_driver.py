"""Tests for the ``lax.while_loop`` solver driver ``run_solver`` (and ``GradientDescent``).

References are independent of the code under test: closed forms (a quadratic's minimiser, a
halving iteration whose k-th iterate is ``x0 / 2**k``) and a plain-numpy float64 loop that
follows the documented recursion step by step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core._driver import run_solver
from opifex.core._gradient_descent import GradientDescent, GradientDescentState
from opifex.core._result import SolveResult
from opifex.core._status import SolveStatus


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------------------------
# A hand-written solver, independent of GradientDescent, to test the protocol itself.


class HalvingState(NamedTuple):
    params: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    num_grad_evals: jax.Array
    num_jac_evals: jax.Array


class Halving:
    """``x <- x / 2``: value ``x**2``, "grad_norm" ``|x|``; done when ``|x| <= tol``.

    After k steps ``x = x0 / 2**k`` exactly (in binary floating point), so every number the
    driver reports is known in closed form.
    """

    def __init__(self, tolerance: float, stop_status: int = SolveStatus.SUCCESS):
        self.tolerance = tolerance
        self.stop_status = stop_status

    def init(self, x, scale=1.0):
        return HalvingState(
            x,
            scale * x**2,
            jnp.abs(x),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
        )

    def step(self, state, scale=1.0):
        x = state.params / 2
        return HalvingState(
            x,
            scale * x**2,
            jnp.abs(x),
            state.num_steps + 1,
            state.num_grad_evals + 2,
            state.num_jac_evals + 3,
        )

    def terminate(self, state, scale=1.0):
        return state.grad_norm <= self.tolerance, jnp.asarray(self.stop_status, jnp.int32)

    def trace_fields(self, state):
        return {"x": state.params}


def _halving_steps(x0: float, tolerance: float) -> int:
    """Smallest k with |x0| / 2**k <= tolerance (plain Python)."""
    k = 0
    while abs(x0) / 2**k > tolerance:
        k += 1
    return k


@pytest.mark.parametrize(("x0", "tolerance"), [(1.0, 0.3), (-5.0, 1e-3), (0.125, 1.0), (3.0, 3.0)])
def test_halving_exact_counts_trace_and_stats(x0, tolerance):
    max_steps = 40
    expected = _halving_steps(x0, tolerance)
    result = run_solver(Halving(tolerance), jnp.asarray(x0), max_steps=max_steps)

    assert isinstance(result, SolveResult)
    assert int(result.num_steps) == expected
    assert result.num_steps.dtype == jnp.int32
    assert result.status.dtype == jnp.int32
    assert int(result.status) == SolveStatus.SUCCESS
    assert bool(result.converged)
    assert result.status_name == "SUCCESS"
    assert float(result.params) == x0 / 2**expected
    assert float(result.value) == (x0 / 2**expected) ** 2
    # trace: fixed length, entry k is the k-th iterate, NaN after the last step.
    assert set(result.trace) == {"value", "grad_norm", "x"}
    for name in result.trace:
        assert result.trace[name].shape == (max_steps + 1,)
    xs = np.asarray(result.trace["x"])
    np.testing.assert_array_equal(xs[: expected + 1], [x0 / 2**k for k in range(expected + 1)])
    np.testing.assert_array_equal(
        np.asarray(result.trace["value"])[: expected + 1],
        [(x0 / 2**k) ** 2 for k in range(expected + 1)],
    )
    assert np.all(np.isnan(xs[expected + 1 :]))
    assert np.all(np.isnan(np.asarray(result.trace["value"])[expected + 1 :]))
    # stats: only the counters the state has, as int32
    assert set(result.stats) == {"num_grad_evals", "num_jac_evals"}
    assert int(result.stats["num_grad_evals"]) == 2 * expected
    assert int(result.stats["num_jac_evals"]) == 3 * expected
    assert all(v.dtype == jnp.int32 for v in result.stats.values())


def test_extra_args_reach_every_method():
    result = run_solver(Halving(0.01), jnp.asarray(1.0), 3.0, max_steps=20)
    k = _halving_steps(1.0, 0.01)
    assert float(result.value) == pytest.approx(3.0 * (1.0 / 2**k) ** 2)
    assert float(result.trace["value"][0]) == pytest.approx(3.0)


def test_budget_too_small_gives_max_steps_reached():
    result = run_solver(Halving(1e-6), jnp.asarray(1.0), max_steps=5)
    assert int(result.num_steps) == 5
    assert int(result.status) == SolveStatus.MAX_STEPS_REACHED
    assert not bool(result.converged)
    assert result.message == "stopped at the step budget before meeting the tolerance"
    assert float(result.params) == 1.0 / 32
    # every entry is filled when the budget is used up
    assert not np.any(np.isnan(np.asarray(result.trace["value"])))


def test_convergence_on_the_last_allowed_step_is_success():
    k = _halving_steps(1.0, 0.1)  # = 4
    result = run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=k)
    assert int(result.num_steps) == k
    assert int(result.status) == SolveStatus.SUCCESS


def test_solver_status_other_than_success_is_reported():
    result = run_solver(Halving(0.1, SolveStatus.STALLED), jnp.asarray(1.0), max_steps=20)
    assert int(result.status) == SolveStatus.STALLED
    assert not bool(result.converged)


def test_max_steps_zero():
    not_done = run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=0)
    assert int(not_done.num_steps) == 0
    assert int(not_done.status) == SolveStatus.MAX_STEPS_REACHED
    assert not_done.trace["value"].shape == (1,)
    assert float(not_done.trace["value"][0]) == 1.0
    assert float(not_done.params) == 1.0

    done_at_start = run_solver(Halving(2.0), jnp.asarray(1.0), max_steps=0)
    assert int(done_at_start.status) == SolveStatus.SUCCESS
    assert bool(done_at_start.converged)


def test_already_converged_takes_no_step():
    result = run_solver(Halving(2.0), jnp.asarray(1.0), max_steps=10)
    assert int(result.num_steps) == 0
    assert bool(result.converged)
    assert np.all(np.isnan(np.asarray(result.trace["value"])[1:]))


@pytest.mark.parametrize("max_steps", [-1, 2.0, True, None, jnp.ones(2, jnp.int32)])
def test_bad_max_steps_raises(max_steps):
    with pytest.raises((TypeError, ValueError), match="max_steps"):
        run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=max_steps)


# --------------------------------------------------------------------------------------------
# GradientDescent on a quadratic, against the closed form and a numpy float64 loop.


def _quadratic_problem():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    eigenvalues = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    A = q @ np.diag(eigenvalues) @ q.T
    b = rng.normal(size=5)
    return A, b


def _numpy_gd(A, b, x0, lr, tol, max_steps):
    """GD on 0.5 x'Ax - b'x in float64: returns (x, num_steps, values)."""
    x = np.array(x0, dtype=np.float64)
    values = [0.5 * x @ A @ x - b @ x]
    for k in range(max_steps + 1):
        g = A @ x - b
        if np.linalg.norm(g) <= tol or k == max_steps:
            return x, k, values
        x = x - lr * g
        values.append(0.5 * x @ A @ x - b @ x)
    raise AssertionError("unreachable")


def test_gradient_descent_converges_on_quadratic_closed_form(x64):
    A, b = _quadratic_problem()
    lr, tol, max_steps = 0.4, 1e-9, 500

    def fun(x, A, b):
        return 0.5 * x @ A @ x - b @ x

    solver = GradientDescent(fun, learning_rate=lr, atol=tol)
    x0 = jnp.zeros(5)
    result = run_solver(solver, x0, jnp.asarray(A), jnp.asarray(b), max_steps=max_steps)

    x_star = np.linalg.solve(A, b)  # closed-form minimiser
    f_star = -0.5 * b @ x_star
    ref_x, ref_steps, ref_values = _numpy_gd(A, b, np.zeros(5), lr, tol, max_steps)

    assert bool(result.converged)
    assert int(result.num_steps) == ref_steps
    # ||x - x*|| <= ||grad|| / lambda_min = tol / 0.5
    np.testing.assert_allclose(np.asarray(result.params), x_star, atol=2 * tol / 0.5)
    np.testing.assert_allclose(float(result.value), f_star, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(result.params), ref_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(result.trace["value"][: ref_steps + 1]), ref_values, rtol=1e-10, atol=1e-12
    )
    assert result.trace["value"].dtype == jnp.float64
    assert float(result.grad_norm) <= tol
    # one function evaluation at init plus one per step
    assert int(result.stats["num_fun_evals"]) == ref_steps + 1
    assert set(result.stats) == {"num_fun_evals"}


def test_gradient_descent_pytree_params():
    def fun(p):
        return jnp.sum((p["a"] - 1.0) ** 2) + jnp.sum((p["b"][0] + 2.0) ** 2)

    solver = GradientDescent(fun, learning_rate=0.25, atol=1e-5)
    params = {"a": jnp.zeros(3), "b": (jnp.zeros((2, 2)),)}
    result = run_solver(solver, params, max_steps=200)
    assert bool(result.converged)
    np.testing.assert_allclose(result.params["a"], 1.0, atol=1e-5)
    np.testing.assert_allclose(result.params["b"][0], -2.0, atol=1e-5)
    assert isinstance(result.params["b"], tuple)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_gradient_descent_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        GradientDescent(jnp.sum, learning_rate=bad)
    with pytest.raises(ValueError, match="atol"):
        GradientDescent(jnp.sum, learning_rate=0.1, atol=bad)


def test_gradient_descent_state_is_arrays_only():
    solver = GradientDescent(lambda x: jnp.sum(x**2), learning_rate=0.1)
    state = solver.init(jnp.ones(2))
    assert isinstance(state, GradientDescentState)
    for leaf in jax.tree.leaves(state):
        assert isinstance(leaf, jax.Array)
    assert state.num_steps.dtype == jnp.int32


# --------------------------------------------------------------------------------------------
# NaN / inf guard


def test_nan_mid_run_stops_with_nonfinite():
    # f(x) = (x - 3)^2 on x < 1, NaN beyond; GD from 0 with lr 0.1: x_k = 3 - 3 * 0.8**k,
    # so x_1 = 0.6 (finite) and x_2 = 1.08 (NaN): the loop must stop after step 2.
    def fun(x):
        return jnp.where(x < 1.0, (x - 3.0) ** 2, jnp.nan)

    solver = GradientDescent(fun, learning_rate=0.1, atol=1e-8)
    result = run_solver(solver, jnp.asarray(0.0), max_steps=50)
    assert int(result.status) == SolveStatus.NONFINITE
    assert not bool(result.converged)
    assert int(result.num_steps) == 2
    assert math.isnan(float(result.value))
    values = np.asarray(result.trace["value"])
    np.testing.assert_allclose(values[:2], [9.0, 2.4**2], rtol=1e-6)
    assert np.all(np.isnan(values[2:]))
    assert result.message == "stopped because the value or gradient became NaN or inf"


def test_inf_value_stops_with_nonfinite():
    # the value is inf once the halving iterate (8, 4, 2, 1, ...) reaches 1, at step 3
    class Blowup(Halving):
        def init(self, x, scale=1.0):
            s = super().init(x)
            return s._replace(value=jnp.where(s.params == 1.0, jnp.inf, s.value))

        def step(self, state, scale=1.0):
            s = super().step(state)
            return s._replace(value=jnp.where(s.params == 1.0, jnp.inf, s.value))

    result = run_solver(Blowup(1e-9), jnp.asarray(8.0), max_steps=20)
    assert int(result.status) == SolveStatus.NONFINITE
    assert int(result.num_steps) == 3  # 8 -> 4 -> 2 -> 1
    assert float(result.trace["value"][3]) == math.inf


def test_nonfinite_grad_norm_alone_is_caught():
    class BadGrad(Halving):
        def step(self, state, scale=1.0):
            s = super().step(state)
            return s._replace(grad_norm=jnp.where(s.num_steps == 2, jnp.nan, s.grad_norm))

    result = run_solver(BadGrad(1e-9), jnp.asarray(1.0), max_steps=20)
    assert int(result.status) == SolveStatus.NONFINITE
    assert int(result.num_steps) == 2


def test_nonfinite_at_init_takes_no_step():
    solver = GradientDescent(lambda x: jnp.sum(jnp.log(x)), learning_rate=0.1)
    result = run_solver(solver, -jnp.ones(2), max_steps=10)
    assert int(result.status) == SolveStatus.NONFINITE
    assert int(result.num_steps) == 0


# --------------------------------------------------------------------------------------------
# jit, vmap, no recompilation


def test_under_jit_matches_eager():
    solver = Halving(1e-3)
    eager = run_solver(solver, jnp.asarray(5.0), max_steps=30)
    jitted = jax.jit(lambda x: run_solver(solver, x, max_steps=30))(jnp.asarray(5.0))
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_no_recompilation_on_second_call():
    traces = []
    solver = GradientDescent(lambda x, c: jnp.sum((x - c) ** 2), learning_rate=0.25)

    @jax.jit
    def solve(x0, c):
        traces.append(None)
        return run_solver(solver, x0, c, max_steps=100)

    first = solve(jnp.zeros(3), jnp.ones(3))
    # same shapes and dtypes (jnp.full with a Python float would be weakly typed: a new
    # signature), new values
    second = solve(jnp.array([7.0, 7.0, 7.0]), jnp.array([1.0, -2.0, 0.5]))
    assert len(traces) == 1
    assert bool(first.converged) and bool(second.converged)
    np.testing.assert_allclose(second.params, [1.0, -2.0, 0.5], atol=1e-6)


@pytest.mark.slow
def test_vmap_elements_take_different_numbers_of_steps():
    x0s = jnp.array([0.05, 1.0, -300.0, 7.0])
    tolerance, max_steps = 1e-2, 12
    batched = jax.vmap(lambda x: run_solver(Halving(tolerance), x, max_steps=max_steps))(x0s)
    expected_steps = [min(_halving_steps(float(x), tolerance), max_steps) for x in x0s]
    assert len(set(expected_steps)) > 2
    np.testing.assert_array_equal(batched.num_steps, expected_steps)
    assert batched.trace["x"].shape == (4, max_steps + 1)
    for i, x0 in enumerate(x0s):
        single = run_solver(Halving(tolerance), x0, max_steps=max_steps)
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i])
    # -300 needs 15 halvings: it is the only one stopped by the budget
    np.testing.assert_array_equal(
        batched.status,
        [SolveStatus.SUCCESS, SolveStatus.SUCCESS, SolveStatus.MAX_STEPS_REACHED, 0],
    )


@pytest.mark.slow
def test_vmap_with_a_nan_element_leaves_the_others_alone():
    # f(x; limit) = (x - 3)^2 for x < limit, NaN beyond. From x0 = 0 with lr 0.1, limit 1 hits
    # NaN at step 2; limit 10 never does and converges to 3.
    def fun(x, limit):
        return jnp.where(x < limit, (x - 3.0) ** 2, jnp.nan)

    solver = GradientDescent(fun, learning_rate=0.1, atol=1e-4)
    limits = jnp.array([1.0, 10.0])
    result = jax.jit(
        jax.vmap(lambda limit: run_solver(solver, jnp.asarray(0.0), limit, max_steps=200))
    )(limits)
    np.testing.assert_array_equal(result.status, [SolveStatus.NONFINITE, SolveStatus.SUCCESS])
    assert int(result.num_steps[0]) == 2
    assert float(result.params[1]) == pytest.approx(3.0, abs=1e-4)
    for i, limit in enumerate(limits):
        single = run_solver(solver, jnp.asarray(0.0), limit, max_steps=200)
        assert int(single.num_steps) == int(result.num_steps[i])
        np.testing.assert_allclose(
            np.asarray(single.trace["value"]), np.asarray(result.trace["value"][i]), rtol=1e-6
        )


def test_jit_of_vmap_with_problem_data_batched():
    # minimise sum((x - c)^2) for a batch of targets c; each converges to its c.
    solver = GradientDescent(lambda x, c: jnp.sum((x - c) ** 2), learning_rate=0.25, atol=1e-6)
    cs = jnp.array([[1.0, 2.0], [0.0, 0.0], [-3.0, 100.0]])
    result = jax.jit(jax.vmap(lambda c: run_solver(solver, jnp.zeros(2), c, max_steps=100)))(cs)
    assert bool(jnp.all(result.converged))
    np.testing.assert_allclose(result.params, cs, atol=1e-5)
    # c = 0 is already optimal at x0 = 0
    assert int(result.num_steps[1]) == 0


# --------------------------------------------------------------------------------------------
# A traced budget, the trace length, continuation, aux


def test_traced_budget_does_not_recompile_and_matches_closed_form():
    traces = []

    @jax.jit
    def solve(x0, max_steps):
        traces.append(None)
        return run_solver(Halving(1e-9), x0, max_steps=max_steps, trace_length=40)

    for budget in (3, 7, 12):
        result = solve(jnp.asarray(1.0), budget)
        assert int(result.num_steps) == budget
        assert float(result.params) == 1.0 / 2**budget
        assert int(result.status) == SolveStatus.MAX_STEPS_REACHED
        assert result.trace["x"].shape == (41,)
        assert np.all(np.isnan(np.asarray(result.trace["x"])[budget + 1 :]))
    assert len(traces) == 1


def test_traced_budget_needs_a_trace_length():
    with pytest.raises(ValueError, match="trace_length"):
        jax.jit(lambda n: run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=n))(3)


def test_steps_beyond_the_trace_length_run_but_are_not_recorded():
    k = _halving_steps(1.0, 1e-3)  # 10
    result = run_solver(Halving(1e-3), jnp.asarray(1.0), max_steps=50, trace_length=4)
    assert int(result.num_steps) == k
    assert bool(result.converged)
    np.testing.assert_array_equal(np.asarray(result.trace["x"]), [1.0 / 2**i for i in range(5)])


def test_init_state_continues_a_run_exactly():
    solver = Halving(1e-9)
    first = run_solver(solver, jnp.asarray(1.0), max_steps=3)
    state = solver.init(first.params)._replace(num_steps=first.num_steps)
    rest = run_solver(solver, None, init_state=state, max_steps=8)
    whole = run_solver(solver, jnp.asarray(1.0), max_steps=8)
    assert int(rest.num_steps) == 8
    assert float(rest.params) == float(whole.params) == 1.0 / 2**8
    np.testing.assert_array_equal(np.asarray(rest.trace["x"])[3:], np.asarray(whole.trace["x"])[3:])
    assert np.all(np.isnan(np.asarray(rest.trace["x"])[:3]))
    with pytest.raises(ValueError, match="init_state"):
        run_solver(solver, jnp.asarray(1.0), init_state=state, max_steps=8)


def test_aux_is_returned_and_batched_under_vmap():
    class WithAux(Halving):
        def aux(self, state, scale=1.0):
            return {"twice": 2.0 * state.params, "scale": jnp.asarray(scale)}

    result = run_solver(WithAux(1e-2), jnp.asarray(1.0), 3.0, max_steps=20)
    assert float(result.aux["twice"]) == 2.0 * float(result.params)
    assert float(result.aux["scale"]) == 3.0
    batched = jax.vmap(lambda x: run_solver(WithAux(1e-2), x, max_steps=20))(jnp.array([1.0, 8.0]))
    np.testing.assert_array_equal(batched.aux["twice"], 2.0 * batched.params)
    assert run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=5).aux is None


def test_diverged_status_has_a_message():
    result = run_solver(Halving(0.1, SolveStatus.DIVERGED), jnp.asarray(1.0), max_steps=20)
    assert result.status_name == "DIVERGED"
    assert "divergence" in result.message


# --------------------------------------------------------------------------------------------
# Adjoints: implicit (default with an optimality_fn) and unrolled, against finite differences


def _weighted_quadratic(x, a):
    # minimiser x*(a) = a / (1 + a**2) coordinatewise: f = sum((1 + a^2) x^2 / 2 - a x)
    return jnp.sum(0.5 * (1.0 + a**2) * x**2 - a * x)


def _solution_norm(adjoint, a):
    solver = GradientDescent(_weighted_quadratic, learning_rate=0.2, atol=1e-12)
    result = run_solver(solver, jnp.zeros(3), a, max_steps=400, adjoint=adjoint)
    return jnp.sum(result.params**2) + result.value


@pytest.mark.slow
@pytest.mark.parametrize("adjoint", [None, "implicit", "unrolled"])
def test_adjoints_match_finite_differences_and_the_closed_form(x64, adjoint):
    a = jnp.array([0.3, -0.8, 1.7])
    grad = jax.grad(lambda a: _solution_norm(adjoint, a))(a)
    forward = jax.jacfwd(lambda a: _solution_norm(adjoint, a))(a)
    eps = 1e-6
    fd = [
        (_solution_norm(adjoint, a.at[i].add(eps)) - _solution_norm(adjoint, a.at[i].add(-eps)))
        / (2 * eps)
        for i in range(3)
    ]
    # closed form: x* = a/(1+a^2), f* = -a^2 / (2 (1+a^2)); d/da of sum(x*^2) + f*
    a_np = np.asarray(a)
    dx = (1 - a_np**2) / (1 + a_np**2) ** 2
    df = -a_np / (1 + a_np**2) ** 2
    exact = 2 * (a_np / (1 + a_np**2)) * dx + df
    np.testing.assert_allclose(grad, exact, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(forward, exact, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fd, exact, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_unrolled_adjoint_sees_the_truncation():
    # three steps of GD on 0.5 (x - a)^2 from 0 with lr 0.5: x_3 = a (1 - 0.5**3); the unrolled
    # derivative is that of the truncated iteration (0.875), the implicit one that of the
    # solution (1.0)
    solver = GradientDescent(lambda x, a: 0.5 * (x - a) ** 2, learning_rate=0.5, atol=1e-30)

    def final(adjoint, a):
        return run_solver(solver, jnp.asarray(0.0), a, max_steps=3, adjoint=adjoint).params

    assert float(jax.grad(lambda a: final("unrolled", a))(2.0)) == pytest.approx(0.875)
    assert float(jax.grad(lambda a: final("implicit", a))(2.0)) == pytest.approx(1.0)


def test_adjoint_errors():
    with pytest.raises(ValueError, match="adjoint"):
        run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=5, adjoint="backsolve")
    with pytest.raises(ValueError, match="optimality_fn"):
        run_solver(Halving(0.1), jnp.asarray(1.0), max_steps=5, adjoint="implicit")
