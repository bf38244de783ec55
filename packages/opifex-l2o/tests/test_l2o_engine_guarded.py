"""The engine's functional core: ``guarded_run`` (detection inside ``jit``, ``vmap``, no
recompilation) and ``guarded_solve`` (the Adam / L-BFGS fallback), against closed-form and
scipy optima.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from opifex.core.families import LogisticRegressionFamily, QuadraticFamily
from opifex.l2o import init_learnable_sgd_params, learnable_sgd
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import EngineStatus
from opifex.l2o._fallback import guarded_solve
from opifex.l2o._guarded import Guards, adam_factory, guarded_run, guarded_run_jit
from opifex.l2o._problem import FamilyLoss

GUARDS = Guards(tolerance=1e-5, divergence_factor=1e3, stall_window=20, stall_tolerance=1e-3)
KEY = jax.random.key(0)


def _sphere(params, key):
    del key
    return jnp.sum((params - 1.0) ** 2)


def _nan_beyond(params, key):
    """``x^2``, but NaN for ``x > 1.5``."""
    del key
    return jnp.where(params[0] > 1.5, jnp.nan, params[0] ** 2)


def _run(phi, loss=_sphere, params=None, length=50, budget=50, guards=GUARDS):
    params = jnp.zeros(2) if params is None else params
    return guarded_run_jit(learnable_sgd, loss, guards, length, phi, params, KEY, 0, budget)


# ---------------------------------------------------------------- guarded_run


def test_converges_and_records_the_effective_learning_rate():
    run = _run(init_learnable_sgd_params(0.1, momentum=0.5))
    assert EngineStatus(int(run.status)) == EngineStatus.CONVERGED
    assert float(run.grad_norm) <= GUARDS.tolerance
    np.testing.assert_allclose(run.params, 1.0, atol=1e-5)
    steps = int(run.num_steps)
    assert np.isnan(run.trace["learning_rate"][0]) and np.isnan(run.trace["loss"][steps + 1])
    # SGD's first step is u = -lr * g, so ||u|| / ||g|| = lr exactly
    assert float(run.trace["learning_rate"][1]) == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(run.trace["loss"][steps], run.value)


def test_a_blow_up_is_diverged_and_the_best_iterate_is_kept():
    run = _run(init_learnable_sgd_params(10.0))  # x <- x - 20 (x - 1): factor -19 per step
    assert EngineStatus(int(run.status)) == EngineStatus.DIVERGED
    assert np.isfinite(float(run.value))  # detected by size, before any overflow
    assert float(run.value) > 1e3 * 2.0
    np.testing.assert_array_equal(run.best_params, jnp.zeros(2))
    assert float(run.best_value) == 2.0


def test_a_nan_loss_is_diverged():
    # SGD with lr 1.2 on x^2 from 1: 1 -> -1.4 -> 1.96 (NaN region)
    run = _run(init_learnable_sgd_params(1.2, 1e-6), loss=_nan_beyond, params=jnp.ones(1))
    assert EngineStatus(int(run.status)) == EngineStatus.DIVERGED
    assert int(run.num_steps) == 2 and np.isnan(float(run.value))
    assert float(run.best_params[0]) == 1.0  # the lowest loss was at the start (1 < 1.96)


def test_no_progress_is_stalled_after_the_window():
    run = _run(init_learnable_sgd_params(1e-12))
    assert EngineStatus(int(run.status)) == EngineStatus.STALLED
    assert int(run.num_steps) == GUARDS.stall_window


def test_the_budget_ends_a_run_that_is_still_improving():
    run = _run(init_learnable_sgd_params(1e-2), budget=7)
    assert EngineStatus(int(run.status)) == EngineStatus.MAX_STEPS_REACHED
    assert int(run.num_steps) == 7
    assert np.all(np.diff(run.trace["loss"][:8]) < 0)


def test_vmap_over_starts_matches_single_runs():
    starts = jnp.array([[0.0, 0.0], [1.0, 1.0 + 1e-8], [5.0, -3.0]])
    phi = init_learnable_sgd_params(0.3, 0.5)

    def run(params):
        return guarded_run(learnable_sgd, _sphere, GUARDS, 40, phi, params, KEY, 0, 40)

    batched = jax.jit(jax.vmap(run))(starts)
    for i, start in enumerate(starts):
        single = _run(phi, params=start, length=40, budget=40)
        assert int(batched.status[i]) == int(single.status)
        assert int(batched.num_steps[i]) == int(single.num_steps)
        np.testing.assert_allclose(batched.params[i], single.params, rtol=1e-6)
    assert int(batched.num_steps[1]) == 0  # converged at the start


def test_a_second_call_does_not_recompile():
    traces = []

    def loss(params, key):
        del key
        traces.append(1)
        return jnp.sum(params**2)

    _run(init_learnable_sgd_params(0.1), loss=loss, budget=5)
    first = len(traces)
    _run(init_learnable_sgd_params(0.2), loss=loss, budget=9)  # new phi and budget
    assert first > 0 and len(traces) == first


def test_minibatch_keys_follow_the_run_optimizer_convention():
    seen = []

    def loss(params, key):
        jax.debug.callback(lambda k: seen.append(np.asarray(k)), jax.random.key_data(key))
        return jnp.sum(params**2)

    stream = jax.random.key(3)
    guarded_run(adam_factory, loss, GUARDS, 3, 0.1, jnp.ones(2), stream, 4, 2)
    expected = [jax.random.key_data(jax.random.fold_in(stream, 4 + k)) for k in range(3)]
    np.testing.assert_array_equal(np.unique(np.stack(seen), axis=0), np.unique(expected, axis=0))


# ---------------------------------------------------------------- guarded_solve


@pytest.fixture(scope="module")
def quadratic():
    family = QuadraticFamily(dimension=5, condition_number=10.0)
    task = family.sample(jax.random.key(1))
    optimum = np.linalg.lstsq(np.asarray(task.matrix), np.asarray(task.target), rcond=None)[0]
    return FamilyLoss(family), task, optimum


@pytest.mark.parametrize("fallback", ["adam", "lbfgs"])
def test_divergence_falls_back_and_reaches_the_closed_form_optimum(quadratic, fallback):
    loss, task, optimum = quadratic
    config = L2OEngineConfig(fallback_optimizer=fallback, fallback_learning_rate=0.1)
    bad_phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, bad_phi, loss, jnp.zeros(5), KEY, 1000, (task,))
    assert result.learned_status == EngineStatus.DIVERGED and result.fell_back
    assert result.method == fallback and result.status_name == "CONVERGED"
    np.testing.assert_allclose(result.params, optimum, atol=1e-4)  # float32, cond 10
    # the trace keeps the divergent iterate, then continues from the best (the start)
    k = result.fallback_step
    assert result.trace["loss"][k] > 1e3 * result.trace["loss"][0]
    assert result.trace["loss"][k + 1] < result.trace["loss"][0]
    assert len(result.trace["loss"]) == 1001
    assert result.num_steps <= 1000
    assert np.isnan(result.trace["loss"][result.num_steps + 1])


def test_without_fallback_divergence_is_reported_never_as_converged(quadratic):
    loss, task, _ = quadratic
    config = L2OEngineConfig(use_traditional_fallback=False)
    bad_phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, bad_phi, loss, jnp.zeros(5), KEY, 1000, (task,))
    assert result.status_name == "DIVERGED" and not result.converged and not result.fell_back
    assert result.method == "learned" and result.num_steps < 10
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


def test_a_stall_falls_back_to_lbfgs_and_reaches_the_scipy_optimum():
    family = LogisticRegressionFamily(num_points=60, dimension=4, l2_penalty=0.1)
    task = family.sample(jax.random.key(2))
    params = family.init(jax.random.key(3), task)
    config = L2OEngineConfig(fallback_optimizer="lbfgs", stall_window=10, tolerance=1e-5)
    stuck_phi = init_learnable_sgd_params(learning_rate=1e-10)
    result = guarded_solve(
        config, learnable_sgd, stuck_phi, FamilyLoss(family), params, KEY, 200, (task,)
    )
    assert result.learned_status == EngineStatus.STALLED and result.fallback_step == 10
    assert result.method == "lbfgs" and result.converged
    assert np.all(np.isnan(result.trace["learning_rate"][11:]))  # L-BFGS iterations
    reference = _logistic_reference(task, family.l2_penalty)
    found = np.append(result.params["weights"], result.params["bias"])
    np.testing.assert_allclose(found, reference, atol=1e-4)


def test_a_stall_without_fallback_is_reported_as_stalled():
    config = L2OEngineConfig(use_traditional_fallback=False, stall_window=10)
    phi = init_learnable_sgd_params(learning_rate=1e-10)
    result = guarded_solve(config, learnable_sgd, phi, _sphere, jnp.zeros(2), KEY, 100)
    assert result.status_name == "STALLED" and result.num_steps == 10 and not result.fell_back


def test_a_fallback_that_diverges_too_is_reported_as_diverged():
    config = L2OEngineConfig(fallback_learning_rate=1e3, divergence_factor=10.0)
    phi = init_learnable_sgd_params(learning_rate=50.0)
    result = guarded_solve(config, learnable_sgd, phi, _nan_beyond, jnp.ones(1), KEY, 100)
    assert result.fell_back and result.method == "adam"
    assert result.status_name == "DIVERGED"
    assert np.isfinite(result.value)  # the best parameters are returned
