"""More-Thuente line search against scipy's MINPACK-2 ``DCSRCH`` and the published tables of
More & Thuente (1994), closed forms, strong Wolfe conditions, failure statuses, jit / vmap /
no recompilation, float32, pytrees and bad input.

The references evaluate the same jax function ``phi(alpha) = f(x + alpha d)`` (float64), so
trial values are bit-identical and only the line-search arithmetic differs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize._dcsrch import DCSRCH

from opifex.second_order import MoreThuenteStatus, scale_by_more_thuente_linesearch


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------ the paper's functions


def _yanai(beta1, beta2):
    def gamma(beta):
        return np.sqrt(1.0 + beta**2) - beta

    def phi(a):
        return gamma(beta1) * jnp.sqrt((1.0 - a) ** 2 + beta2**2) + gamma(beta2) * jnp.sqrt(
            a**2 + beta1**2
        )

    return phi


def _kinked(a, beta=0.01, ell=39):
    base = jnp.where(
        a <= 1.0 - beta,
        1.0 - a,
        jnp.where(a >= 1.0 + beta, a - 1.0, (a - 1.0) ** 2 / (2.0 * beta) + beta / 2.0),
    )
    return base + 2.0 * (1.0 - beta) / (ell * jnp.pi) * jnp.sin(ell * jnp.pi * a / 2.0)


# More & Thuente (1994), Section 5, functions (5.1)-(5.4) with their parameters
_PHIS = (
    lambda a: -a / (a**2 + 2.0),
    lambda a: (a + 0.004) ** 5 - 2.0 * (a + 0.004) ** 4,
    _kinked,
    _yanai(1e-3, 1e-3),
    _yanai(1e-2, 1e-3),
    _yanai(1e-3, 1e-2),
)
# (slope_rtol, curv_rtol) of Tables 1-6
_TOLS = ((1e-3, 0.1), (0.1, 0.1), (0.1, 0.1), (1e-3, 1e-3), (1e-3, 1e-3), (1e-3, 1e-3))
_STARTS = (1e-3, 1e-1, 1e1, 1e3)
# Tables 1-6: (evaluations, final step to two digits) for each starting step
_PUBLISHED = (
    ((6, 1.4), (3, 1.4), (1, 10.0), (4, 37.0)),
    ((12, 1.6), (8, 1.6), (8, 1.6), (11, 1.6)),
    ((12, 1.0), (12, 1.0), (10, 1.0), (13, 1.0)),
    ((4, 0.085), (1, 0.10), (3, 0.35), (4, 0.83)),
    ((6, 0.075), (3, 0.078), (7, 0.073), (8, 0.076)),
    ((13, 0.93), (11, 0.93), (8, 0.92), (11, 0.92)),
)
TRACES = {"phi": 0}


def _objective(x, a0, k):
    """``phi_k(a0 * x)``: the first trial (step 1) is the paper's starting step ``a0``."""
    TRACES["phi"] += 1
    return jax.lax.switch(k, _PHIS, a0 * x[0])


_TASKS = {
    b"CONVERGENCE": MoreThuenteStatus.CONVERGED,
    b"WARNING: ROUNDING ERRORS PREVENT PROGRESS": MoreThuenteStatus.ROUNDING,
    b"WARNING: XTOL TEST SATISFIED": MoreThuenteStatus.XTOL,
    b"WARNING: STP = STPMAX": MoreThuenteStatus.MAX_STEPSIZE,
    b"WARNING: STP = STPMIN": MoreThuenteStatus.MIN_STEPSIZE,
}


@functools.cache
def _value_and_grad(fun):
    return jax.jit(jax.value_and_grad(fun))


def _scipy_search(fun, x, d, ftol, gtol, xtol, stpmin=0.0, stpmax=1e10, max_evals=100, args=()):
    """scipy's DCSRCH on ``phi(t) = fun(x + t d, *args)``: (step or None, trials, phi(0),
    status), each trial a ``(step, value)`` pair."""
    value_and_grad = _value_and_grad(fun)
    trials = []

    def phi(t):
        trials.append((t, float(value_and_grad(x + t * d, *args)[0])))
        return trials[-1][1]

    def derphi(t):
        return float(jnp.vdot(value_and_grad(x + t * d, *args)[1], d))

    phi0, derphi0 = phi(0.0), derphi(0.0)
    trials.clear()
    search = DCSRCH(phi, derphi, ftol, gtol, xtol, stpmin, stpmax)
    step, _, _, task = search(1.0, phi0=phi0, derphi0=derphi0, maxiter=max_evals)
    status = _TASKS.get(task, MoreThuenteStatus.MAX_STEPS)
    return step, trials, phi0, status


@functools.cache
def _compiled(fun, **options):
    """The jitted search from ``x`` along ``d``: ``(x, d, **args) -> (updates, state)`` with
    ``fun(x, **args)`` the objective (one compilation per objective, options and shapes)."""
    ls = scale_by_more_thuente_linesearch(**options)

    def run(x, d, **args):
        value, grad = jax.value_and_grad(fun)(x, **args)
        return ls.update(d, ls.init(x), x, value=value, grad=grad, value_fn=fun, **args)

    return jax.jit(run)


def _check_strong_wolfe(fun, x, d, step, ftol, gtol, args=()):
    """The strong Wolfe conditions at ``step`` for ``phi(t) = fun(x + t d, *args)``."""
    value_and_grad = _value_and_grad(fun)
    (f0, g0), (f, g) = (value_and_grad(x + t * d, *args) for t in (0.0, step))
    slope0, slope = float(jnp.vdot(g0, d)), float(jnp.vdot(g, d))
    assert float(f) <= float(f0) + ftol * step * slope0
    assert abs(slope) <= gtol * abs(slope0)


@pytest.mark.slow
@pytest.mark.parametrize("xtol", [0.1, 1e-12])
@pytest.mark.parametrize("k", range(6))
def test_matches_scipy_dcsrch_on_the_papers_functions(k, xtol):
    ftol, gtol = _TOLS[k]
    search = _compiled(
        _objective, max_linesearch_steps=100, slope_rtol=ftol, curv_rtol=gtol, xtol=xtol
    )
    x, d = jnp.zeros(1), jnp.ones(1)
    for j, a0 in enumerate(_STARTS):
        ref_step, trials, _, ref_status = _scipy_search(
            _objective, x, d, ftol, gtol, xtol, args=(a0, k)
        )
        updates, state = search(x, d, a0=a0, k=k)
        step = float(state.learning_rate)
        assert int(state.info.status) == ref_status
        assert int(state.info.num_linesearch_steps) == len(trials)
        np.testing.assert_allclose(float(updates[0]), step, rtol=0)
        if ref_status == MoreThuenteStatus.CONVERGED:
            np.testing.assert_allclose(step, ref_step, rtol=1e-10)
            _check_strong_wolfe(_objective, x, d, step, ftol, gtol, args=(a0, k))
        else:  # a warning: the trial with the lowest value
            best = min(trials, key=lambda tf: tf[1])
            np.testing.assert_allclose(step, best[0], rtol=1e-10)
        # the value and gradient at the accepted step are cached for the next iteration
        value, grad = _value_and_grad(_objective)(x + step * d, a0, k)
        np.testing.assert_allclose(float(state.value), float(value), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(state.grad), np.asarray(grad), rtol=1e-14)
        if xtol < 1e-6:  # the paper stops on the Wolfe conditions only: its Tables 1-6
            evals, alpha = _PUBLISHED[k][j]
            assert ref_status == MoreThuenteStatus.CONVERGED
            assert int(state.info.num_linesearch_steps) == evals
            assert float(f"{a0 * step:.2g}") == alpha


# ------------------------------------------------------------------ n-dimensional directions


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@functools.cache
def _directions():  # called inside the tests, so in float64
    x2 = jnp.array([-1.2, 1.0])
    g2 = jax.grad(_rosenbrock)(x2)
    hessian = np.array([[1200.0 * 1.44 - 400.0 + 2.0, 480.0], [480.0, 200.0]])  # at x2
    newton = jnp.asarray(-np.linalg.solve(hessian, np.asarray(g2)))
    x50 = jnp.asarray([-1.2, 1.0] * 25)
    g50 = jax.grad(_rosenbrock)(x50)
    return {
        "rosenbrock2_steepest": (x2, -g2 / jnp.linalg.norm(g2)),  # L-BFGS's first step
        "rosenbrock2_newton": (x2, newton),
        "rosenbrock50_steepest": (x50, -g50 / jnp.linalg.norm(g50)),
        "rosenbrock50_long": (x50, -g50 / 10.0),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["rosenbrock2_steepest", "rosenbrock2_newton", "rosenbrock50_steepest", "rosenbrock50_long"],
)
def test_matches_scipy_dcsrch_along_rosenbrock_directions(name):
    x, d = _directions()[name]
    updates, state = _compiled(_rosenbrock)(x, d)
    ref_step, trials, _, ref_status = _scipy_search(_rosenbrock, x, d, 1e-3, 0.9, 0.1)
    assert ref_status == MoreThuenteStatus.CONVERGED == int(state.info.status)
    assert int(state.info.num_linesearch_steps) == len(trials)
    np.testing.assert_allclose(float(state.learning_rate), ref_step, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(updates), ref_step * np.asarray(d), rtol=1e-10)
    _check_strong_wolfe(_rosenbrock, x, d, float(state.learning_rate), 1e-3, 0.9)


def test_quadratic_gets_the_exact_line_minimiser_on_the_second_trial():
    a = jnp.arange(1.0, 11.0) * 10.0
    fun = lambda x: 0.5 * jnp.sum(a * x**2) - jnp.sum(x)  # noqa: E731
    x = jnp.zeros(10)
    grad = jax.grad(fun)(x)
    _, state = _compiled(fun)(x, -grad)
    # closed form: g.g / g.A g along -g; step 1 overshoots, the cubic through two points of a
    # quadratic is exact
    exact = float(grad @ grad / (grad @ (a * grad)))
    assert int(state.info.num_linesearch_steps) == 2
    assert int(state.info.status) == MoreThuenteStatus.CONVERGED
    np.testing.assert_allclose(float(state.learning_rate), exact, rtol=1e-12)


# ------------------------------------------------------------------ warnings and failures


@pytest.mark.parametrize(
    ("fun", "bounds", "status"),
    [
        (lambda x: -x[0], {"max_stepsize": 10.0}, MoreThuenteStatus.MAX_STEPSIZE),
        (
            lambda x: -x[0] + 100.0 * x[0] ** 2,
            {"min_stepsize": 0.5},
            MoreThuenteStatus.MIN_STEPSIZE,
        ),
    ],
    ids=["max_stepsize", "min_stepsize"],
)
def test_step_bounds_stop_like_scipy(fun, bounds, status):
    x, d = jnp.zeros(1), jnp.ones(1)
    _, state = _compiled(fun, **bounds)(x, d)
    _, trials, phi0, ref_status = _scipy_search(
        fun, x, d, 1e-3, 0.9, 0.1, bounds.get("min_stepsize", 0.0), bounds.get("max_stepsize", 1e10)
    )
    assert int(state.info.status) == ref_status == status
    assert int(state.info.num_linesearch_steps) == len(trials)
    best_step, best_value = min([(0.0, phi0), *trials], key=lambda tf: tf[1])
    assert float(state.learning_rate) == pytest.approx(best_step, rel=1e-12)
    assert float(state.value) == pytest.approx(best_value, rel=1e-12)


def test_budget_exhausted_returns_the_best_trial():
    k, a0, budget = 2, 1e-3, 3  # Table 3 needs 12 evaluations
    search = _compiled(_objective, max_linesearch_steps=budget, slope_rtol=0.1, curv_rtol=0.1)
    x, d = jnp.zeros(1), jnp.ones(1)
    _, state = search(x, d, a0=a0, k=k)
    _, trials, phi0, _ = _scipy_search(
        _objective, x, d, 0.1, 0.1, 0.1, max_evals=budget, args=(a0, k)
    )
    assert int(state.info.status) == MoreThuenteStatus.MAX_STEPS
    assert int(state.info.num_linesearch_steps) == budget == len(trials)
    best_step, best_value = min([(0.0, phi0), *trials], key=lambda tf: tf[1])
    assert best_step > 0.0
    assert float(state.learning_rate) == pytest.approx(best_step, rel=1e-12)
    assert float(state.value) == pytest.approx(best_value, rel=1e-12)


def test_ascent_direction_or_nonfinite_start_takes_no_step():
    fun = lambda x: jnp.sum(x**2)  # noqa: E731
    ls = scale_by_more_thuente_linesearch()
    x = jnp.array([1.0, -2.0])
    value, grad = jax.value_and_grad(fun)(x)
    search = jax.jit(lambda d, v: ls.update(d, ls.init(x), x, value=v, grad=grad, value_fn=fun))
    for updates, start_value in ((grad, value), (-grad, jnp.nan), (jnp.zeros(2), value)):
        out, state = search(updates, start_value)
        assert int(state.info.status) == MoreThuenteStatus.NOT_DESCENT
        assert int(state.info.num_linesearch_steps) == 0
        assert float(state.learning_rate) == 0.0
        np.testing.assert_array_equal(np.asarray(out), np.zeros(2))


def test_nonfinite_trials_are_backed_off_from():
    fun = lambda x: (x[0] - 1.0) ** 2 - jnp.log(3.0 - x[0])  # noqa: E731  NaN for x >= 3
    x, d = jnp.zeros(1), jnp.array([8.0])
    _, state = _compiled(fun)(x, d)
    assert int(state.info.status) == MoreThuenteStatus.CONVERGED
    assert int(state.info.num_linesearch_steps) >= 2  # x = 8 and 4 are NaN
    assert np.isfinite(float(state.value))
    _check_strong_wolfe(fun, x, d, float(state.learning_rate), 1e-3, 0.9)


def test_only_nonfinite_trials_is_a_detectable_failure():
    fun = lambda x: jnp.where(x[0] > 0.0, jnp.nan, -x[0])  # noqa: E731
    x = jnp.zeros(1)
    value = fun(x)
    updates, state = _compiled(fun, max_linesearch_steps=6)(x, jnp.ones(1))
    assert int(state.info.status) == MoreThuenteStatus.MAX_STEPS
    assert int(state.info.num_linesearch_steps) == 6
    assert float(state.learning_rate) == 0.0 and float(updates[0]) == 0.0
    assert float(state.value) == float(value)


# ------------------------------------------------------------------ jit, vmap, dtypes, pytrees


@pytest.mark.slow
def test_jit_vmap_and_no_recompilation():
    search = _compiled(
        _objective, max_linesearch_steps=100, slope_rtol=1e-3, curv_rtol=1e-3, xtol=1e-12
    )
    batched = jax.jit(jax.vmap(lambda x, d, a0, k: search(x, d, a0=a0, k=k), (None, None, 0, None)))
    x, d = jnp.zeros(1), jnp.ones(1)
    k = 4  # Table 5
    _, states = batched(x, d, jnp.asarray(_STARTS), k)
    np.testing.assert_array_equal(np.asarray(states.info.num_linesearch_steps), [6, 3, 7, 8])
    for j, a0 in enumerate(_STARTS):  # each element is its unbatched search
        _, single = search(x, d, a0=a0, k=k)
        np.testing.assert_allclose(
            float(states.learning_rate[j]), float(single.learning_rate), rtol=1e-12
        )
    traces = TRACES["phi"]
    batched(x, d, jnp.asarray(_STARTS) * 2.0, k)
    search(x, d, a0=0.5, k=3)
    assert TRACES["phi"] == traces


def test_float32_stays_float32_and_agrees_with_float64():
    x64, d64 = _directions()["rosenbrock2_steepest"]
    steps = {}
    for dtype in (jnp.float32, jnp.float64):
        updates, state = _compiled(_rosenbrock)(x64.astype(dtype), d64.astype(dtype))
        assert int(state.info.status) == MoreThuenteStatus.CONVERGED
        for leaf in (updates, state.learning_rate, state.value, state.grad):
            assert leaf.dtype == dtype
        steps[dtype] = float(state.learning_rate)
    assert steps[jnp.float32] == pytest.approx(steps[jnp.float64], rel=1e-4)


@pytest.mark.slow
def test_pytree_params_match_the_flat_search():
    def tree_fun(p):
        return _rosenbrock(jnp.concatenate([p["a"], p["b"][None]]))

    x, d = _directions()["rosenbrock50_long"]
    x, d = x[:3], d[:3]
    _, flat = _compiled(_rosenbrock)(x, d)

    def tree(v):
        return {"a": v[:2], "b": v[2]}

    updates, state = _compiled(tree_fun)(tree(x), tree(d))
    assert jax.tree.structure(updates) == jax.tree.structure(tree(x))
    assert int(state.info.num_linesearch_steps) == int(flat.info.num_linesearch_steps)
    np.testing.assert_allclose(float(state.learning_rate), float(flat.learning_rate), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(state.grad["a"]), np.asarray(flat.grad[:2]), rtol=1e-14)


def test_state_fields_are_what_the_solvers_read():
    x = jnp.zeros(2)
    opt = optax.lbfgs(linesearch=scale_by_more_thuente_linesearch())
    state = opt.init(x)
    for name in ("value", "grad", "num_linesearch_steps", "learning_rate", "status"):
        optax.tree.get(state, name)  # present once, so optax.tree.get finds it
    fun = lambda x: jnp.sum((x - 1.0) ** 4) + jnp.sum(x**2)  # noqa: E731
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    params = x
    for _ in range(20):
        params, state = step(params, state)
    # the minimiser solves 4 (x - 1)^3 + 2 x = 0
    np.testing.assert_allclose(
        4 * (np.asarray(params) - 1) ** 3 + 2 * np.asarray(params), 0, atol=1e-9
    )


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_linesearch_steps": 0}, ValueError, "max_linesearch_steps"),
        ({"max_linesearch_steps": 2.0}, TypeError, "max_linesearch_steps"),
        ({"slope_rtol": 0.0}, ValueError, "slope_rtol"),
        ({"slope_rtol": 1.0}, ValueError, "slope_rtol"),
        ({"curv_rtol": 1.5}, ValueError, "curv_rtol"),
        ({"curv_rtol": float("nan")}, ValueError, "curv_rtol"),
        ({"xtol": -0.1}, ValueError, "xtol"),
        ({"min_stepsize": -1.0}, ValueError, "min_stepsize"),
        ({"max_stepsize": 0.0}, ValueError, "max_stepsize"),
        ({"min_stepsize": 2.0, "max_stepsize": 1.0}, ValueError, "max_stepsize"),
        ({"slope_rtol": "1e-3"}, TypeError, "slope_rtol"),
    ],
)
def test_bad_options_raise(options, error, match):
    with pytest.raises(error, match=match):
        scale_by_more_thuente_linesearch(**options)
