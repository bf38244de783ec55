"""``L2OEngine`` with meta-training, physics-informed solves and the solver comparison table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core.families import PoissonFamily
from opifex.l2o import MetaTrainConfig
from opifex.l2o._engine import L2OEngine
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._problem import OptimizationProblem

META = MetaTrainConfig(
    estimator="truncated_bptt",
    num_tasks=2,
    truncation_length=5,
    horizon=10,
    outer_learning_rate=0.2,
    num_validation_tasks=2,
)
STOCHASTIC = OptimizationProblem("logistic_regression", 3, {"num_points": 32, "batch_size": 8})


@pytest.fixture(scope="module")
def trained():
    engine = L2OEngine(L2OEngineConfig(optimizer="learnable_sgd", learning_rate=1e-3), META)
    before = engine.phi
    result = engine.meta_train(STOCHASTIC, 15, 3, progress=False)
    return engine, before, result


@pytest.mark.slow
def test_meta_train_stores_the_best_phi_and_the_family(trained):
    engine, before, result = trained
    assert engine.phi_source == "meta_train" and engine.meta_trained_family == STOCHASTIC.family()
    assert engine.meta_train_result is result
    for name in engine.phi:
        np.testing.assert_array_equal(engine.phi[name], result.best_phi[name])
    assert len(result.history.meta_loss) == 15  # num_meta_epochs outer steps
    # validated at steps 0 and 15 (validation_every capped at num_meta_epochs)
    np.testing.assert_array_equal(result.history.validation_step, [0, 15])
    metric = result.history.validation_metric
    assert metric[-1] < metric[0]  # a larger learning rate was learned
    assert float(engine.phi["log_learning_rate"]) > float(before["log_learning_rate"])


@pytest.mark.slow
def test_a_meta_trained_engine_recommends_and_runs_the_learned_optimizer(trained):
    engine, _, _ = trained
    recommendation = engine.recommend_algorithm(STOCHASTIC)
    assert recommendation.algorithm == "learned"
    other = OptimizationProblem("logistic_regression", 3, {"num_points": 64, "batch_size": 8})
    assert engine.recommend_algorithm(other).algorithm == "adam"
    result = engine.solve_automatically(STOCHASTIC, jax.random.key(4), 50)
    assert result.aux.method in ("learned", "adam") and result.aux.learned_status is not None
    assert result.trace["value"][int(result.num_steps)] < result.trace["value"][0]


@pytest.mark.slow
def test_meta_train_validation_key_and_errors():
    engine = L2OEngine(L2OEngineConfig(optimizer="learnable_sgd", learning_rate=1e-3), META)
    validation_key = jax.random.key(9)
    result = engine.meta_train(STOCHASTIC.family(), 2, validation_key, progress=False)
    np.testing.assert_array_equal(
        jax.random.key_data(result.state.validation_key), jax.random.key_data(validation_key)
    )
    with pytest.raises(ValueError, match="num_meta_epochs"):
        engine.meta_train(STOCHASTIC, 0)
    with pytest.raises(TypeError, match="TaskFamily"):
        engine.meta_train("logistic", 2)
    with pytest.raises(TypeError, match="key"):
        engine.meta_train(STOCHASTIC, 2, validation_problems=2.5)


@pytest.mark.e2e
def test_poisson_pinn_matches_the_closed_form_solution():
    family = PoissonFamily(num_modes=2, num_collocation=32, hidden_sizes=(16,))
    engine = L2OEngine(L2OEngineConfig(fallback_optimizer="lbfgs", atol=1e-5))
    result = engine.solve_physics_informed(family, jax.random.key(0), 1500)
    assert result.status_name != "DIVERGED"
    x = jnp.linspace(0.0, 1.0, 201)  # a grid, not the training collocation points
    exact = family.exact_solution(result.aux.task, x)
    error = jnp.linalg.norm(family.apply(result.params, x) - exact) / jnp.linalg.norm(exact)
    assert float(error) < 1e-2  # relative L2 error of u_theta against the exact solution
    residual = family.pde_residual(lambda s: family.apply(result.params, s), result.aux.task, x)
    forcing = family.forcing(result.aux.task, x)
    assert float(jnp.linalg.norm(residual) / jnp.linalg.norm(forcing)) < 5e-2


@pytest.mark.e2e
def test_compare_all_solvers_table():
    engine = L2OEngine(L2OEngineConfig(learning_rate=0.3))
    problem = OptimizationProblem("quadratic", 3, {"condition_number": 10.0})
    table = engine.compare_all_solvers(
        problem, jax.random.key(0), 20, num_tasks=2, num_train_tasks=2, learning_rates=[0.1, 1.0]
    )
    assert sorted(table) == ["adam", "lbfgs", "learned", "sgd"]
    for row in table.values():
        assert row["wall_time_s"] > 0 and row["fraction_diverged"] == 0.0
    # the target is the tuned Adam's own final loss, which it reaches by its last step
    assert table["adam"]["steps_to_target"] <= 20
    assert table["lbfgs"]["final_loss"] < 1e-8  # a 3-d quadratic: exact in a few iterations
    assert table["lbfgs"]["steps_to_target"] < table["adam"]["steps_to_target"]
    assert table["adam"]["learning_rate"] in (0.1, 1.0) and table["lbfgs"]["learning_rate"] is None
