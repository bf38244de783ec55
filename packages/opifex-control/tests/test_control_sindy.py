"""SINDy: derivative estimates, the feature library, STLSQ and the fitted model.

References: analytic derivatives of ``sin`` (the finite differences' order of accuracy from
the error ratio when ``dt`` halves), ``scipy.signal.savgol_filter`` (Savitzky-Golay,
``mode="interp"``), Lotka-Volterra data integrated by ``scipy.integrate.solve_ivp`` (DOP853,
``rtol = atol = 1e-12``) and its known coefficients. float64 throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.signal import savgol_filter

from opifex.control import simulate
from opifex.control._sindy import (
    FeatureLibrary,
    differentiate,
    fit_sindy,
    smooth,
    stlsq,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# Lotka-Volterra: x' = a x - b x y, y' = -c y + d x y
A, B, C, D = 1.0, 0.1, 1.5, 0.075
DT = 0.01
# library order for degree 2 over (x0, x1): 1, x0, x1, x0^2, x0 x1, x1^2
LV_TRUE = np.zeros((6, 2))
LV_TRUE[1, 0], LV_TRUE[4, 0], LV_TRUE[2, 1], LV_TRUE[4, 1] = A, -B, -C, D


def _lotka_volterra(num: int = 2001) -> np.ndarray:
    def rhs(t, z):
        x, y = z
        return [A * x - B * x * y, -C * y + D * x * y]

    t = DT * np.arange(num)
    solution = solve_ivp(rhs, (0.0, t[-1]), [10.0, 5.0], "DOP853", t, rtol=1e-12, atol=1e-12)
    return solution.y.T


@pytest.mark.slow
@pytest.mark.parametrize("order", [2, 4, 6, 8])
def test_central_differences_have_their_order_of_accuracy(order):
    def error(dt: float) -> float:
        t = jnp.arange(0.0, 8.0 + dt / 2, dt)
        return float(jnp.max(jnp.abs(differentiate(jnp.sin(t), dt, order=order) - jnp.cos(t))))

    ratio = error(0.2) / error(0.1)
    # the error ~ C dt^order, boundaries (one-sided, same order) included
    assert np.log2(ratio) == pytest.approx(order, abs=0.5)


def test_savgol_matches_scipy_and_is_exact_for_polynomials():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(80, 2)), axis=0)
    for window, polyorder in ((7, 2), (11, 3)):
        ours = differentiate(x, 0.1, method="savgol", window=window, polyorder=polyorder)
        ref = savgol_filter(x, window, polyorder, deriv=1, delta=0.1, axis=0, mode="interp")
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
        smoothed = smooth(x, window=window, polyorder=polyorder)
        ref = savgol_filter(x, window, polyorder, axis=0, mode="interp")
        np.testing.assert_allclose(smoothed, ref, rtol=1e-10, atol=1e-10)
    t = np.linspace(0.0, 1.0, 30)
    cubic = differentiate(t**3 - t, t[1], method="savgol", window=9, polyorder=3)
    np.testing.assert_allclose(cubic, 3 * t**2 - 1, atol=1e-10)


def test_library_names_and_values():
    library = FeatureLibrary(degree=3, trig=True)
    names = library.names(("x", "y"))
    assert names[:10] == ("1", "x", "y", "x^2", "x y", "y^2", "x^3", "x^2 y", "x y^2", "y^3")
    assert names[10:] == ("sin(x)", "cos(x)", "sin(y)", "cos(y)")
    z = jnp.array([[2.0, 3.0]])
    expected = [1, 2, 3, 4, 6, 9, 8, 12, 18, 27, np.sin(2), np.cos(2), np.sin(3), np.cos(3)]
    np.testing.assert_allclose(library(z)[0], expected, rtol=1e-12)
    assert FeatureLibrary(degree=1, include_bias=False).names(("a",)) == ("a",)


@pytest.mark.slow
def test_sindy_recovers_lotka_volterra_exactly_from_noise_free_data():
    states = _lotka_volterra()
    model = fit_sindy(states, DT, degree=2, threshold=0.05)  # central differences, order 6
    assert model.solve.status_name == "SUCCESS"
    np.testing.assert_array_equal(np.asarray(model.support), LV_TRUE != 0)
    assert np.max(np.abs(np.asarray(model.coefficients) - LV_TRUE)) < 1e-3
    # plain second-order differences also pass, by a smaller margin
    second = fit_sindy(states, DT, degree=2, threshold=0.05, order=2)
    assert np.max(np.abs(np.asarray(second.coefficients) - LV_TRUE)) < 1e-3
    assert model.equations() == [
        "dx0/dt = 1.000 x0 - 0.100 x0 x1",
        "dx1/dt = -1.500 x1 + 0.075 x0 x1",
    ]
    # the fitted model simulates like the truth
    dynamics = model.to_dynamics()
    xs = simulate(dynamics, jnp.asarray(states[0]), jnp.zeros((500, 0)), DT)
    np.testing.assert_allclose(xs, states[:501], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        model.predict(states[:3]), (model.library(states[:3]) @ LV_TRUE), rtol=1e-4
    )


def test_sindy_with_savgol_recovers_the_support_at_one_percent_noise():
    states = _lotka_volterra()
    noise = 0.01 * states.std(axis=0) * np.random.default_rng(1).normal(size=states.shape)
    model = fit_sindy(states + noise, DT, degree=2, threshold=0.05, derivative="savgol", window=41)
    np.testing.assert_array_equal(np.asarray(model.support), LV_TRUE != 0)
    assert np.max(np.abs(np.asarray(model.coefficients) - LV_TRUE)) < 0.01


def test_sindy_with_controls_and_several_trajectories():
    t = DT * np.arange(400)
    u = np.sin(3 * t)[:, None]

    def trajectory(x0):  # x' = -2 x + u, exactly (variation of constants)
        rhs = lambda s, x: -2 * x + np.sin(3 * s)  # noqa: E731
        return solve_ivp(rhs, (0, t[-1]), [x0], "DOP853", t, rtol=1e-12, atol=1e-12).y.T

    states = np.stack([trajectory(1.0), trajectory(-0.5)])
    model = fit_sindy(states, DT, controls=np.stack([u, u]), degree=2, threshold=0.05)
    assert model.equations() == ["dx0/dt = -2.000 x0 + 1.000 u0"]
    assert model.to_dynamics().control_dim == 1


@pytest.mark.slow
def test_stlsq_drops_small_terms_and_reports_the_support():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(200, 5))
    xi = np.array([[1.0, 0.0], [0.0, -2.0], [0.3, 0.0], [0.0, 0.0], [0.0, 0.5]])
    result = stlsq(theta, theta @ xi + 1e-4 * rng.normal(size=(200, 2)), 0.1)
    assert result.status_name == "SUCCESS"
    np.testing.assert_array_equal(np.asarray(result.aux), xi != 0)
    np.testing.assert_allclose(result.params, xi, atol=1e-4)
    ridge = stlsq(theta, theta @ xi, 0.1, ridge=1.0)
    assert np.all(np.abs(np.asarray(ridge.params)) <= np.abs(xi) + 1e-12)  # shrunk


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: differentiate(np.ones(10), 0.1, order=3), ValueError, "even"),
        (lambda: differentiate(np.ones(4), 0.1, order=6), ValueError, "at least 7"),
        (lambda: differentiate(np.ones(10), 0.0), ValueError, "dt"),
        (lambda: differentiate(np.ones(10), 0.1, method="spline"), ValueError, "method"),
        (lambda: smooth(np.ones(20), window=10), ValueError, "odd"),
        (lambda: smooth(np.ones(20), window=5, polyorder=5), ValueError, "polyorder"),
        (lambda: fit_sindy(np.ones(20), 0.1), ValueError, "shape"),
        (lambda: fit_sindy(np.full((20, 2), np.nan), 0.1), ValueError, "NaN"),
        (
            lambda: fit_sindy(np.ones((20, 2)), 0.1, controls=np.ones((19, 1))),
            ValueError,
            "controls",
        ),
        (lambda: fit_sindy(np.ones((20, 2)), 0.1, state_names=("x",)), ValueError, "state_names"),
        (lambda: fit_sindy(np.ones((20, 2)), 0.1, threshold=-1.0), ValueError, "threshold"),
        (lambda: fit_sindy(np.array([["a"] * 2] * 20), 0.1), TypeError, "states"),
        (lambda: FeatureLibrary(degree=0), ValueError, "degree"),
        (lambda: stlsq(np.ones((5, 2)), np.ones((4, 1)), 0.1), ValueError, "same N"),
    ],
)
def test_bad_input_is_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()
