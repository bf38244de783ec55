"""``L2OEngine``: construction, ``optimize`` and its history, the problem-solving methods, warm
starts (measured in steps to a target) and bad input.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core import SolveStatus, steps_to_target
from opifex.core.families import QuadraticFamily
from opifex.l2o import (
    MetaTrainConfig,
    MLPRecipe,
    init_learnable_adam_params,
    init_learnable_sgd_params,
)
from opifex.l2o._engine import L2OEngine
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._problem import OptimizationProblem

W = jnp.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.1, 0.0, 1.5]])
Y = jnp.array([1.0, -2.0, 0.5])


def _least_squares(x):
    return jnp.sum((W @ x - Y) ** 2)


def _solution():
    return np.linalg.solve(np.asarray(W), np.asarray(Y))


# ---------------------------------------------------------------- construction


def test_construction_and_keys():
    engine = L2OEngine(key=jax.random.key(7))
    assert engine.phi_source == "init" and engine.meta_trained_family is None
    draws = [engine._key(None) for _ in range(2)]
    assert not np.array_equal(jax.random.key_data(draws[0]), jax.random.key_data(draws[1]))
    from_rngs = L2OEngine(rngs=lambda: jax.random.key(7))
    np.testing.assert_array_equal(
        jax.random.key_data(from_rngs.key), jax.random.key_data(jax.random.key(7))
    )
    phi = init_learnable_adam_params(0.3)
    assert L2OEngine(phi=phi).phi_source == "user"


def test_construction_from_nnx_rngs():
    nnx = pytest.importorskip("flax.nnx")
    engine = L2OEngine(rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(
        jax.random.key_data(engine.key), jax.random.key_data(nnx.Rngs(3)())
    )


def test_construction_errors():
    with pytest.raises(TypeError, match="l2o_config"):
        L2OEngine(MetaTrainConfig())
    with pytest.raises(TypeError, match="meta_config"):
        L2OEngine(meta_config=L2OEngineConfig())
    with pytest.raises(TypeError, match="not both"):
        L2OEngine(key=jax.random.key(0), rngs=lambda: jax.random.key(0))
    with pytest.raises(TypeError, match="key"):
        L2OEngine(key=3)
    with pytest.raises(TypeError, match="learnable_adam's phi"):
        L2OEngine(phi=init_learnable_sgd_params())
    with pytest.raises(ValueError, match="phi"):
        L2OEngine(phi={k: jnp.nan * v for k, v in init_learnable_adam_params().items()})


# ---------------------------------------------------------------- optimize


def test_optimize_reaches_the_solution_and_reports_its_history():
    engine = L2OEngine(L2OEngineConfig(learning_rate=0.05, atol=1e-4))
    result = engine.optimize(jnp.zeros(3), _least_squares, 2000)
    assert result.status_name == "SUCCESS" and result.aux.method == "learned"
    np.testing.assert_allclose(result.params, _solution(), atol=1e-4)
    params, history = engine.optimize_with_meta_framework(jnp.zeros(3), _least_squares, 2000)
    np.testing.assert_array_equal(params, result.params)
    assert sorted(history) == ["grad_norm", "learning_rate", "loss"]
    assert all(len(v) == result.num_steps + 1 for v in history.values())
    np.testing.assert_allclose(history["loss"][0], float(_least_squares(jnp.zeros(3))))
    # Adam's first step moves every coordinate by lr: ||u|| / ||g|| = lr sqrt(3) / ||g_0||
    expected = 0.05 * np.sqrt(3.0) / history["grad_norm"][0]
    assert history["learning_rate"][1] == pytest.approx(expected, rel=1e-4)
    assert history["grad_norm"][-1] <= 1e-4


def test_optimize_handles_pytrees():
    engine = L2OEngine(L2OEngineConfig(learning_rate=0.1, atol=1e-4))
    params = {"a": jnp.zeros(2), "b": jnp.zeros(())}
    result = engine.optimize(params, lambda p: jnp.sum((p["a"] - 1) ** 2) + (p["b"] + 2) ** 2, 500)
    assert result.converged
    np.testing.assert_allclose(result.params["b"], -2.0, atol=1e-3)


def test_a_second_optimize_with_the_same_objective_does_not_recompile():
    traces = []

    def objective(x):
        traces.append(1)
        return jnp.sum((x - 1.0) ** 2)

    engine = L2OEngine()
    engine.optimize(jnp.zeros(2), objective, 20)
    first = len(traces)
    engine.optimize(jnp.ones(2), objective, 20)
    assert first > 0 and len(traces) == first


@pytest.mark.parametrize(
    ("params", "objective", "num_steps", "error", "match"),
    [
        (jnp.array([1.0, jnp.nan]), _least_squares, 10, ValueError, "NaN"),
        (jnp.zeros(3, jnp.int32), _least_squares, 10, TypeError, "floating-point"),
        ({}, _least_squares, 10, ValueError, "empty"),
        (jnp.zeros(3), "f", 10, TypeError, "callable"),
        (jnp.zeros(3), lambda x: W @ x, 10, ValueError, "scalar"),
        (jnp.zeros(3), _least_squares, 0, ValueError, "num_steps"),
        (jnp.zeros(3), _least_squares, 2.5, TypeError, "num_steps"),
    ],
)
def test_optimize_rejects_bad_input(params, objective, num_steps, error, match):
    with pytest.raises(error, match=match):
        L2OEngine().optimize(params, objective, num_steps)


def test_lbfgs_fallback_needs_one_dtype():
    engine = L2OEngine(L2OEngineConfig(fallback_optimizer="lbfgs"))
    with pytest.raises(TypeError, match="one floating-point dtype"):
        engine.optimize(jnp.zeros(3, jnp.bfloat16), lambda x: jnp.sum(x.astype(jnp.float32)), 5)


@pytest.mark.slow
def test_an_untrained_random_optimizer_warns_and_the_fallback_takes_over():
    engine = L2OEngine(
        L2OEngineConfig(
            optimizer="mlp",
            mlp=MLPRecipe(hidden_sizes=(4,)),
            stall_window=20,
            stall_rtol=0.05,  # less than 5 % better in 20 steps: stalled
            atol=1e-4,
            fallback_optimizer="lbfgs",
        )
    )
    with pytest.warns(UserWarning, match="not been meta-trained"):
        result = engine.optimize(jnp.zeros(3), _least_squares, 300)
    assert result.aux.fell_back and result.aux.learned_status == SolveStatus.STALLED
    assert result.aux.fallback_step == 20 and result.aux.method == "lbfgs"  # steps of ~1e-3
    np.testing.assert_allclose(result.params, _solution(), atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L2OEngine().optimize(jnp.zeros(3), _least_squares, 5)  # learnable Adam: no warning


# ---------------------------------------------------------------- problems


def test_solve_gradient_problem_accepts_problems_families_and_pairs():
    engine = L2OEngine(L2OEngineConfig(learning_rate=0.1, atol=1e-5))
    problem = OptimizationProblem("quadratic", 4, {"condition_number": 10.0})
    key = jax.random.key(1)
    result = engine.solve_gradient_problem(problem, key, 400)
    np.testing.assert_allclose(result.params, problem.family().optimum(result.aux.task), atol=1e-4)
    from_family = engine.solve_gradient_problem(problem.family(), key, 400)
    np.testing.assert_array_equal(from_family.params, result.params)
    pair = engine.solve_gradient_problem((_least_squares, jnp.zeros(3)), num_steps=2000)
    np.testing.assert_allclose(pair.params, _solution(), atol=1e-4)
    with pytest.raises(TypeError, match="TaskFamily"):
        engine.solve_gradient_problem("quadratic", key)
    with pytest.raises(ValueError, match="objective_fn, initial_params"):
        engine.solve_gradient_problem((_least_squares,), key)
    with pytest.raises(TypeError, match="key"):
        engine.solve_gradient_problem(problem, key=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("problem", "method"),
    [
        (OptimizationProblem("quadratic", 4), "gauss_newton"),
        pytest.param(
            OptimizationProblem("logistic_regression", 3, {"num_points": 40}),
            "lbfgs",
            marks=pytest.mark.e2e,
        ),
        pytest.param(
            OptimizationProblem("lasso", 12, {"num_rows": 6}), "fista", marks=pytest.mark.e2e
        ),
        (OptimizationProblem("logistic_regression", 3, {"batch_size": 8}), "adam"),
    ],
)
def test_solve_automatically_runs_the_recommendation(problem, method):
    result = L2OEngine().solve_automatically(problem, jax.random.key(0), 60)
    assert result.aux.method == method
    assert result.trace["value"][int(result.num_steps)] < result.trace["value"][0]
    if method == "gauss_newton":  # independent reference: the least-squares solution
        np.testing.assert_allclose(
            result.params, QuadraticFamily(dimension=4).optimum(result.aux.task), atol=1e-3
        )


def test_solve_physics_informed_rejects_other_problems():
    engine = L2OEngine()
    with pytest.raises(ValueError, match="PINN problem"):
        engine.solve_physics_informed(OptimizationProblem("quadratic", 2))
    with pytest.raises(TypeError, match="PoissonFamily"):
        engine.solve_physics_informed(QuadraticFamily(dimension=2))
    with pytest.raises(TypeError, match="OptimizationProblem"):
        engine.compare_all_solvers(QuadraticFamily(dimension=2))


# ---------------------------------------------------------------- warm starts


def _shifted(shift):
    target = Y + shift

    def objective(x):
        return jnp.sum((W @ x - target) ** 2)

    return objective, target


def test_warm_starts_need_fewer_steps_than_cold_starts():
    config = L2OEngineConfig(learning_rate=0.05, atol=1e-4, similarity_threshold=0.5)
    engine = L2OEngine(config)
    first, first_target = _shifted(0.0)
    cold_first = engine.solve_with_meta_learning(jnp.zeros(3), first, first_target, 2000)
    assert cold_first.aux.warm_start_distance is None and len(engine.warm_starts) == 1

    second, second_target = _shifted(jnp.array([0.05, -0.05, 0.02]))
    warm = engine.solve_with_meta_learning(jnp.zeros(3), second, second_target, 2000)
    cold = L2OEngine(config).optimize(jnp.zeros(3), second, 2000)
    assert warm.aux.warm_start_distance == pytest.approx(float(jnp.linalg.norm(second_target - Y)))
    target = 1e-6
    warm_steps = float(steps_to_target(warm.trace["value"], target))
    cold_steps = float(steps_to_target(cold.trace["value"], target))
    assert warm_steps < cold_steps < np.inf  # measured: 74 against 146 steps
    solution = np.linalg.solve(np.asarray(W), np.asarray(second_target))
    np.testing.assert_allclose(warm.params, solution, atol=1e-4)

    far, far_target = _shifted(3.0)
    assert (
        engine.solve_with_meta_learning(jnp.zeros(3), far, far_target, 5).aux.warm_start_distance
        is None
    )


def test_warm_start_errors():
    engine = L2OEngine()
    with pytest.raises(ValueError, match="problem_features"):
        engine.solve_with_meta_learning(jnp.zeros(3), _least_squares, [np.inf], 5)
    with pytest.raises(TypeError, match="initial_params"):
        engine.solve_with_meta_learning(jnp.zeros(3, int), _least_squares, [1.0], 5)
