"""The NIST StRD nonlinear regression problems: the shipped data against NIST's certified
values, and Levenberg-Marquardt at its default settings from both of NIST's starts.

References: NIST Statistical Reference Datasets, nonlinear regression (NIST Information
Technology Laboratory): per dataset, the number of observations and parameters (NIST's summary
table, typed in below), the model formula, the certified parameters (11 significant digits),
residual sum of squares and residual standard deviation. Digits are scored by the log
relative error (McCullough 1999) of every parameter against its certified value.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.second_order import get_nist_problem, least_squares, nist_problems


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# NIST's summary table: (observations, parameters), in NIST's order of difficulty
NIST_SIZES = {
    "Misra1a": (14, 2),
    "Chwirut2": (54, 3),
    "Chwirut1": (214, 3),
    "Lanczos3": (24, 6),
    "Gauss1": (250, 8),
    "Gauss2": (250, 8),
    "DanWood": (6, 2),
    "Misra1b": (14, 2),
    "Kirby2": (151, 5),
    "Hahn1": (236, 7),
    "Nelson": (128, 3),
    "MGH17": (33, 5),
    "Lanczos1": (24, 6),
    "Lanczos2": (24, 6),
    "Gauss3": (250, 8),
    "Misra1c": (14, 2),
    "Misra1d": (14, 2),
    "Roszman1": (25, 4),
    "ENSO": (168, 9),
    "MGH09": (11, 4),
    "Thurber": (37, 7),
    "BoxBOD": (6, 2),
    "Rat42": (9, 3),
    "MGH10": (16, 3),
    "Eckerle4": (35, 3),
    "Rat43": (15, 4),
    "Bennett5": (154, 3),
}
NAMES = list(NIST_SIZES)
# the certified values are printed to 11 significant digits, so the certified residual sum of
# squares is reproduced to about 1e-10 (relative) from them; Lanczos1 aside (see below)
RSS_RTOL = 1e-9
# at least this many correct significant digits in every parameter, from both starts
DIGITS = 6.0


# ------------------------------------------------------------------ the data


def test_problem_set_and_sizes_match_nist():
    problems = nist_problems()
    assert [p.name for p in problems] == NAMES
    assert problems is nist_problems()  # the same (hashable, static) objects on every call
    for p in problems:
        m, n = NIST_SIZES[p.name]
        assert (p.num_observations, p.num_params) == (m, n), p.name
        assert len(p.response) == m and all(len(column) == m for column in p.predictors)
        assert jax.eval_shape(p.residual_fn, p.initial_params(1)).shape == (m,)
        assert len(p.starts[0]) == len(p.starts[1]) == len(p.certified_std_devs) == n
        assert p.difficulty in ("lower", "average", "higher")
    assert len(get_nist_problem("Nelson").predictors) == 2  # time and temperature


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_certified_values_are_consistent(name):
    problem = get_nist_problem(name)
    m, n = NIST_SIZES[name]
    # residual standard deviation^2 * (m - n) is the residual sum of squares (both certified;
    # this also checks m - n: Rat43's file states 9 degrees of freedom for 15 - 4)
    sd_rss = problem.certified_residual_sd**2 * (m - n)
    assert sd_rss == pytest.approx(problem.certified_rss, rel=RSS_RTOL)
    rss = float(problem.value(problem.certified_array()))
    if name == "Lanczos1":
        # a residual sum of squares of 1.4e-25 (data generated to 14 digits) cannot be
        # reproduced from parameters printed to 11 digits: each printed value is within half
        # a unit in its 11th digit of the minimiser, which bounds the sum of squares they give
        certified = np.asarray(problem.certified_params)
        half_unit = 0.5 * 10.0 ** (np.floor(np.log10(np.abs(certified))) - 10)
        jac = np.asarray(jax.jacfwd(problem.residual_fn)(problem.certified_array()))
        bound = (math.sqrt(problem.certified_rss) + np.linalg.norm(np.abs(jac) @ half_unit)) ** 2
        assert problem.certified_rss <= rss <= bound
    else:
        assert rss == pytest.approx(problem.certified_rss, rel=RSS_RTOL)


def _nist_model(problem, b, x):
    """NIST's model formula, as printed in the ``.dat`` file, evaluated with numpy."""
    text = problem.formula
    names = {"exp": np.exp, "arctan": np.arctan, "cos": np.cos, "sin": np.sin, "pi": math.pi}
    if text.startswith("pi ="):  # Roszman1 defines pi first
        value, text = text.removeprefix("pi =").split(None, 1)
        names["pi"] = float(value)
    lhs, rhs = (side.strip() for side in text.split("=", 1))
    expression, error_term = re.fullmatch(r"(.*?)\s*\+\s*(e)", rhs).groups()
    assert error_term == "e", rhs
    expression = expression.replace("[", "(").replace("]", ")")
    names |= {f"b{i + 1}": value for i, value in enumerate(b)}
    names |= {"x": x[0]} if len(x) == 1 else {"x1": x[0], "x2": x[1]}
    return lhs, eval(expression, {"__builtins__": {}}, names)  # NIST's text, from our data


@pytest.mark.parametrize("name", NAMES)
def test_jax_models_match_nists_formulas(name):
    problem = get_nist_problem(name)
    x, y = np.asarray(problem.predictors), np.asarray(problem.response)
    for b in (problem.certified_params, problem.starts[0], problem.starts[1]):
        lhs, expected = _nist_model(problem, np.asarray(b), x)
        assert lhs in ("y", "log[y]"), lhs
        target = np.log(y) if lhs == "log[y]" else y
        model = target - np.asarray(problem.residual_fn(jnp.asarray(b)))
        scale = np.max(np.abs(expected)) + np.max(np.abs(target))
        np.testing.assert_allclose(model, expected, rtol=0, atol=1e-13 * scale)


def test_dtypes_and_bad_input():
    problem = get_nist_problem("Misra1a")
    assert problem.residual_fn(problem.initial_params(2, jnp.float32)).dtype == jnp.float32
    assert problem.initial_params(2).tolist() == [250.0, 5e-4]
    with pytest.raises(ValueError, match=r"unknown NIST StRD problem 'misra1a'.*Misra1a"):
        get_nist_problem("misra1a")
    with pytest.raises(ValueError, match="start must be 1 or 2"):
        problem.initial_params(3)
    with pytest.raises(ValueError, match=r"Misra1a: parameters must have shape \(2,\)"):
        problem.residual_fn(jnp.ones(3))
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        problem.log_relative_errors([1.0])


def test_log_relative_error_counts_correct_digits():
    problem = get_nist_problem("BoxBOD")  # certified 2.1380940889E+02, 5.4723748542E-01
    certified = np.asarray(problem.certified_params)
    np.testing.assert_allclose(problem.log_relative_errors(certified), [11.0, 11.0])
    shifted = certified * np.array([1.0 + 1e-4, 1.0 - 3e-7])
    np.testing.assert_allclose(problem.log_relative_errors(shifted), [4.0, -math.log10(3e-7)])
    assert problem.min_log_relative_error(shifted) == pytest.approx(4.0)
    assert problem.min_log_relative_error([np.nan, 1.0]) == 0.0
    assert problem.min_log_relative_error(-certified) == 0.0  # wrong sign: no correct digit


# ------------------------------------------------------------------ Levenberg-Marquardt

# the starts MINPACK's defaults (scipy.optimize.least_squares(method="lm")) do not solve to
# 6 digits, or only after hundreds of iterations: a leap into the flat region of
# exp(-b2 x) (BoxBOD), long curved valleys (MGH09, MGH10, MGH17, Bennett5), a tiny residual
# with an ill-conditioned Jacobian (Lanczos3)
FAST = {("BoxBOD", 1), ("MGH09", 1), ("MGH10", 2), ("Lanczos3", 2), ("Bennett5", 2)}
RUNS = [
    pytest.param(name, start, marks=() if (name, start) in FAST else pytest.mark.e2e)
    for name in NAMES
    for start in (1, 2)
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "start"), RUNS)
def test_levenberg_marquardt_defaults_certify_six_digits(name, start):
    problem = get_nist_problem(name)
    result = least_squares(problem.residual_fn, problem.initial_params(start))
    digits = problem.min_log_relative_error(result.params)
    assert result.status_name == "SUCCESS", (result.status_name, digits)
    assert digits >= DIGITS, digits
    # the residual sum of squares is the certified one (Lanczos1: below it, see above)
    rss = 2.0 * float(result.value)
    if name != "Lanczos1":
        assert rss == pytest.approx(problem.certified_rss, rel=RSS_RTOL)
    assert int(result.num_steps) < 500 * (problem.num_params + 1)  # the default budget


# ------------------------------------------------------------------ float32


def _gauss_newton_change_in_float32_rounding_errors(problem, b32):
    """At a float32 answer, ``||J dx||`` of the exact (float64) Gauss-Newton correction, in
    units of the rounding error of a float32 residual, ``eps32 (||J diag(b)||_F + ||r||)``.

    A value of a few means that float32 arithmetic cannot resolve a better point.
    """
    b = jnp.asarray(b32, jnp.float64)
    jac = np.asarray(jax.jacfwd(problem.residual_fn)(b))
    r = np.asarray(problem.residual_fn(b))
    step = np.linalg.lstsq(jac, -r, rcond=None)[0]
    size = np.sqrt(np.sum(jac * jac, axis=0) @ np.asarray(b) ** 2) + np.linalg.norm(r)
    return np.linalg.norm(jac @ step) / (np.finfo(np.float32).eps * size)


F32_FAST = {("BoxBOD", 2)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "start"),
    [
        pytest.param(name, start, marks=() if (name, start) in F32_FAST else pytest.mark.e2e)
        for name in NAMES
        for start in (1, 2)
    ],
)
def test_float32_defaults_stop_where_float32_can_resolve_no_more(name, start):
    """In float32, SUCCESS means as accurate as float32 allows: the exact Gauss-Newton
    correction at the answer is within a few dozen float32 rounding errors of ``r`` (the
    solver measures the same in float32, allowing 10); anywhere else it is not SUCCESS."""
    problem = get_nist_problem(name)
    result = least_squares(problem.residual_fn, problem.initial_params(start, jnp.float32))
    assert result.params.dtype == jnp.float32
    change = _gauss_newton_change_in_float32_rounding_errors(problem, result.params)
    if result.status_name == "SUCCESS":
        assert change <= 50.0, change
    else:  # e.g. MGH09 from start 1: a valley whose direction float32 cannot resolve
        assert result.status_name in ("STALLED", "NONFINITE", "MAX_STEPS_REACHED")
        assert change > 50.0, change
    if (name, start) == ("MGH09", 1):
        assert result.status_name == "STALLED"
