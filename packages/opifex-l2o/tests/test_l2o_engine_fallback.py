"""The engine's functional core: ``guarded_solve`` (the learned optimiser as an
``opifex.core.OptaxSolver`` with detection inside ``jit``, and the Adam / L-BFGS fallback),
against closed-form and scipy optima; and the guards' false alarms the consolidation issue
found (a divergence limit measured from the fallback's own near-zero start, a stall window
that can never fire within the budget, a re-compilation per fallback budget).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from opifex.core import SolveStatus
from opifex.core.families import LogisticRegressionFamily, QuadraticFamily
from opifex.l2o import init_learnable_sgd_params, learnable_sgd
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._fallback import _lbfgs_tail, _learned_run, guarded_solve, stall_window
from opifex.l2o._problem import FamilyLoss

KEY = jax.random.key(0)


def _sphere(params, key):
    del key
    return jnp.sum((params - 1.0) ** 2)


def _nan_beyond(params, key):
    """``x^2``, but NaN for ``x > 1.5``."""
    del key
    return jnp.where(params[0] > 1.5, jnp.nan, params[0] ** 2)


def _solve(phi, loss=_sphere, params=None, num_steps=50, **options):
    config = L2OEngineConfig(use_traditional_fallback=False, atol=1e-5, **options)
    params = jnp.zeros(2) if params is None else params
    return guarded_solve(config, learnable_sgd, phi, loss, params, KEY, num_steps)


# ---------------------------------------------------------------- the learned run


def test_converges_and_records_the_effective_learning_rate():
    run = _solve(init_learnable_sgd_params(0.1, momentum=0.5))
    assert run.status_name == "SUCCESS"
    assert float(run.grad_norm) <= 1e-5
    np.testing.assert_allclose(run.params, 1.0, atol=1e-5)
    steps = int(run.num_steps)
    assert np.isnan(run.trace["learning_rate"][0]) and np.isnan(run.trace["value"][steps + 1])
    # SGD's first step is u = -lr * g, so ||u|| / ||g|| = lr exactly
    assert float(run.trace["learning_rate"][1]) == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(run.trace["value"][steps], run.value)


def test_a_blow_up_is_diverged_and_the_best_iterate_is_kept():
    run = _solve(init_learnable_sgd_params(10.0))  # x <- x - 20 (x - 1): factor -19 per step
    assert run.status_name == "DIVERGED"
    assert np.isfinite(float(run.value))  # detected by size, before any overflow
    k = int(run.num_steps)
    assert run.trace["value"][k] > 1e3 * 2.0 + 2.0  # past f_0 + 1e3 |f_0|
    np.testing.assert_array_equal(run.params, jnp.zeros(2))  # the best iterate: the start
    assert float(run.value) == 2.0


def test_a_nan_loss_is_nonfinite():
    # SGD with lr 1.2 on x^2 from 1: 1 -> -1.4 -> 1.96 (NaN region)
    run = _solve(init_learnable_sgd_params(1.2, 1e-6), loss=_nan_beyond, params=jnp.ones(1))
    assert run.status_name == "NONFINITE"
    assert int(run.num_steps) == 2
    assert float(run.params[0]) == 1.0  # the lowest loss was at the start (1 < 1.96)


def test_no_progress_is_stalled_after_the_window():
    run = _solve(init_learnable_sgd_params(1e-12), stall_window=20)
    assert run.status_name == "STALLED"
    assert int(run.num_steps) == 20


def test_the_budget_ends_a_run_that_is_still_improving():
    run = _solve(init_learnable_sgd_params(1e-2), num_steps=7)
    assert run.status_name == "MAX_STEPS_REACHED"
    assert int(run.num_steps) == 7
    assert np.all(np.diff(run.trace["value"][:8]) < 0)


def test_a_second_call_does_not_recompile():
    traces = []

    def loss(params, key):
        del key
        traces.append(1)
        return jnp.sum(params**2)

    _solve(init_learnable_sgd_params(0.1), loss=loss, num_steps=5)
    first = len(traces)
    _solve(init_learnable_sgd_params(0.2), loss=loss, num_steps=5)  # a new phi
    assert first > 0 and len(traces) == first


def test_minibatch_keys_follow_the_run_optimizer_convention():
    seen = []

    def loss(params, key):
        jax.debug.callback(lambda k: seen.append(np.asarray(k)), jax.random.key_data(key))
        return jnp.sum(params**2)

    stream = jax.random.key(3)
    config = L2OEngineConfig(use_traditional_fallback=False, atol=0.0)
    guarded_solve(config, optax.sgd, 0.1, loss, jnp.ones(2), stream, 2)
    expected = [jax.random.key_data(jax.random.fold_in(stream, k)) for k in range(3)]
    np.testing.assert_array_equal(np.unique(np.stack(seen), axis=0), np.unique(expected, axis=0))


# ---------------------------------------------------------------- guarded_solve


@pytest.fixture(scope="module")
def quadratic():
    family = QuadraticFamily(dimension=5, condition_number=10.0)
    task = family.sample(jax.random.key(1))
    optimum = np.linalg.lstsq(np.asarray(task.matrix), np.asarray(task.target), rcond=None)[0]
    return FamilyLoss(family), task, optimum


@pytest.mark.slow
@pytest.mark.parametrize("fallback", ["adam", "lbfgs"])
def test_divergence_falls_back_and_reaches_the_closed_form_optimum(quadratic, fallback):
    loss, task, optimum = quadratic
    config = L2OEngineConfig(fallback_optimizer=fallback, fallback_learning_rate=0.1)
    bad_phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, bad_phi, loss, jnp.zeros(5), KEY, 1000, (task,))
    assert result.aux.learned_status == SolveStatus.DIVERGED and result.aux.fell_back
    assert result.aux.method == fallback and result.status_name == "SUCCESS"
    np.testing.assert_allclose(result.params, optimum, atol=1e-4)  # float32, cond 10
    # the trace keeps the divergent iterate, then continues from the best (the start)
    k = result.aux.fallback_step
    assert result.trace["value"][k] > 1e3 * result.trace["value"][0]
    assert result.trace["value"][k + 1] < result.trace["value"][0]
    assert len(result.trace["value"]) == 1001
    assert int(result.num_steps) <= 1000
    assert np.isnan(result.trace["value"][int(result.num_steps) + 1])


def test_without_fallback_divergence_is_reported_never_as_converged(quadratic):
    loss, task, _ = quadratic
    config = L2OEngineConfig(use_traditional_fallback=False)
    bad_phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, bad_phi, loss, jnp.zeros(5), KEY, 1000, (task,))
    assert result.status_name == "DIVERGED" and not result.converged and not result.aux.fell_back
    assert result.aux.method == "learned" and int(result.num_steps) < 10
    np.testing.assert_array_equal(result.params, jnp.zeros(5))  # the best iterate: the start
    assert result.value == pytest.approx(float(loss(jnp.zeros(5), None, task)))


def _logistic_reference(task, l2_penalty):
    """The regularised logistic regression optimum by scipy, in float64."""
    x, y = np.asarray(task.inputs, float), np.asarray(task.labels, float)

    def fun(theta):
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2_penalty * w @ w
        r = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
        return value, np.append(x.T @ r + l2_penalty * w, r.sum())

    solved = scipy.optimize.minimize(fun, np.zeros(x.shape[1] + 1), jac=True, method="BFGS")
    assert solved.success
    return solved.x


@pytest.mark.slow
def test_a_stall_falls_back_to_lbfgs_and_reaches_the_scipy_optimum():
    family = LogisticRegressionFamily(num_points=60, dimension=4, l2_penalty=0.1)
    task = family.sample(jax.random.key(2))
    params = family.init(jax.random.key(3), task)
    config = L2OEngineConfig(fallback_optimizer="lbfgs", stall_window=10, atol=1e-5)
    stuck_phi = init_learnable_sgd_params(learning_rate=1e-10)
    result = guarded_solve(
        config, learnable_sgd, stuck_phi, FamilyLoss(family), params, KEY, 200, (task,)
    )
    assert result.aux.learned_status == SolveStatus.STALLED and result.aux.fallback_step == 10
    assert result.aux.method == "lbfgs" and result.converged
    assert np.all(np.isnan(result.trace["learning_rate"][11:]))  # L-BFGS iterations
    reference = _logistic_reference(task, family.l2_penalty)
    found = np.append(result.params["weights"], result.params["bias"])
    np.testing.assert_allclose(found, reference, atol=1e-4)


def test_a_stall_without_fallback_is_reported_as_stalled():
    config = L2OEngineConfig(use_traditional_fallback=False, stall_window=10)
    phi = init_learnable_sgd_params(learning_rate=1e-10)
    result = guarded_solve(config, learnable_sgd, phi, _sphere, jnp.zeros(2), KEY, 100)
    assert result.status_name == "STALLED" and int(result.num_steps) == 10
    assert not result.aux.fell_back


@pytest.mark.slow
def test_a_fallback_that_diverges_too_is_reported_as_diverged():
    config = L2OEngineConfig(fallback_learning_rate=1e3, divergence_factor=10.0)
    phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, phi, _nan_beyond, jnp.ones(1), KEY, 100)
    assert result.aux.fell_back and result.aux.method == "adam"
    assert result.status_name in ("DIVERGED", "NONFINITE")
    assert np.isfinite(result.value)  # the best parameters are returned


# ---------------------------------------------------------------- false alarms


def _converge_then_blow_up(phi):
    """SGD on ``|x|^2`` with rate 0.45 (error x 0.1 per step) for 6 steps, then rate 5 (x -9)."""
    del phi
    return optax.sgd(optax.piecewise_constant_schedule(0.45, {6: 5.0 / 0.45}))


def test_an_adam_fallback_from_a_nearly_optimal_best_iterate_is_not_diverged():
    # f_0 = 2; after 6 steps f = 2e-12 (the best iterate), then the rate blows the run up.
    # Adam's first step from the best iterate moves each coordinate by ~1e-3: f ~ 2e-6, which
    # is 1e6 times its own start but far below the run's start. Measured from the run's start
    # (the fix), that is no divergence; measured from its own start, it was flagged DIVERGED.
    def loss(params, key):
        del key
        return jnp.sum(params**2)

    config = L2OEngineConfig(fallback_learning_rate=1e-3, atol=1e-9)
    result = guarded_solve(config, _converge_then_blow_up, 0.0, loss, jnp.ones(2), KEY, 300)
    assert result.aux.learned_status == SolveStatus.DIVERGED
    k = result.aux.fallback_step
    assert float(jnp.min(result.trace["value"][: k + 1])) < 1e-10  # the best iterate
    assert result.aux.method == "adam"
    assert result.status_name not in ("DIVERGED", "NONFINITE")
    assert float(result.value) < 1e-4
    assert np.nanmax(result.trace["value"][k + 1 :]) > 1e3 * 1e-10  # Adam's first steps


def test_the_default_stall_window_fires_within_any_budget():
    assert stall_window(L2OEngineConfig(), 100) < 100
    assert stall_window(L2OEngineConfig(), 10) == 10  # the floor: a budget of 10 never stalls
    run = _solve(init_learnable_sgd_params(1e-12), num_steps=100)
    assert run.status_name == "STALLED"
    assert int(run.num_steps) == stall_window(L2OEngineConfig(), 100) == 20


@pytest.mark.slow
def test_the_lbfgs_fallback_compiles_once_for_every_remaining_budget(quadratic):
    loss, task, optimum = quadratic
    config = L2OEngineConfig(fallback_optimizer="lbfgs", stall_window=10)
    stuck = init_learnable_sgd_params(learning_rate=1e-12)
    before = _lbfgs_tail._cache_size()
    for budget in (300, 300):
        for start in (jnp.zeros(5), jnp.ones(5)):
            result = guarded_solve(config, learnable_sgd, stuck, loss, start, KEY, budget, (task,))
            assert result.aux.method == "lbfgs" and result.status_name == "SUCCESS"
            np.testing.assert_allclose(result.params, optimum, atol=1e-4)
    # the learned runs stall at different steps (the window, and at once at the optimum), so
    # the L-BFGS tail runs with different remaining budgets: one compilation
    assert _lbfgs_tail._cache_size() - before == 1
    assert _learned_run._cache_size() >= 1
