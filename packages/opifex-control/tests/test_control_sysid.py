"""System identification: parametric fits (single and multiple shooting, LM and Adam) and
neural ODEs.

References: the parameters that simulated the data (noise-free: recovered to rounding level;
noisy: to the noise's statistical error), ``scipy.optimize.least_squares`` (MINPACK) on the
same single-shooting residual (same minimiser to 1e-6), and the closed form ``exp(-k t)``.
float64 throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares as scipy_least_squares

from opifex.control import Dynamics, pendulum, simulate
from opifex.control._neural_ode import fit_neural_ode, mlp_apply, mlp_init, neural_dynamics
from opifex.control._sysid import fit_parameters, trajectory_rmse


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


TRUTH = {"mass": 1.2, "length": 0.8, "damping": 0.1}
DT = 0.05


def _decay() -> Dynamics:
    return Dynamics(lambda x, u, t, p: -p["k"] * x + p["b"] * u, 1, 1, {"k": 1.0, "b": 1.0})


def _pendulum_data(horizon: int, seed: int = 0, noise: float = 0.0):
    truth = pendulum(**TRUTH)
    key_u, key_n = jax.random.split(jax.random.key(seed))
    us = 0.5 * jax.random.normal(key_u, (horizon, 1))
    ys = simulate(truth, jnp.array([jnp.pi - 2.5, 0.0]), us, DT)
    return ys, ys + noise * jax.random.normal(key_n, ys.shape), us


MODEL = pendulum()  # one object: fits of the same shapes share one compiled program


@pytest.mark.e2e
def test_single_shooting_recovers_pendulum_and_agrees_with_scipy():
    _, noisy, us = _pendulum_data(120, noise=0.002)
    guess = {"mass": 1.0, "length": 1.0, "damping": 0.3}
    fit = fit_parameters(MODEL, noisy, us, DT, guess, fit_initial_state=False)
    assert fit.status_name == "SUCCESS"

    # scipy (MINPACK lmder) on the same residual: simulated minus observed, x0 observed
    names = sorted(guess)
    residual = jax.jit(
        lambda p: (
            simulate(MODEL, noisy[0], us, DT, {**MODEL.params, **dict(zip(names, p, strict=True))})
            - noisy
        ).ravel()
    )
    jacobian = jax.jit(jax.jacfwd(residual))
    ref = scipy_least_squares(
        lambda p: np.asarray(residual(jnp.asarray(p))),
        [guess[k] for k in names],
        jac=lambda p: np.asarray(jacobian(jnp.asarray(p))),
        method="lm",
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
    )
    ours = np.array([float(fit.params[k]) for k in names])
    np.testing.assert_allclose(ours, ref.x, rtol=1e-6)
    # and near the truth (noise 0.002 on 121 samples; the mass is the least identifiable)
    np.testing.assert_allclose(ours, [TRUTH[k] for k in names], rtol=0.05)
    # held-out trajectory (another control sequence, noise-free): small error
    held_clean, _, held_us = _pendulum_data(120, seed=7)
    assert fit.rmse(held_clean, held_us) < 0.05
    assert fit.rmse(held_clean, held_us) < 0.2 * trajectory_rmse(MODEL, held_clean, held_us, DT)
    # usable as a model directly, e.g. for MPC
    model = MODEL.with_params(**fit.params)
    assert float(model.params["mass"]) == pytest.approx(ours[names.index("mass")])


@pytest.mark.e2e
def test_multiple_shooting_recovers_parameters_where_single_shooting_fails():
    clean, _, us = _pendulum_data(600)
    bad = {"mass": 2.0, "length": 0.3, "damping": 0.01}  # frequency far off: phase wraps
    single = fit_parameters(MODEL, clean, us, DT, bad, max_steps=60)
    multiple = fit_parameters(MODEL, clean, us, DT, bad, shooting="multiple", segment_length=10)
    logs = fit_parameters(
        MODEL, clean, us, DT, bad, shooting="multiple", segment_length=10, positive=True
    )
    for name, value in TRUTH.items():
        assert float(logs.params[name]) == pytest.approx(value, rel=1e-8)
    assert multiple.status_name == "SUCCESS"
    for name, value in TRUTH.items():
        assert float(multiple.params[name]) == pytest.approx(value, rel=1e-8)
    assert multiple.max_defect < 1e-8 and multiple.train_rmse < 1e-8
    assert multiple.segment_states.shape == (1, 59, 2)
    # single shooting from the same guess stops in a wrong local minimum (status says so)
    assert not single.converged or abs(float(single.params["length"]) - 0.8) > 0.05
    assert single.train_rmse > 100 * multiple.train_rmse


@pytest.mark.e2e
def test_multiple_shooting_on_noisy_batch_matches_single_and_does_not_recompile():
    from opifex.second_order import _budgeted

    data = [_pendulum_data(100, seed=s, noise=0.005) for s in (1, 2)]
    noisy, us = jnp.stack([d[1] for d in data]), jnp.stack([d[2] for d in data])
    guess = {"mass": 1.0, "length": 1.0, "damping": 0.2}
    options = {"shooting": "multiple", "segment_length": 25, "continuity_weight": 100.0}
    fit = fit_parameters(MODEL, noisy, us, DT, guess, **options)
    assert fit.converged and fit.initial_states.shape == (2, 2)
    assert fit.segment_states.shape == (2, 3, 2)
    assert 0 < fit.max_defect < 0.01  # a penalty: small, nonzero defects with noise
    for name, value in TRUTH.items():
        assert float(fit.params[name]) == pytest.approx(value, rel=0.03)
    # new data and start of the same shapes: no new compilation
    size = _budgeted._run._cache_size()
    again = fit_parameters(MODEL, noisy[::-1], us[::-1], DT, {**guess, "mass": 1.1}, **options)
    assert _budgeted._run._cache_size() == size
    assert float(again.params["length"]) == pytest.approx(float(fit.params["length"]), rel=1e-6)


@pytest.mark.slow
def test_adam_fits_a_decay_rate_close_to_the_closed_form():
    us = jnp.zeros((30, 1))
    ys = jnp.exp(-2.0 * DT * jnp.arange(31.0))[:, None]  # exact: x = exp(-2 t)
    fit = fit_parameters(
        _decay(), ys, us, DT, {"k": 1.0}, optimizer="adam", learning_rate=0.05, max_steps=400
    )
    assert fit.status_name == "MAX_STEPS_REACHED"  # Adam runs its budget
    assert float(fit.params["k"]) == pytest.approx(2.0, abs=1e-3)
    assert fit.train_rmse < 1e-4


def test_trajectory_rmse_is_zero_on_the_model_and_counts_from_since():
    decay = _decay()
    us = jnp.ones((20, 1))
    ys = simulate(decay, jnp.ones(1), us, DT)
    assert trajectory_rmse(decay, ys, us, DT) < 1e-14
    shifted = ys.at[10:].add(1.0)
    assert trajectory_rmse(decay, shifted, us, DT, since=10) == pytest.approx(1.0)
    assert trajectory_rmse(decay, shifted, us, DT) == pytest.approx(np.sqrt(11 / 21))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"observed_states": np.ones((5, 3))}, ValueError, "observed_states must have shape"),
        ({"controls": np.ones((5, 1))}, ValueError, "controls must have shape"),
        ({"controls": np.ones(4)}, ValueError, "controls must have 2 dimensions"),
        ({"observed_states": np.ones(5)}, ValueError, "observed_states must have shape"),
        ({"observed_states": np.full((5, 2), np.nan)}, ValueError, "NaN"),
        ({"controls": np.full((4, 1), np.inf)}, ValueError, "NaN"),
        ({"initial_params": {"mass": 1.0, "spring": 2.0}}, ValueError, "unknown parameters"),
        ({"initial_params": {}}, ValueError, "empty"),
        ({"initial_params": [1.0]}, TypeError, "dict"),
        ({"initial_params": {"mass": "heavy"}}, TypeError, "mass"),
        ({"initial_params": {"mass": np.nan}}, ValueError, "NaN"),
        ({"dt": 0.0}, ValueError, "dt"),
        ({"initial_params": {"mass": -1.0}, "positive": True}, ValueError, "> 0"),
        ({"positive": 1}, TypeError, "positive"),
        ({"shooting": "triple"}, ValueError, "shooting"),
        ({"segment_length": 2}, ValueError, "multiple"),
        ({"shooting": "multiple", "segment_length": 0}, ValueError, "segment_length"),
        ({"optimizer": "sgd"}, ValueError, "optimizer"),
        ({"method": "rk5"}, ValueError, "method"),
        ({"dynamics": "pendulum"}, TypeError, "Dynamics"),
        ({"observed_states": np.array([["a", "b"]] * 5)}, TypeError, "observed_states"),
    ],
)
def test_fit_parameters_rejects_bad_input(kwargs, error, match):
    args = {
        "dynamics": MODEL,
        "observed_states": np.zeros((5, 2)),
        "controls": np.zeros((4, 1)),
        "dt": 0.1,
        "initial_params": {"mass": 1.0},
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit_parameters(**args)


@pytest.mark.e2e
def test_neural_dynamics_is_an_mlp_of_standardised_inputs():
    model = neural_dynamics(
        jax.random.key(0), 2, 1, (8,), input_mean=[1.0, 2.0, 0.0], output_scale=[3.0, 4.0]
    )
    p = model.params
    x, u = jnp.array([0.5, -1.0]), jnp.array([0.2])
    expected = p["output_scale"] * mlp_apply(p["layers"], jnp.array([-0.5, -3.0, 0.2]))
    np.testing.assert_allclose(model(x, u), expected, rtol=1e-12)
    assert [w["w"].shape for w in mlp_init(jax.random.key(1), (3, 4, 5, 2))] == [
        (3, 4),
        (4, 5),
        (5, 2),
    ]
    with pytest.raises(ValueError, match="input_scale"):
        neural_dynamics(jax.random.key(0), 2, 1, input_scale=[1.0])
    with pytest.raises(ValueError, match="sizes"):
        mlp_init(jax.random.key(0), (3,))


@pytest.mark.e2e
def test_neural_ode_training_reduces_error_and_reports_extrapolation():
    truth = Dynamics(lambda x, u, t, p: -x + u, 1, 1)
    key = jax.random.key(3)
    us = jax.random.uniform(key, (2, 60, 1), minval=-1.0, maxval=1.0)
    ys = jax.vmap(lambda x0, u: simulate(truth, x0, u, 0.1))(jnp.array([[1.0], [-0.5]]), us)
    untrained = fit_neural_ode(
        jax.random.key(0), ys[:, :31], us[:, :30], 0.1, hidden_sizes=(16,), max_steps=0
    )
    fit = fit_neural_ode(
        jax.random.key(0),
        ys[:, :31],
        us[:, :30],
        0.1,
        hidden_sizes=(16,),
        learning_rate=1e-2,
        max_steps=600,
        shooting="multiple",
        segment_length=10,
    )
    assert fit.status_name == "MAX_STEPS_REACHED"  # a budgeted Adam run
    assert fit.train_rmse < 0.05 < untrained.train_rmse
    assert fit.train_rmse < 0.2 * untrained.train_rmse
    extrapolation = fit.rmse(ys, us, since=31)  # beyond the training window
    assert np.isfinite(extrapolation) and extrapolation < 0.2
    with pytest.raises(ValueError, match="shapes"):
        fit_neural_ode(jax.random.key(0), ys[0], us, 0.1)
