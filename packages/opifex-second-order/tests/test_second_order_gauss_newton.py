"""Gauss-Newton / Levenberg-Marquardt: the MGH test set against its published optima,
jit / vmap / no recompilation, pytrees, the matrix-free path, implicit differentiation against
finite differences, failure statuses and bad input.

References: Moré, Garbow & Hillstrom (1981) optimal values (printed to 6 significant digits,
recorded in ``opifex.second_order._mgh``), ``scipy.optimize.least_squares`` for a curve fit,
central finite differences for derivatives of the solution. float64 throughout.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares as scipy_least_squares

from opifex.core import run_solver
from opifex.second_order import (
    GaussNewtonConfig,
    GaussNewtonSolver,
    create_gauss_newton_solver,
    get_mgh_problem,
    least_squares,
    mgh_problems,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# A published value with 6 significant digits is matched to half a unit in the 6th digit;
# a published zero optimum counts as reached below this sum of squares.
SIX_DIGITS = 5e-6
ZERO_F = 1e-12

LM = GaussNewtonConfig(max_steps=500)  # Levenberg-Marquardt, MINPACK's trust region
NIELSEN = dataclasses.replace(LM, damping_update="nielsen")
# run to rounding level (the curve-fit tests compare solutions and difference them)
FIT = dataclasses.replace(LM, ftol=0.0, xtol=0.0, gtol=0.0, atol=1e-13)
GN = dataclasses.replace(LM, method="gauss_newton")


def _reached(f: float, problem) -> bool:
    """``f = sum r^2`` equals one of the problem's published optimal values."""
    for published in problem.optimum_values:
        tol = 1e-10 if problem.name.startswith("linear_") else SIX_DIGITS
        if (published == 0.0 and f <= ZERO_F) or abs(f - published) <= tol * abs(published):
            return True
    return False


def _solve_mgh(name: str, config: GaussNewtonConfig):
    problem = get_mgh_problem(name)
    result = least_squares(problem.residual_fn, problem.initial_params(), config=config)
    return problem, result


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("rosenbrock", LM),
        ("powell_singular", LM),
        ("bard", LM),
        ("helical_valley", NIELSEN),
        ("rosenbrock", GN),
    ],
    ids=["rosenbrock", "powell_singular", "bard", "helical_valley_nielsen", "rosenbrock_gn"],
)
def test_mgh_problems_reach_their_published_optimum(name, config):
    problem, result = _solve_mgh(name, config)
    f = 2.0 * float(result.value)  # value is 0.5 ||r||^2, MGH's f is ||r||^2
    assert result.status_name == "SUCCESS", result.status_name
    assert _reached(f, problem), (f, problem.optimum_values)
    if problem.optimum_x is not None and problem.optimum_value == 0.0:
        # Powell singular has a singular Jacobian at x*: f ~ |x - x*|^4, so x is less accurate
        atol = 1e-3 if name == "powell_singular" else 1e-6
        np.testing.assert_allclose(
            np.asarray(result.params), np.asarray(problem.optimum_x), atol=atol
        )
    # honest counters: one residual and one Jacobian at x0, at least one residual per step
    stats = {k: int(v) for k, v in result.stats.items()}
    assert stats["num_fun_evals"] >= int(result.num_steps) + 1
    assert stats["num_jac_evals"] == int(result.num_steps) + 1
    # the trace starts at f(x0) and never increases beyond rounding (every accepted step
    # decreases ||r||, except steps at rounding level, which are taken as exact)
    values = np.asarray(result.trace["value"][: int(result.num_steps) + 1])
    assert 2.0 * values[0] == pytest.approx(float(problem.value(problem.initial_params())))
    assert np.all(np.diff(values) <= 64 * np.finfo(float).eps * values[0])


@pytest.mark.e2e
@pytest.mark.parametrize("name", [p.name for p in mgh_problems()])
def test_every_mgh_problem_reaches_a_published_optimum(name):
    problem, result = _solve_mgh(name, LM)
    f = 2.0 * float(result.value)
    assert bool(result.converged), result.status_name
    assert _reached(f, problem), (f, problem.optimum_values)


@pytest.mark.slow
def test_jit_vmap_over_starting_points():
    problem = get_mgh_problem("rosenbrock")
    starts = jnp.array([[-1.2, 1.0], [2.0, -1.0], [0.5, 0.5], [-3.0, 4.0]])
    solve = jax.jit(jax.vmap(lambda x0: least_squares(problem.residual_fn, x0, config=LM)))
    results = solve(starts)
    assert bool(jnp.all(results.converged))
    np.testing.assert_allclose(np.asarray(results.params), np.ones((4, 2)), atol=1e-7)
    single = least_squares(problem.residual_fn, starts[0], config=LM)
    np.testing.assert_allclose(np.asarray(single.params), np.asarray(results.params[0]), atol=1e-12)
    assert int(single.num_steps) == int(results.num_steps[0])


# ------------------------------------------------------------------ curve fit: pytrees, args

T = np.linspace(0.0, 2.0, 15)
TRACES = {"fit": 0}


def fit_residual(params, t, y):
    """Residuals as a pytree (a dict of two arrays) for dict params."""
    TRACES["fit"] += 1
    model = params["amplitude"] * jnp.exp(-params["rate"] * t) + params["offset"][0]
    return {"data": model - y, "prior": 1e-2 * (params["offset"] - 0.1)}


def _data(noise_scale=0.05):
    return 2.5 * np.exp(-1.3 * T) + 0.3 + noise_scale * np.sin(5.0 * T)


X0 = {"amplitude": 1.0, "rate": 0.5, "offset": (0.0,)}


def _x0():
    return jax.tree.map(jnp.asarray, X0, is_leaf=lambda v: isinstance(v, tuple))


def _scipy_fit(y):
    def residual(p):
        a, k, c = p
        return np.concatenate([a * np.exp(-k * T) + c - y, [1e-2 * (c - 0.1)]])

    return scipy_least_squares(
        residual, [1.0, 0.5, 0.0], method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15
    ).x


@pytest.mark.slow
def test_pytree_params_and_residuals_match_scipy_and_do_not_recompile():
    y = _data()
    result = least_squares(fit_residual, _x0(), jnp.asarray(T), jnp.asarray(y), config=FIT)
    assert bool(result.converged) and float(result.grad_norm) <= 1e-13
    assert jax.tree.structure(result.params) == jax.tree.structure(_x0())
    got = [
        float(result.params["amplitude"]),
        float(result.params["rate"]),
        float(result.params["offset"][0]),
    ]
    np.testing.assert_allclose(got, _scipy_fit(y), rtol=1e-8)
    # new data values: traced, so no retrace (hence no recompilation)
    traces = TRACES["fit"]
    again = least_squares(fit_residual, _x0(), jnp.asarray(T), jnp.asarray(_data(0.1)), config=FIT)
    assert TRACES["fit"] == traces
    np.testing.assert_allclose(float(again.params["rate"]), _scipy_fit(_data(0.1))[1], rtol=1e-8)


def test_matrix_free_cg_path_matches_the_dense_path():
    y = jnp.asarray(_data())
    config = dataclasses.replace(LM, linear_solver="cg")  # auto: Nielsen damping
    result = least_squares(fit_residual, _x0(), jnp.asarray(T), y, config=config)
    dense = least_squares(fit_residual, _x0(), jnp.asarray(T), y, config=FIT)
    assert bool(result.converged)
    for key in ("amplitude", "rate", "offset"):
        np.testing.assert_allclose(
            np.asarray(result.params[key]), np.asarray(dense.params[key]), rtol=1e-6
        )
    assert "damping" in result.trace


@pytest.mark.slow
def test_implicit_differentiation_matches_finite_differences():
    def solution(y):
        result = least_squares(fit_residual, _x0(), jnp.asarray(T), y, config=FIT)
        return jnp.stack(
            [result.params["amplitude"], result.params["rate"], result.params["offset"][0]]
        )

    y = jnp.asarray(_data())
    jacobian = np.asarray(jax.jacrev(solution)(y))
    eps = 1e-6  # central differences of solutions converged to rounding level
    columns = []
    for i in range(y.shape[0]):
        step = jnp.zeros_like(y).at[i].set(eps)
        columns.append(
            (np.asarray(solution(y + step)) - np.asarray(solution(y - step))) / (2 * eps)
        )
    finite_differences = np.stack(columns, axis=1)
    scale = np.abs(finite_differences).max()
    np.testing.assert_allclose(jacobian, finite_differences, atol=1e-6 * scale)
    # the value is differentiable too (envelope theorem: d value / dy = -r_data)
    value_grad = jax.grad(
        lambda y: least_squares(fit_residual, _x0(), jnp.asarray(T), y, config=FIT).value
    )(y)
    result = least_squares(fit_residual, _x0(), jnp.asarray(T), y, config=FIT)
    residual = fit_residual(result.params, jnp.asarray(T), y)["data"]
    np.testing.assert_allclose(np.asarray(value_grad), -np.asarray(residual), atol=1e-10)


# ------------------------------------------------------------------ statuses and the protocol

FLAT_JACOBIAN = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]])


@jax.custom_jvp
def _lying(x):
    return jnp.ones(3) + 0.0 * jnp.sum(x)


@_lying.defjvp
def _lying_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _lying(x), jnp.asarray(FLAT_JACOBIAN) @ dx  # a Jacobian no step can honour


def _tricky(x, mode):
    """One residual family (one compilation) for every failure mode, chosen by ``mode``."""
    return jax.lax.switch(
        mode,
        [
            lambda x: jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0], 0.0 * x[0]]),
            _lying,
            lambda x: jnp.log(x[0] - 5.0) * jnp.ones(3),  # NaN at x0
        ],
        x,
    )


@pytest.mark.parametrize(
    ("mode", "status"), [(0, "MAX_STEPS_REACHED"), (1, "STALLED"), (2, "NONFINITE")]
)
def test_solver_protocol_and_failure_statuses(mode, status):
    # from x = 0 (where MINPACK's relative xtol test cannot pass on a collapsing radius)
    result = _run(_PROTOCOL_SOLVER, jnp.zeros(2), mode)
    assert result.status_name == status
    assert not bool(result.converged)
    if status == "MAX_STEPS_REACHED":
        assert int(result.num_steps) == 3
    if status == "STALLED":  # no step was ever taken
        np.testing.assert_array_equal(np.asarray(result.params), [0.0, 0.0])
        assert float(result.grad_norm) > 1.0


_PROTOCOL_SOLVER = create_gauss_newton_solver(GaussNewtonConfig(), _tricky)


def _curve(x):
    return jnp.stack([x[0] ** 2 - 2.0, x[1] - 1.0, x[0] * x[1]])


@jax.custom_jvp
def _wrong_sign(x):
    return _curve(x)


@_wrong_sign.defjvp
def _wrong_sign_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _curve(x), -jax.jvp(_curve, (x,), (dx,))[1]  # every model step goes uphill


@pytest.mark.slow
@pytest.mark.parametrize(
    "residual",
    [_wrong_sign, lambda x: jnp.stack([jnp.abs(x[0]) + 1.0, x[1] - 3.0])],
    ids=["wrong_jacobian", "kink"],
)
def test_small_steps_away_from_a_stationary_point_are_no_success(residual):
    """MINPACK's xtol test passes once the trust radius has collapsed, also where no step can
    decrease ||r|| (a Jacobian that does not match the residual; the minimum of a kink, where
    J^T r does not vanish): that is STALLED here, never SUCCESS."""
    result = least_squares(residual, jnp.array([0.7, 2.0]))
    assert result.status_name == "STALLED" and not bool(result.converged)
    assert float(result.grad_norm) > 0.5  # far from stationary


_run = jax.jit(lambda solver, x0, mode: run_solver(solver, x0, mode, max_steps=3), static_argnums=0)


def test_unbound_solver_and_bind():
    solver = create_gauss_newton_solver(LM)
    assert isinstance(solver, GaussNewtonSolver) and solver.config is LM
    with pytest.raises(TypeError, match="no residual function"):
        solver.init(jnp.zeros(2))
    bound = solver.bind(get_mgh_problem("rosenbrock").residual_fn)
    state = jax.eval_shape(bound.init, jnp.array([-1.2, 1.0]))  # traced, not compiled
    assert state.jacobian.shape == (2, 2) and state.residual.shape == (2,)
    assert state.num_steps.dtype == jnp.int32 and state.done.dtype == jnp.bool_


# ------------------------------------------------------------------ bad input


def test_bad_input_raises_clear_errors():
    residual = lambda x: x - 1.0  # noqa: E731
    with pytest.raises(ValueError, match="NaN or inf"):
        least_squares(residual, jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match="empty pytree"):
        least_squares(residual, {})
    with pytest.raises(TypeError, match="floating-point"):
        least_squares(residual, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="at least one residual"):
        least_squares(lambda x: jnp.zeros((0,)), jnp.ones(2))
    with pytest.raises(TypeError, match="floating-point residuals"):
        least_squares(lambda x: jnp.ones(2, jnp.int32), jnp.ones(2))
    with pytest.raises(ValueError, match="shape"):  # an MGH residual checks its input shape
        least_squares(get_mgh_problem("rosenbrock").residual_fn, jnp.ones(3))
    with pytest.raises(TypeError, match="callable"):
        least_squares(None, jnp.ones(2))
    with pytest.raises(TypeError, match=r"one floating-point dtype.*float32.*float64"):
        least_squares(lambda x: x.astype(jnp.float64) - 1.0, jnp.ones(2, jnp.float32))
    with pytest.raises(ValueError, match="method"):
        least_squares(residual, jnp.ones(2), method="dogleg")
    with pytest.raises(ValueError, match="unknown options"):
        least_squares(residual, jnp.ones(2), maxiter=3)
    with pytest.raises(TypeError, match="implicit_diff"):
        least_squares(residual, jnp.ones(2), implicit_diff="yes")
    with pytest.raises(ValueError, match="adjoint"):
        least_squares(residual, jnp.ones(2), adjoint="backsolve")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"method": "newton"}, ValueError, "method"),
        ({"linear_solver": "qr"}, ValueError, "linear_solver"),
        ({"damping_update": "geodesic"}, ValueError, "damping_update"),
        ({"damping_update": "trust_region", "linear_solver": "cg"}, ValueError, "trust_region"),
        ({"jacobian": "numeric"}, ValueError, "jacobian"),
        ({"damping": 0.0}, ValueError, "damping"),
        ({"atol": -1.0}, ValueError, "atol"),
        ({"ftol": float("inf")}, ValueError, "ftol"),
        ({"xtol": -1e-8}, ValueError, "xtol"),
        ({"gtol": "1e-8"}, TypeError, "gtol"),
        ({"max_steps": -1}, ValueError, "max_steps"),
        ({"max_steps": 1.5}, TypeError, "max_steps"),
        ({"max_inner_steps": 0}, ValueError, "max_inner_steps"),
        ({"cg_max_steps": 0}, ValueError, "cg_max_steps"),
    ],
)
def test_config_validation(options, error, match):
    with pytest.raises(error, match=match):
        GaussNewtonConfig(**options)


def test_config_defaults_and_hashability():
    config = GaussNewtonConfig()
    assert config.method == "levenberg_marquardt" and config.damping_update == "auto"
    # tolerances follow the dtype (rounding level), the budget the number of unknowns
    assert (config.ftol, config.xtol, config.gtol, config.max_steps) == (None,) * 4
    for dtype in (jnp.float32, jnp.float64):
        eps = float(jnp.finfo(dtype).eps)
        assert config.tolerances(dtype) == (eps**2, eps, eps)
    assert GaussNewtonConfig(ftol=1e-8).tolerances(jnp.float64)[0] == 1e-8
    assert config.budget(3) == 500 * 4 and GaussNewtonConfig(max_steps=7).budget(3) == 7
    assert config.atol == 0.0
    assert hash(config) == hash(GaussNewtonConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.damping = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("adjoint", ["unrolled", None])
def test_reported_evaluation_counts_match_an_instrumented_residual(adjoint):
    """``stats`` equal the residual calls counted inside the compiled solve.

    A host callback in the residual fires once per primal evaluation, and the Jacobian
    (forward mode) evaluates the primal once per linearisation as well.
    """
    problem = get_mgh_problem("bard")
    calls = []

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return problem.residual_fn(x)

    result = least_squares(counted, problem.initial_params(), config=LM, adjoint=adjoint)
    jax.block_until_ready(result.params)
    jax.effects_barrier()
    stats = {k: int(v) for k, v in result.stats.items()}
    assert len(calls) == stats["num_fun_evals"] + stats["num_jac_evals"]


def test_old_spellings_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'max_iterations' is deprecated"):
        config = GaussNewtonConfig(max_iterations=9, tolerance=1e-12, cg_tolerance=1e-8)
    assert (config.max_steps, config.atol, config.cg_rtol) == (9, 1e-12, 1e-8)
    with pytest.warns(DeprecationWarning, match="implicit_diff"):
        least_squares(lambda x: x - 1.0, jnp.zeros(2), implicit_diff=True)
