"""L-BFGS: convergence against scipy's L-BFGS-B, jit / vmap / no recompilation, pytrees,
failure statuses and bad input.

Everything numeric runs in float64 (``jax.enable_x64`` around each test).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import minimize as scipy_minimize
from scipy.optimize import rosen, rosen_der

from opifex.second_order import (
    LBFGSConfig,
    LBFGSSolver,
    create_lbfgs_optimizer,
    minimize,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


TRACES = {"rosenbrock": 0}


def rosenbrock(x):
    """Chained Rosenbrock: sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 (scipy's ``rosen``)."""
    TRACES["rosenbrock"] += 1  # counts traces (Python calls), not evaluations under jit
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _start(n):
    return jnp.asarray([-1.2 if i % 2 == 0 else 1.0 for i in range(n)])


TIGHT = LBFGSConfig(atol=1e-8, max_steps=1000)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, pytest.param(100, marks=pytest.mark.e2e)])
def test_rosenbrock_converges_like_scipy_lbfgsb(n):
    x0 = _start(n)
    result = minimize(rosenbrock, x0, config=TIGHT)
    assert result.status_name == "SUCCESS" and bool(result.converged)
    assert float(result.grad_norm) < 1e-8
    np.testing.assert_allclose(np.asarray(result.params), np.ones(n), atol=1e-7)
    # the independent reference: scipy's L-BFGS-B (Fortran) from the same start
    reference = scipy_minimize(
        lambda x: (rosen(x), rosen_der(x)),
        np.asarray(x0),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 5000, "maxfun": 10000},
    )
    assert reference.success
    np.testing.assert_allclose(np.asarray(result.params), reference.x, atol=1e-7)
    assert abs(float(result.value) - reference.fun) < 1e-12
    # honest counts: one evaluation at x0 plus at least one per iteration
    stats = {k: int(v) for k, v in result.stats.items()}
    assert stats["num_fun_evals"] == stats["num_grad_evals"] >= int(result.num_steps) + 1
    # same order of work as L-BFGS-B (which needed reference.nfev evaluations)
    assert stats["num_fun_evals"] <= 2 * reference.nfev
    # the trace: value at x0 first, non-increasing, NaN-padded after the last step
    values = np.asarray(result.trace["value"])
    k = int(result.num_steps)
    assert values[0] == pytest.approx(float(rosenbrock(x0)))
    assert np.all(np.diff(values[: k + 1]) <= 1e-12 * np.abs(values[:k]))
    assert np.all(np.isnan(values[k + 1 :]))


def extended_rosenbrock(x):
    """MGH problem 21: independent 2-D Rosenbrock pairs (minimum 0 at ones)."""
    return jnp.sum(100.0 * (x[1::2] - x[::2] ** 2) ** 2 + (1.0 - x[::2]) ** 2)


@pytest.mark.slow
@pytest.mark.parametrize(("fun", "n"), [(rosenbrock, 2), (extended_rosenbrock, 100)])
def test_backtracking_line_search_converges(fun, n):
    # every search starts at the quasi-Newton step 1 and an Armijo failure restarts L-BFGS:
    # with optax's default growth of the previous step, 100-D extended Rosenbrock stalled
    result = minimize(fun, _start(n), config=dataclasses.replace(TIGHT, line_search="backtracking"))
    assert result.status_name == "SUCCESS" and float(result.grad_norm) < 1e-8
    np.testing.assert_allclose(np.asarray(result.params), np.ones(n), atol=1e-7)
    stats = {k: int(v) for k, v in result.stats.items()}
    # backtracking evaluates values on the way and one gradient per iteration, rejected
    # (restarted) iterations included
    assert stats["num_grad_evals"] >= int(result.num_steps) + 1
    assert stats["num_fun_evals"] >= stats["num_grad_evals"]


@pytest.mark.slow
def test_jit_vmap_and_no_recompilation():
    config = TIGHT
    batch = jnp.stack([_start(2), jnp.array([2.0, 2.0]), jnp.array([-0.5, 0.3]), jnp.zeros(2)])
    solve = jax.jit(jax.vmap(lambda x0: minimize(rosenbrock, x0, config=config)))
    results = solve(batch)
    assert results.params.shape == (4, 2)
    assert bool(jnp.all(results.converged))
    np.testing.assert_allclose(np.asarray(results.params), np.ones((4, 2)), atol=1e-7)
    # each element took its own number of steps
    assert len(set(np.asarray(results.num_steps).tolist())) > 1
    # a single (unbatched) solve agrees with its batch element
    single = minimize(rosenbrock, batch[1], config=config)
    np.testing.assert_allclose(np.asarray(single.params), np.asarray(results.params[1]), atol=1e-12)
    # second calls with new values do not retrace (hence do not recompile)
    traces = TRACES["rosenbrock"]
    solve(batch + 0.1)
    minimize(rosenbrock, batch[2], config=config)
    assert TRACES["rosenbrock"] == traces


@pytest.mark.slow
def test_pytree_params_and_traced_args():
    def fun(params, target, scale):
        return scale * (
            jnp.sum((params["w"] - target) ** 2) + (params["b"] - 1.0) ** 2 + params["w"][0] ** 4
        )

    x0 = {"w": jnp.zeros(3), "b": jnp.asarray(5.0)}
    config = LBFGSConfig(atol=1e-10)
    first = minimize(fun, x0, jnp.array([1.0, -2.0, 0.5]), 2.0, config=config)
    assert bool(first.converged)
    assert jax.tree.structure(first.params) == jax.tree.structure(x0)
    assert float(first.params["b"]) == pytest.approx(1.0, abs=1e-9)
    # w0 solves 2 (w0 - 1) + 4 w0^3 = 0
    w0 = float(first.params["w"][0])
    assert 2 * (w0 - 1) + 4 * w0**3 == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(np.asarray(first.params["w"][1:]), [-2.0, 0.5], atol=1e-9)
    # the args are traced: another target reuses the compiled solver
    second = minimize(fun, x0, jnp.array([0.0, 3.0, 1.0]), 2.0, config=config)
    np.testing.assert_allclose(np.asarray(second.params["w"][1:]), [3.0, 1.0], atol=1e-9)


@pytest.mark.slow
def test_optax_transformation_matches_the_solver():
    fun = lambda x: jnp.sum((x - jnp.arange(3.0)) ** 2 * jnp.array([1.0, 10.0, 100.0]))  # noqa: E731
    opt = create_lbfgs_optimizer(LBFGSConfig())
    assert isinstance(opt, optax.GradientTransformationExtraArgs)
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    params, state = jnp.zeros(3), opt.init(jnp.zeros(3))
    for _ in range(15):
        params, state = step(params, state)
    np.testing.assert_allclose(np.asarray(params), [0.0, 1.0, 2.0], atol=1e-8)


def test_solver_protocol_object():
    solver = LBFGSSolver(rosenbrock, TIGHT)
    state = solver.init(_start(2))
    assert int(state.num_steps) == 0 and int(state.num_fun_evals) == 1
    done, _ = solver.terminate(state)
    assert not bool(done)
    result = solver.run(_start(2))  # same objective and config as above: no new compile
    assert bool(result.converged)


# ------------------------------------------------------------------ failure statuses

_X0 = (-1.2, 1.0)  # a tuple, so that arrays made from it follow the x64 setting


@jax.custom_jvp
def _flat(x):
    return 1.0 + 0.0 * jnp.sum(x)


@_flat.defjvp
def _flat_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _flat(x), jnp.sum(dx)  # claims gradient ones: no step can decrease the value


def _tricky(x, mode):
    """One objective family (one compilation) for every failure mode, chosen by ``mode``."""
    return jax.lax.switch(
        mode,
        [
            lambda x: jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2),
            lambda x: jnp.sum(jnp.log(x)),  # NaN at x0
            lambda x: jnp.sum(x**2) + 10.0 * jnp.any(x != jnp.asarray(_X0)),  # any step: +10
            _flat,
        ],
        x,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "line_search", "status"),
    [
        (0, "backtracking", "MAX_STEPS_REACHED"),
        (1, "backtracking", "NONFINITE"),
        (2, "backtracking", "LINE_SEARCH_FAILED"),
        (2, "more_thuente", "LINE_SEARCH_FAILED"),
        (3, "backtracking", "LINE_SEARCH_FAILED"),  # no Armijo decrease on a flat function
        (3, "more_thuente", "LINE_SEARCH_FAILED"),  # no trial decreased the value
        (3, "zoom", "STALLED"),  # zoom accepts equal values (approximate Wolfe)
    ],
)
def test_failures_are_status_codes_never_converged(mode, line_search, status):
    config = LBFGSConfig(max_steps=10, atol=1e-8, line_search=line_search)
    x0 = jnp.asarray(_X0)
    assert x0.dtype == jnp.float64
    result = minimize(_tricky, x0, mode, config=config)
    assert result.status_name == status
    assert not bool(result.converged)
    if status == "LINE_SEARCH_FAILED":  # rejected steps are never taken
        np.testing.assert_array_equal(np.asarray(result.params), np.asarray(_X0))
        assert int(result.num_steps) == 0
    if status == "MAX_STEPS_REACHED":
        assert int(result.num_steps) == 10


# ------------------------------------------------------------------ attainable precision

_Q = np.linalg.qr(np.random.default_rng(0).standard_normal((10, 10)))[0]
_A = _Q @ np.diag(np.logspace(0, 3, 10)) @ _Q.T  # condition number 1e3
_C = np.random.default_rng(1).standard_normal(10)


def _quadratic(x):
    """``0.5 (x - c)^T A (x - c)``: minimiser ``c`` (closed form), minimum 0."""
    d = x - jnp.asarray(_C, x.dtype)
    return 0.5 * d @ jnp.asarray(_A, x.dtype) @ d


@pytest.mark.slow
@pytest.mark.parametrize("line_search", ["more_thuente", "zoom"])
@pytest.mark.parametrize("tolerance", [None, 1e-15])
def test_a_stop_at_rounding_level_is_success(line_search, tolerance):
    """Solved to rounding, no line search can decrease f: a success, not a failure."""
    x0 = jnp.zeros(10)
    config = LBFGSConfig(atol=tolerance, line_search=line_search, max_steps=2000)
    result = minimize(_quadratic, x0, config=config)
    assert result.status_name == "SUCCESS" and bool(result.converged)
    # within rounding of the closed-form minimiser (|c| ~ 1, condition number 1e3)
    np.testing.assert_allclose(np.asarray(result.params), _C, rtol=0, atol=1e-12)
    assert float(result.value) < 1e-24
    if tolerance is not None:  # unattainable: the run ended on the line search
        assert float(result.grad_norm) > tolerance
        grad0 = float(jnp.linalg.norm(jax.grad(_quadratic)(x0)))
        assert float(result.grad_norm) <= np.sqrt(np.finfo(float).eps) * grad0


@pytest.mark.slow
def test_float32_stops_where_float32_can():
    x0 = jnp.zeros(10, jnp.float32)
    result = minimize(_quadratic, x0, atol=1e-12, max_steps=2000)  # unattainable
    assert result.params.dtype == jnp.float32
    assert result.status_name == "SUCCESS"
    # float32 resolves x to about condition number * eps32 ~ 1e-4 here
    np.testing.assert_allclose(np.asarray(result.params, np.float64), _C, rtol=0, atol=1e-4)


def test_a_real_failure_stays_a_failure():
    """A non-smooth objective (|.|, minimum at a kink): the line search fails with the
    gradient norm where it started, which is no stop at attainable precision."""
    result = minimize(lambda x: jnp.sum(jnp.abs(x - jnp.asarray(_C))), jnp.zeros(10))
    assert result.status_name in ("LINE_SEARCH_FAILED", "STALLED")
    assert not bool(result.converged)
    assert float(result.grad_norm) == pytest.approx(np.sqrt(10.0))  # |sign| = 1 everywhere


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_clear_errors():
    fun = lambda x: jnp.sum(x**2)  # noqa: E731
    with pytest.raises(ValueError, match=r"x0.*NaN"):
        minimize(fun, jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match=r"x0.*inf"):
        minimize(fun, {"a": jnp.array([jnp.inf])})
    with pytest.raises(ValueError, match="empty pytree"):
        minimize(fun, {})
    with pytest.raises(TypeError, match="floating-point"):
        minimize(fun, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="scalar"):
        minimize(lambda x: x**2, jnp.ones(3))
    with pytest.raises(TypeError, match="callable"):
        minimize("not a function", jnp.ones(3))
    # a float64 objective of float32 parameters, or mixed parameter dtypes
    with pytest.raises(TypeError, match=r"one floating-point dtype.*float32.*float64"):
        minimize(lambda x: jnp.sum(x.astype(jnp.float64) ** 2), jnp.ones(3, jnp.float32))
    with pytest.raises(TypeError, match="one floating-point dtype"):
        minimize(
            lambda p: p["a"].sum() ** 2 + p["b"].sum() ** 2,
            {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2)},
        )
    with pytest.raises(ValueError, match="line_search"):
        minimize(fun, jnp.ones(3), line_search="wolfe")
    with pytest.raises(ValueError, match=r"unknown options.*tol"):
        minimize(fun, jnp.ones(3), tol=1e-3)
    with pytest.raises(TypeError, match="LBFGSConfig"):
        minimize(fun, jnp.ones(3), config={"atol": 1e-3})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("memory_size", 0, ValueError),
        ("memory_size", 2.5, TypeError),
        ("max_steps", -1, ValueError),
        ("atol", -1e-3, ValueError),
        ("atol", float("nan"), ValueError),
        ("atol", "1e-3", TypeError),
        ("rtol", -1.0, ValueError),
        ("line_search", "hager-zhang", ValueError),
        ("max_linesearch_steps", 0, ValueError),
    ],
)
def test_config_validation(field, value, error):
    with pytest.raises(error, match=field):
        LBFGSConfig(**{field: value})


def test_config_is_frozen_and_hashable():
    config = LBFGSConfig()
    assert config.atol is None and config.rtol is None  # eps of the dtype times ||grad f(x0)||
    assert hash(config) == hash(LBFGSConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.atol = 1.0


# --------------------------------------------------------------------------------------------
# the one solver contract: implicit derivatives, a traced budget, old spellings


@pytest.mark.e2e
def test_minimize_is_differentiable_in_its_data_like_the_closed_form():
    # ridge regression: x*(lam) = (A^T A + lam I)^-1 A^T b, dx*/dlam = -(A^T A + lam I)^-1 x*
    rng = np.random.default_rng(3)
    A, b = jnp.asarray(rng.normal(size=(8, 4))), jnp.asarray(rng.normal(size=8))

    def ridge(x, lam):
        return 0.5 * jnp.sum((A @ x - b) ** 2) + 0.5 * lam * jnp.sum(x**2)

    def solution(lam):
        return minimize(ridge, jnp.zeros(4), lam).params

    lam = 0.7
    H = np.asarray(A.T @ A) + lam * np.eye(4)
    x_star = np.linalg.solve(H, np.asarray(A.T @ b))
    # a line search resolves x* to about sqrt(eps) (f is flat there): derivatives at that x*
    np.testing.assert_allclose(solution(lam), x_star, rtol=1e-7)
    expected = -np.linalg.solve(H, x_star)
    np.testing.assert_allclose(jax.jacobian(solution)(lam), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(solution)(lam), expected, rtol=1e-6)
    # and against central differences of converged solutions (step 1e-4: truncation ~1e-8,
    # noise ~ sqrt(eps) / step ~ 1e-4 relative at worst)
    h = 1e-4
    central = (np.asarray(solution(lam + h)) - np.asarray(solution(lam - h))) / (2 * h)
    np.testing.assert_allclose(jax.jacobian(solution)(lam), central, rtol=1e-3, atol=1e-7)
    # the value's derivative is the envelope theorem's: dF/dlam = 0.5 ||x*||^2
    value = jax.grad(lambda lam: minimize(ridge, jnp.zeros(4), lam).value)(lam)
    np.testing.assert_allclose(value, 0.5 * x_star @ x_star, rtol=1e-6)


@pytest.mark.slow
def test_a_new_budget_does_not_recompile_with_a_fixed_trace_length():
    traced = []

    def counted(x):
        traced.append(1)
        return _quadratic(x)

    x0 = jnp.zeros(10)
    results = [minimize(counted, x0, max_steps=n, trace_length=64, atol=0.0) for n in (2, 5, 9)]
    first = len(traced)
    results.append(minimize(counted, x0, max_steps=12, trace_length=64, atol=0.0))
    assert len(traced) == first  # no retrace for a new budget
    assert [int(r.num_steps) for r in results] == [2, 5, 9, 12]
    assert all(r.trace["value"].shape == (65,) for r in results)


@pytest.mark.slow
def test_old_spellings_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'max_iterations' is deprecated"):
        config = LBFGSConfig(max_iterations=7, tolerance=1e-3)
    assert (config.max_steps, config.atol) == (7, 1e-3)
    with pytest.warns(DeprecationWarning, match="'tolerance' is deprecated"):
        result = minimize(lambda x: jnp.sum(x**2), jnp.ones(2), tolerance=1e-6)
    assert result.converged


@pytest.mark.slow
def test_the_default_budget_scales_with_the_number_of_unknowns():
    assert [LBFGSConfig().budget(n) for n in (1, 50, 51, 1000)] == [500, 500, 510, 10_000]
    assert LBFGSConfig(max_steps=3).budget(1000) == 3
    # minimize resolves it at call time: the trace holds budget + 1 entries
    result = minimize(lambda x: jnp.sum(x**2), jnp.ones(60), atol=1e30)
    assert result.trace["value"].shape == (601,)
