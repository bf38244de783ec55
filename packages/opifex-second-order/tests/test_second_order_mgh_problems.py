"""The MGH least-squares test set against published values and an independent solver.

References used (all independent of the JAX code under test):

* MGH: Moré, Garbow & Hillstrom (1981), ACM TOMS 7(1):17-41, section 3 — optimal values
  ``f*`` to the 6 significant digits printed there.
* MINPACK-1: the lmder / hybrd test runs of the same authors (ANL-80-74, reproduced in the
  MINPACK distribution) print ``||r(x0)||`` to 8 significant digits.
* Closed forms worked out by hand for the remaining starting values.
* Plain-Python loop transcriptions of the MGH formulas (below), for points where no value is
  published.
* ``scipy.optimize.least_squares(method="lm")`` (MINPACK's lmder) run from ``x0``.

Everything runs in float64 (``jax.enable_x64`` around each test).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

from opifex.second_order import LeastSquaresProblem, get_mgh_problem, mgh_problems


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


PROBLEMS = mgh_problems()
NAMES = [p.name for p in PROBLEMS]

# ||r(x0)|| printed by the MINPACK-1 test drivers (lmder: LM test set; hybrd: equations).
MINPACK_INITIAL_NORMS = {
    "rosenbrock": 4.9193496,
    "freudenstein_roth": 2.0012496e1,
    "powell_badly_scaled": 1.0654866,  # hybrd
    "jennrich_sampson": 6.4585650e1,
    "helical_valley": 5.0000000e1,
    "bard": 6.4561363,
    "meyer": 4.1153467e4,
    "box_3d": 3.2111584e1,
    "powell_singular": 1.4662878e1,
    "kowalik_osborne": 7.2891510e-2,
    "brown_dennis": 2.8154384e3,
    "osborne1": 9.3756402e-1,
    "osborne2": 1.4468654,
    "watson6": 5.4772256,
    "watson9": 5.4772256,
    "trigonometric": 8.4117534e-2,  # hybrd
    "brown_almost_linear": 1.6530216e1,
    "discrete_boundary_value": 2.8080582e-2,  # hybrd
    "discrete_integral_equation": 2.5182701e-1,  # hybrd
    "broyden_tridiagonal": 4.5825757,  # hybrd
    "broyden_banded": 1.8973666e1,  # hybrd
    "chebyquad": 1.9651386e-1,
}

# f* printed in MGH section 3 (6 significant digits) for the problems with f* != 0.
MGH_OPTIMA = {
    "freudenstein_roth": (0.0, 48.9842),
    "jennrich_sampson": (124.362,),
    "bard": (8.21487e-3, 17.4286),
    "gaussian": (1.12793e-8,),
    "meyer": (87.9458,),
    "kowalik_osborne": (3.07505e-4, 1.02734e-3),
    "brown_dennis": (85822.2,),
    "osborne1": (5.46489e-5,),
    "biggs_exp6": (0.0, 5.65565e-3),
    "osborne2": (4.01377e-2,),
    "watson6": (2.28767e-3,),
    "watson9": (1.39976e-6,),
    "penalty1": (7.08765e-5,),
    "penalty2": (2.93660e-4,),
    "trigonometric": (0.0, 2.79506e-5),  # the local value is ours (MINPACK lm's end point)
    "brown_almost_linear": (0.0, 1.0),
    "chebyquad": (3.51687e-3,),
    # exact formulas in MGH for the linear functions, n = 10, m = 20
    "linear_full_rank": (20.0 - 10.0,),
    "linear_rank1": (20.0 * 19.0 / (2.0 * 41.0),),
    "linear_rank1_zero": ((400.0 + 60.0 - 6.0) / (2.0 * 37.0),),
}

# A value printed with 6 significant digits is within half a unit of the 6th digit.
SIX_DIGITS = 5e-6
# "zero" optimum: f below this counts as having reached f* = 0.
ZERO_F = 1e-12


@functools.cache
def _compiled(name: str):
    """Jitted ``residual(x)`` and ``jac_and_batch(x, points) -> (J(x), r(points))`` of one
    problem, compiled once per test process (eager JAX is slow, compiling is not free)."""
    residual_fn = get_mgh_problem(name).residual_fn

    def jac_and_batch(x, points):
        return jax.jacfwd(residual_fn)(x), jax.vmap(residual_fn)(points)

    return jax.jit(residual_fn), jax.jit(jac_and_batch)


def _num_points(n: int) -> int:
    return 3 + 2 * n  # 3 random points and the 2n central-difference points


def _jacobian(name: str, x) -> np.ndarray:
    x = jnp.asarray(x, dtype=jnp.float64)
    points = jnp.broadcast_to(x, (_num_points(x.shape[0]), x.shape[0]))  # reuse the compile
    return np.asarray(_compiled(name)[1](x, points)[0])


def _f(problem: LeastSquaresProblem, x) -> float:
    r = np.asarray(_compiled(problem.name)[0](jnp.asarray(x, dtype=jnp.float64)))
    return float(r @ r)


def _matches_published(f: float, published: float, digits_rtol: float) -> bool:
    if published == 0.0:
        return f <= ZERO_F
    return abs(f - published) <= digits_rtol * abs(published)


# ------------------------------------------------------------------ catalogue


def test_catalogue_covers_all_35_problems_once_plus_watson_twice():
    assert len(PROBLEMS) == 36
    assert len(set(NAMES)) == len(NAMES)
    numbers = sorted(p.mgh_number for p in PROBLEMS)
    assert sorted(set(numbers)) == list(range(1, 36))
    assert numbers.count(20) == 2
    assert mgh_problems() is PROBLEMS  # built once, so problems are stable jit static args


def test_required_problems_present():
    required = [
        "rosenbrock", "freudenstein_roth", "powell_badly_scaled", "brown_badly_scaled",
        "beale", "jennrich_sampson", "helical_valley", "bard", "gaussian", "meyer", "box_3d",
        "powell_singular", "wood", "kowalik_osborne", "brown_dennis", "biggs_exp6",
        "osborne1", "osborne2", "watson6", "watson9",
    ]  # fmt: skip
    for name in required:
        assert get_mgh_problem(name).name == name
    assert get_mgh_problem("jennrich_sampson").num_residuals == 10
    assert get_mgh_problem("box_3d").num_residuals == 10
    assert get_mgh_problem("brown_dennis").num_residuals == 20
    assert get_mgh_problem("biggs_exp6").num_residuals == 13


def test_problems_are_hashable_static_configs():
    problem = get_mgh_problem("meyer")
    assert hash(problem) == hash(get_mgh_problem("meyer"))
    assert {problem: 1}[get_mgh_problem("meyer")] == 1
    with pytest.raises(AttributeError):
        problem.name = "other"  # frozen


def test_unknown_name_raises_value_error_listing_names():
    with pytest.raises(ValueError, match=r"unknown MGH problem 'nope'.*rosenbrock"):
        get_mgh_problem("nope")


def test_published_values_recorded_in_the_catalogue_match_mgh():
    for name, values in MGH_OPTIMA.items():
        problem = get_mgh_problem(name)
        assert problem.optimum_values == pytest.approx(values, rel=1e-12), name
    for problem in PROBLEMS:
        if problem.name not in MGH_OPTIMA:
            assert problem.optimum_values == (0.0,), problem.name


# ------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("name", NAMES)
def test_residual_shape_and_dtype(name):
    problem = get_mgh_problem(name)
    x0 = problem.initial_params()
    assert x0.shape == (problem.num_params,) and x0.dtype == jnp.float64
    for dtype in (jnp.float64, jnp.float32):
        out = jax.eval_shape(problem.residual_fn, jax.ShapeDtypeStruct(x0.shape, dtype))
        assert out.shape == (problem.num_residuals,) and out.dtype == dtype


# ------------------------------------------------------------------ published starting values


@pytest.mark.parametrize("name", NAMES)
def test_value_at_x0_matches_published_starting_value(name):
    problem = get_mgh_problem(name)
    f0 = _f(problem, problem.x0)
    if name in MINPACK_INITIAL_NORMS:
        # 8 printed significant digits -> relative error below 5e-8; allow 1e-7.
        assert math.sqrt(f0) == pytest.approx(MINPACK_INITIAL_NORMS[name], rel=1e-7)
    if problem.initial_value is not None:
        rtol = 2e-7 if name in MINPACK_INITIAL_NORMS else 1e-12
        assert f0 == pytest.approx(problem.initial_value, rel=rtol)
    else:
        # no published f(x0): compare with the loop transcription of the MGH formula
        assert f0 == pytest.approx(float(np.sum(LOOP_REFERENCE[name](problem.x0) ** 2)), rel=1e-12)


# ------------------------------------------------------------------ published optima


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in PROBLEMS if p.optimum_x is not None])
def test_value_at_known_minimiser_matches_published_optimum(name):
    problem = get_mgh_problem(name)
    f_star = _f(problem, problem.optimum_x)
    exact = name.startswith("linear_")
    assert _matches_published(f_star, problem.optimum_value, 1e-12 if exact else SIX_DIGITS), (
        f_star,
        problem.optimum_value,
    )
    if problem.optimum_value > 0.0:
        # a stationary point: grad f = 2 J^T r is tiny next to 2 ||J|| ||r||
        jac = _jacobian(name, problem.optimum_x)
        r = np.asarray(_compiled(name)[0](jnp.asarray(problem.optimum_x)))
        assert np.linalg.norm(jac.T @ r) <= 1e-7 * np.linalg.norm(jac) * np.linalg.norm(r)


def test_extra_zero_residual_points_listed_in_mgh():
    assert _f(get_mgh_problem("box_3d"), (10.0, 1.0, -1.0)) <= 1e-25
    assert _f(get_mgh_problem("box_3d"), (2.5, 2.5, 0.0)) == 0.0
    assert _f(get_mgh_problem("biggs_exp6"), (4.0, 10.0, 3.0, 5.0, 1.0, 1.0)) <= 1e-25
    bal = get_mgh_problem("brown_almost_linear")
    assert _f(bal, (0.0,) * 9 + (11.0,)) == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize(
    ("name", "x_far", "infimum"),
    [
        # Bard: x1 = 0.8406..., x2, x3 -> -inf gives 17.4286 (MGH)
        ("bard", (0.8406666666666667, -1e9, -1e9), 17.4286),
        # Kowalik-Osborne: x1 -> inf, x2 = -14.0758834, x3, x4 -> -inf gives 1.02734e-3 (MGH)
        ("kowalik_osborne", (7.2867547e5, -14.075883, -3.2977798e7, -2.0571594e7), 1.02734e-3),
    ],
)
def test_infima_at_infinity(name, x_far, infimum):
    # points from the MINPACK-1 runs that head to infinity (10 x0 start), printed to 8 digits
    assert _f(get_mgh_problem(name), x_far) == pytest.approx(infimum, rel=1e-4)


# ------------------------------------------------------------------ independent solver


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_scipy_lm_from_x0_reaches_a_published_optimum(name):
    problem = get_mgh_problem(name)
    fun = _compiled(name)[0]
    result = least_squares(
        lambda x: np.asarray(fun(x)),
        np.asarray(problem.x0),
        jac=lambda x: _jacobian(name, x),
        method="lm",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=5000,
    )
    f = 2.0 * result.cost  # scipy's cost is half the sum of squares
    exact = name.startswith("linear_")
    rtol = 1e-10 if exact else SIX_DIGITS
    assert any(_matches_published(f, v, rtol) for v in problem.optimum_values), (
        f,
        problem.optimum_values,
    )


# ------------------------------------------------------------------ JAX transformations


@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_and_jacobian(name):
    problem = get_mgh_problem(name)
    n = problem.num_params
    rng = np.random.default_rng(0)
    # small relative perturbations of x0 keep every point inside the domain (Meyer, Gulf)
    batch = np.asarray(problem.x0) * (1.0 + 0.01 * rng.standard_normal((3, n))) + 0.01
    residual, jac_and_batch = _compiled(name)
    # the Jacobian at batch[0] against central differences, all points in one vmapped call
    x = batch[0]
    steps = 1e-5 * np.maximum(1.0, np.abs(x))
    points = np.concatenate([batch, x + np.diag(steps), x - np.diag(steps)])
    assert points.shape[0] == _num_points(n)
    jac, out = (np.asarray(a) for a in jac_and_batch(x, points))
    for k in range(3):  # vmap agrees with single calls
        np.testing.assert_allclose(out[k], residual(batch[k]), rtol=1e-12, atol=1e-300)
    fd = ((out[3 : 3 + n] - out[3 + n :]) / (2.0 * steps[:, None])).T
    # roundoff in r(x +- h) is ~ eps |r| / h: scale the absolute tolerance with |r|
    r_max = float(np.abs(out[0]).max())
    atol = 1e-7 * max(1.0, np.abs(jac).max(), r_max * 1e-5 / steps.min())
    np.testing.assert_allclose(jac, fd, rtol=1e-5, atol=atol)


def test_value_is_the_plain_sum_of_squares():
    problem = get_mgh_problem("beale")
    x = jnp.array([0.3, -0.7])
    assert float(problem.value(x)) == pytest.approx(float(jnp.sum(problem.residual_fn(x) ** 2)))


# ------------------------------------------------------------------ loop transcriptions


def _loop_gaussian(x):
    y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989]
    y = y + y[-2::-1]
    return np.array(
        [x[0] * math.exp(-x[1] * ((8 - i) / 2 - x[2]) ** 2 / 2) - y[i - 1] for i in range(1, 16)]
    )


def _loop_gulf(x, m=99):
    out = []
    for i in range(1, m + 1):
        t = i / 100
        y = 25 + (-50 * math.log(t)) ** (2 / 3)
        out.append(math.exp(-(abs(y - x[1]) ** x[2]) / x[0]) - t)
    return np.array(out)


def _loop_biggs(x, m=13):
    out = []
    for i in range(1, m + 1):
        t = i / 10
        y = math.exp(-t) - 5 * math.exp(-10 * t) + 3 * math.exp(-4 * t)
        out.append(
            x[2] * math.exp(-t * x[0]) - x[3] * math.exp(-t * x[1]) + x[5] * math.exp(-t * x[4]) - y
        )
    return np.array(out)


def _loop_penalty2(x):
    n, a = len(x), 1e-5
    out = [x[0] - 0.2]
    for i in range(2, n + 1):
        y = math.exp(i / 10) + math.exp((i - 1) / 10)
        out.append(math.sqrt(a) * (math.exp(x[i - 1] / 10) + math.exp(x[i - 2] / 10) - y))
    for i in range(n + 1, 2 * n):
        out.append(math.sqrt(a) * (math.exp(x[i - n] / 10) - math.exp(-1 / 10)))
    out.append(sum((n - j + 1) * x[j - 1] ** 2 for j in range(1, n + 1)) - 1)
    return np.array(out)


def _loop_discrete_integral(x):
    n = len(x)
    h = 1 / (n + 1)
    t = [(i + 1) * h for i in range(n)]
    out = []
    for i in range(n):
        s1 = sum(t[j] * (x[j] + t[j] + 1) ** 3 for j in range(i + 1))
        s2 = sum((1 - t[j]) * (x[j] + t[j] + 1) ** 3 for j in range(i + 1, n))
        out.append(x[i] + h / 2 * ((1 - t[i]) * s1 + t[i] * s2))
    return np.array(out)


def _loop_broyden_banded(x):
    n = len(x)
    out = []
    for i in range(1, n + 1):
        s = sum(
            x[j - 1] * (1 + x[j - 1]) for j in range(max(1, i - 5), min(n, i + 1) + 1) if j != i
        )
        out.append(x[i - 1] * (2 + 5 * x[i - 1] ** 2) + 1 - s)
    return np.array(out)


def _loop_watson(x):
    n = len(x)
    out = []
    for i in range(1, 30):
        t = i / 29
        s1 = sum((j - 1) * x[j - 1] * t ** (j - 2) for j in range(2, n + 1))
        s2 = sum(x[j - 1] * t ** (j - 1) for j in range(1, n + 1))
        out.append(s1 - s2**2 - 1)
    return np.array([*out, x[0], x[1] - x[0] ** 2 - 1])


def _chebyshev(k, u):
    return math.cos(k * math.acos(2 * u - 1))  # T_k(2u - 1) for u in [0, 1]


def _loop_chebyquad(x, m=8):
    n = len(x)
    out = []
    for i in range(1, m + 1):
        integral = -1 / (i * i - 1) if i % 2 == 0 else 0.0
        out.append(sum(_chebyshev(i, xj) for xj in x) / n - integral)
    return np.array(out)


def _loop_helical(x):
    if x[0] > 0:
        theta = math.atan(x[1] / x[0]) / (2 * math.pi)
    else:
        theta = math.atan(x[1] / x[0]) / (2 * math.pi) + 0.5
    return np.array([10 * (x[2] - 10 * theta), 10 * (math.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]])


LOOP_REFERENCE = {
    "gaussian": _loop_gaussian,
    "gulf": _loop_gulf,
    "biggs_exp6": _loop_biggs,
    "penalty2": _loop_penalty2,
    "discrete_integral_equation": _loop_discrete_integral,
    "broyden_banded": _loop_broyden_banded,
    "watson6": _loop_watson,
    "watson9": _loop_watson,
    "chebyquad": _loop_chebyquad,
    "helical_valley": _loop_helical,
}


@pytest.mark.parametrize("name", sorted(LOOP_REFERENCE))
def test_vectorised_residuals_match_loop_transcription_at_random_points(name):
    problem = get_mgh_problem(name)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = np.asarray(problem.x0) * (1 + 0.2 * rng.standard_normal(problem.num_params))
        x = x + 0.05 * rng.uniform(0.1, 1.0, problem.num_params)
        if name == "chebyquad":
            x = np.clip(x, 0.0, 1.0)
        if name == "helical_valley":
            x = rng.uniform(-2, 2, 3)
        np.testing.assert_allclose(
            np.asarray(_compiled(name)[0](jnp.asarray(x))),
            LOOP_REFERENCE[name](list(x)),
            rtol=1e-11,
            atol=1e-13,
        )


def test_helical_valley_theta_branch_for_negative_x1():
    # x1 < 0, x2 < 0: MGH's theta is atan(x2/x1)/(2 pi) + 1/2, in (1/2, 3/4)
    r = get_mgh_problem("helical_valley").residual_fn(jnp.array([-1.0, -1.0, 0.0]))
    assert float(r[0]) == pytest.approx(-100 * (0.125 + 0.5))


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("name", "x", "match"),
    [
        ("rosenbrock", jnp.zeros(3), r"shape \(2,\)"),
        ("meyer", jnp.zeros((3, 1)), "1-D"),
        ("extended_rosenbrock", jnp.zeros(5), "multiple of 2"),
        ("extended_powell_singular", jnp.zeros(6), "multiple of 4"),
        ("watson6", jnp.zeros(0), "positive multiple"),
    ],
)
def test_wrong_shapes_raise_value_error(name, x, match):
    problem = get_mgh_problem(name)
    with pytest.raises(ValueError, match=match):
        problem.residual_fn(x)
    with pytest.raises(ValueError, match=match):
        jax.jit(problem.residual_fn)(x)


def test_problem_validation():
    def fn(x):
        return x

    with pytest.raises(ValueError, match="x0 is empty"):
        LeastSquaresProblem("p", fn, (), 1, 0.0)
    with pytest.raises(ValueError, match="num_residuals=1 must be >= n=2"):
        LeastSquaresProblem("p", fn, (0.0, 0.0), 1, 0.0)
    with pytest.raises(ValueError, match="optimum_x has length 1"):
        LeastSquaresProblem("p", fn, (0.0, 0.0), 2, 0.0, (0.0,))


def test_integer_input_is_promoted_to_float():
    r = get_mgh_problem("rosenbrock").residual_fn(jnp.array([1, 1]))
    assert jnp.issubdtype(r.dtype, jnp.floating)
    np.testing.assert_array_equal(r, [0.0, 0.0])
