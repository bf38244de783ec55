"""Baselines: learning-rate tuning against the closed form of gradient descent on a quadratic,
divergence scoring, ISTA / FISTA against the LASSO optimality conditions and a closed form."""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.families import LassoFamily, LassoTask, QuadraticFamily, soft_threshold
from opifex.l2o._baselines import (
    BASELINES,
    baseline_optimizer,
    run_baseline,
    tune_learning_rate,
)
from opifex.l2o._evaluate import run_optimizer, sample_tasks

CONDITION = 10.0
STEPS = 60


def _gd_final_losses(family, keys, learning_rates, num_steps):
    """Closed form of gradient descent on ||W theta - y||^2 with a square, invertible W.

    The error ``e = theta - theta*`` evolves as ``(I - 2 lr W^T W)^k e0``, so in the eigenbasis
    of ``W^T W = V diag(s^2) V^T`` the loss after ``k`` steps is
    ``sum_i s_i^2 (1 - 2 lr s_i^2)^(2k) (V^T e0)_i^2``.
    """
    tasks, x0 = sample_tasks(family, keys)
    finals = np.zeros((len(learning_rates), len(keys)))
    for t in range(len(keys)):
        w = np.asarray(tasks.matrix[t], dtype=float)
        y = np.asarray(tasks.target[t], dtype=float)
        eigenvalues, vectors = np.linalg.eigh(w.T @ w)
        coefficients = vectors.T @ (np.asarray(x0[t], dtype=float) - np.linalg.solve(w, y))
        for j, lr in enumerate(learning_rates):
            factors = (1.0 - 2.0 * lr * eigenvalues) ** (2 * num_steps)
            finals[j, t] = np.sum(eigenvalues * factors * coefficients**2)
    return finals


@pytest.mark.slow
def test_tuned_gradient_descent_learning_rate_matches_the_closed_form():
    # Hessian 2 W^T W has eigenvalues in [2 / CONDITION, 2]: the step of gradient descent with
    # the best asymptotic rate, 2 / (L + mu), is CONDITION / (CONDITION + 1) ~ 0.909. After a
    # finite number of steps the best step is a little smaller (~0.90 after 60 steps).
    family = QuadraticFamily(dimension=4, condition_number=CONDITION)
    keys = jax.random.split(jax.random.key(0), 4)
    grid = np.linspace(0.8, 1.0, 21)
    with jax.enable_x64(True):
        result = tune_learning_rate("sgd", family, keys, STEPS, grid=grid)
        expected = _gd_final_losses(family, keys, grid, STEPS).mean(axis=1)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    assert result.grid == tuple(grid)
    assert result.num_diverged == (0,) * 21
    assert result.learning_rate == grid[np.argmin(expected)]
    assert abs(result.learning_rate - CONDITION / (CONDITION + 1)) <= 0.02


@pytest.mark.slow
def test_diverged_learning_rates_score_inf_and_edges_warn(caplog):
    family = QuadraticFamily(dimension=4)
    keys = jax.random.split(jax.random.key(1), 3)
    with caplog.at_level(logging.WARNING, logger="opifex.l2o._baselines"):
        result = tune_learning_rate("sgd", family, keys, 60, grid=[1e-3, 10.0])
    assert result.scores[1] == np.inf and result.num_diverged == (0, 3)
    assert result.learning_rate == 1e-3
    assert "lower end of the grid" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="opifex.l2o._baselines"):
        tune_learning_rate("sgd", family, keys, 60, grid=[1e-4, 1e-3, 10.0])
    assert "end of the grid" not in caplog.text  # 1e-3 is inside the grid

    with pytest.raises(RuntimeError, match="diverged"):
        tune_learning_rate("sgd", family, keys, 60, grid=[10.0, 20.0])


@pytest.mark.e2e
def test_tuning_scores_equal_the_runs_with_the_tuned_learning_rate():
    family = QuadraticFamily(dimension=4)
    keys = jax.random.split(jax.random.key(2), 3)
    for name, optimizer in [("adam", optax.adam(0.1)), ("momentum", optax.sgd(0.01, 0.9))]:
        rate = 0.1 if name == "adam" else 0.01
        result = tune_learning_rate(name, family, keys, 10, grid=[rate])
        run = run_optimizer(optimizer, family, keys, 10)
        np.testing.assert_allclose(result.scores[0], np.mean(run.trace["value"][:, -1]), rtol=1e-5)
        baseline = run_baseline(name, family, keys, 10, rate)
        np.testing.assert_allclose(baseline.trace["value"], run.trace["value"], rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class _OrthogonalLasso(LassoFamily):
    """LASSO with a square orthogonal design: the minimiser is soft_threshold(A^T b, lambda)."""

    def sample(self, key):
        matrix_key, truth_key = jax.random.split(key)
        matrix, _ = jnp.linalg.qr(jax.random.normal(matrix_key, (self.dimension,) * 2))
        truth = jax.random.normal(truth_key, (self.dimension,))
        return LassoTask(matrix, matrix @ truth, truth)


@pytest.mark.e2e
def test_fista_matches_soft_thresholding_on_an_orthogonal_design():
    family = _OrthogonalLasso(num_rows=6, dimension=6, l1_penalty=0.5)
    keys = jax.random.split(jax.random.key(0), 3)
    tasks, _ = sample_tasks(family, keys)
    closed_form = jax.vmap(lambda a, b: soft_threshold(a.T @ b, 0.5))(tasks.matrix, tasks.target)
    assert np.any(closed_form == 0) and np.any(closed_form != 0)  # both cases are checked
    for name in ("ista", "fista"):
        result = run_baseline(name, family, keys, 30)
        np.testing.assert_allclose(result.params, closed_form, atol=1e-5)


def _lasso_setup():
    family = LassoFamily(num_rows=10, dimension=20, l1_penalty=0.05, sparsity=0.3)
    return family, jax.random.split(jax.random.key(4), 3)


@pytest.mark.slow
def test_fista_satisfies_the_lasso_optimality_conditions():
    family, keys = _lasso_setup()
    with jax.enable_x64(True):
        params = np.asarray(run_baseline("fista", family, keys, 5000).params)
        tasks = jax.tree.map(np.asarray, sample_tasks(family, keys)[0])
    lam = family.l1_penalty
    for a, b, x in zip(tasks.matrix, tasks.target, params, strict=True):
        correlation = a.T @ (b - a @ x)  # 0 in -correlation + lam * subdifferential of ||x||_1
        active = np.abs(x) > 1e-9
        assert active.any()
        np.testing.assert_allclose(correlation[active], lam * np.sign(x[active]), atol=1e-6)
        assert np.all(np.abs(correlation[~active]) <= lam + 1e-6)


@pytest.mark.slow
def test_fista_gap_decays_faster_than_ista():
    family, keys = _lasso_setup()
    with jax.enable_x64(True):
        optimum = np.asarray(run_baseline("fista", family, keys, 5000).trace["value"][:, -1])
        slow = np.asarray(run_baseline("ista", family, keys, 100).trace["value"])
        fast = np.asarray(run_baseline("fista", family, keys, 100).trace["value"])
    slow_gap, fast_gap = slow - optimum[:, None], fast - optimum[:, None]
    assert np.all(np.diff(slow, axis=1) <= 1e-12)  # ISTA is monotone
    assert np.all(slow_gap[:, -1] > 1e-8)  # not solved yet: the comparison is meaningful
    assert np.all(fast_gap[:, -1] < 0.1 * slow_gap[:, -1])
    np.testing.assert_array_equal(fast[:, :2], slow[:, :2])  # the first FISTA step is ISTA's


def test_bad_baseline_arguments():
    family = QuadraticFamily(dimension=3)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="one of"):
        run_baseline("rmsprop", family, keys, 3, 0.1)
    with pytest.raises(ValueError, match="takes no learning rate"):
        run_baseline("lbfgs", family, keys, 3, 0.1)
    with pytest.raises(ValueError, match="needs a learning_rate"):
        baseline_optimizer("adam")
    with pytest.raises(ValueError, match="learning_rate"):
        baseline_optimizer("sgd", -1.0)
    with pytest.raises(ValueError, match="LassoFamily"):
        run_baseline("fista", family, keys, 3)
    with pytest.raises(ValueError, match="run_baseline"):
        baseline_optimizer("ista")
    with pytest.raises(ValueError, match="adam"):
        tune_learning_rate("lbfgs", family, keys, 3)
    for grid in ([], [0.1, 0.01], [0.0, 0.1], [[0.1]]):
        with pytest.raises(ValueError, match="grid"):
            tune_learning_rate("adam", family, keys, 3, grid=grid)
    assert set(BASELINES) == {"adam", "sgd", "momentum", "lbfgs", "ista", "fista"}
