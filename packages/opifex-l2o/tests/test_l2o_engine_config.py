"""The engine's settings and small records: ``L2OEngineConfig``, ``OptimizationProblem``,
``EngineInfo`` and the ``recommend_algorithm`` rule (no optimisation runs). ``WarmStartStore``
is tested with ``opifex.core.metatrain``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import opifex.l2o
from opifex.core import SolveStatus
from opifex.core.families import (
    BurgersFamily,
    LassoFamily,
    PoissonFamily,
    QuadraticFamily,
    RosenbrockFamily,
    TeacherStudentMLPFamily,
)
from opifex.l2o import MetaTrainConfig, MLPRecipe, learnable_adam, learnable_sgd
from opifex.l2o._engine_config import L2OEngineConfig, init_phi, optimizer_factory
from opifex.l2o._engine_result import ENGINE_TRACE, EngineInfo, engine_trace
from opifex.l2o._problem import PROBLEM_TYPES, OptimizationProblem
from opifex.l2o._recommend import GAUSS_NEWTON_MAX_PARAMS, recommend_algorithm

# ---------------------------------------------------------------- L2OEngineConfig


def test_old_spellings_work_for_one_release_with_a_warning():
    with pytest.warns(DeprecationWarning, match="MetaTrainConfig"):
        assert opifex.l2o.MetaOptimizerConfig is MetaTrainConfig
    with pytest.warns(DeprecationWarning, match="'tolerance' is deprecated"):
        assert L2OEngineConfig(tolerance=1e-3).atol == 1e-3
    with pytest.warns(DeprecationWarning, match="'stall_tolerance' is deprecated"):
        assert L2OEngineConfig(stall_tolerance=0.1).stall_rtol == 0.1
    with pytest.warns(DeprecationWarning, match="mlp=MLPRecipe"):
        config = L2OEngineConfig(optimizer="mlp", hidden_sizes=[4, 4], mlp_lr_scale=0.5)
    assert config.mlp == MLPRecipe(hidden_sizes=(4, 4), lr_scale=0.5)
    with pytest.warns(DeprecationWarning, match="mlp.hidden_sizes"):
        assert config.hidden_sizes == (4, 4)
    with pytest.raises(AttributeError, match="SolveStatus"):
        _ = opifex.l2o.EngineStatus


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("optimizer", "rmsprop", ValueError),
        ("optimizer", 3, TypeError),
        ("fallback_optimizer", "sgd", ValueError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", float("nan"), ValueError),
        ("momentum", 1.0, ValueError),
        ("mlp", {"hidden_sizes": (8,)}, TypeError),
        ("atol", -1.0, ValueError),
        ("divergence_factor", 0.0, ValueError),
        ("stall_window", 0, ValueError),
        ("stall_rtol", 1.0, ValueError),
        ("use_traditional_fallback", 1, TypeError),
        ("warm_start_size", 2.5, TypeError),
        ("similarity_threshold", -0.1, ValueError),
    ],
)
def test_config_rejects_bad_fields(field, value, error):
    with pytest.raises(error, match=field):
        L2OEngineConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("hidden_sizes", (8, 0), ValueError),
        ("hidden_sizes", "32", TypeError),
        ("features", {"use_loss": True}, TypeError),
        ("lr_scale", 0.0, ValueError),
        ("last_layer_init", float("nan"), ValueError),
    ],
)
def test_mlp_recipe_rejects_bad_fields(field, value, error):
    with pytest.raises(error, match=field):
        MLPRecipe(**{field: value})


def test_config_is_hashable_and_stores_tuples():
    config = L2OEngineConfig(optimizer="mlp", mlp=MLPRecipe(hidden_sizes=[4, 4]))
    assert config.mlp.hidden_sizes == (4, 4)
    assert hash(config) == hash(dataclasses.replace(config))


def test_factory_is_shared_by_settings_that_do_not_change_the_optimizer():
    a = optimizer_factory(L2OEngineConfig(optimizer="mlp", atol=1e-3))
    b = optimizer_factory(L2OEngineConfig(optimizer="mlp", stall_window=7))
    c = optimizer_factory(L2OEngineConfig(optimizer="mlp", mlp=MLPRecipe(lr_scale=0.5)))
    assert a is b and a is not c
    assert optimizer_factory(L2OEngineConfig()) is learnable_adam
    assert optimizer_factory(L2OEngineConfig(optimizer="learnable_sgd")) is learnable_sgd


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["learnable_adam", "learnable_sgd", "mlp", pytest.param("lstm", marks=pytest.mark.e2e)]
)
def test_init_phi_fits_its_optimizer(name):
    config = L2OEngineConfig(optimizer=name, mlp=MLPRecipe(hidden_sizes=(4,)), lstm_hidden_size=3)
    phi = init_phi(config, jax.random.key(0))
    optimizer = optimizer_factory(config)(phi)
    params = jnp.ones(3)
    updates, _ = optimizer.update(jnp.ones(3), optimizer.init(params), params, value=1.0)
    assert updates.shape == (3,) and bool(jnp.all(jnp.isfinite(updates)))
    assert config.untrained_is_meaningful == name.startswith("learnable")


def test_init_phi_holds_the_configured_hyperparameters():
    phi = init_phi(
        L2OEngineConfig(optimizer="learnable_sgd", learning_rate=0.2, momentum=0.5), None
    )
    assert float(jnp.exp(phi["log_learning_rate"])) == pytest.approx(0.2)
    assert float(jax.nn.sigmoid(phi["momentum_logit"])) == pytest.approx(0.5)


# ---------------------------------------------------------------- results


def test_engine_info_and_trace_layout():
    assert EngineInfo("adam", int(SolveStatus.STALLED), 4).fell_back
    assert not EngineInfo("learned", int(SolveStatus.SUCCESS), -1).fell_back
    trace = engine_trace({"value": [4.0, 2.0, 1.0], "step_size": [0.1, 0.1, 0.1]}, 5)
    assert tuple(trace) == ENGINE_TRACE
    np.testing.assert_array_equal(trace["value"][:3], [4.0, 2.0, 1.0])
    assert np.isnan(trace["value"][3:]).all() and np.isnan(trace["learning_rate"]).all()


# ---------------------------------------------------------------- OptimizationProblem


@pytest.mark.parametrize(
    ("problem", "family"),
    [
        (OptimizationProblem("quadratic", 6), QuadraticFamily(dimension=6)),
        (OptimizationProblem("rosenbrock", 4), RosenbrockFamily(dimension=4)),
        (OptimizationProblem("lasso", 9, {"num_rows": 5}), LassoFamily(num_rows=5, dimension=9)),
        (
            OptimizationProblem("mlp_regression", 3, {"hidden_sizes": [5], "batch_size": None}),
            TeacherStudentMLPFamily(layer_sizes=(3, 5, 1), batch_size=None),
        ),
        (OptimizationProblem("poisson_pinn", 1, {"num_modes": 2}), PoissonFamily(num_modes=2)),
        (OptimizationProblem("burgers_pinn", 1), BurgersFamily()),
    ],
)
def test_problem_makes_its_family(problem, family):
    assert problem.family() == family
    hash(problem)


def test_problem_sizes_and_kinds():
    assert OptimizationProblem("mlp_regression", 3, {"hidden_sizes": (5,)}).num_params == 26
    assert OptimizationProblem("logistic_regression", 7).num_params == 8
    assert OptimizationProblem("poisson_pinn", 1).is_stochastic
    assert OptimizationProblem("mlp_regression", 3).is_stochastic  # batch_size 32 by default
    assert not OptimizationProblem("logistic_regression", 3).is_stochastic
    assert OptimizationProblem("rosenbrock", 2).is_least_squares
    assert not OptimizationProblem("lasso", 2).is_least_squares


def test_problem_samples_like_run_optimizer():
    problem = OptimizationProblem("quadratic", 3)
    task, params, _ = problem.sample(jax.random.key(5))
    sample_key, init_key, _ = jax.random.split(jax.random.key(5), 3)
    family = problem.family()
    np.testing.assert_array_equal(task.matrix, family.sample(sample_key).matrix)
    np.testing.assert_array_equal(params, family.init(init_key, task))


@pytest.mark.parametrize("problem_type", ["quadratic", "rosenbrock"])
def test_residual_half_squared_norm_is_the_loss(problem_type):
    problem = OptimizationProblem(problem_type, 4)
    task, _, _ = problem.sample(jax.random.key(1))
    params = jax.random.normal(jax.random.key(2), (4,))
    residual = problem.residual_fn()(params, task)
    expected = problem.family().loss(params, task, None)
    np.testing.assert_allclose(0.5 * jnp.sum(residual**2), expected, rtol=1e-5)


def test_problem_errors():
    with pytest.raises(ValueError, match="valid: " + ", ".join(PROBLEM_TYPES)):
        OptimizationProblem("sudoku", 3)
    with pytest.raises(TypeError, match="problem_type"):
        OptimizationProblem(None, 3)
    with pytest.raises(ValueError, match="dimension must be 1"):
        OptimizationProblem("poisson_pinn", 2)
    with pytest.raises(ValueError, match="dimension"):
        OptimizationProblem("quadratic", 0)
    with pytest.raises(ValueError, match="unknown options for quadratic: colour"):
        OptimizationProblem("quadratic", 3, {"colour": "red"})
    with pytest.raises(ValueError, match="unknown options for quadratic: dimension"):
        OptimizationProblem("quadratic", 3, {"dimension": 4})
    with pytest.raises(ValueError, match="even"):
        OptimizationProblem("rosenbrock", 3)
    with pytest.raises(TypeError, match="options"):
        OptimizationProblem("quadratic", 3, options=[1, 2])
    with pytest.raises(ValueError, match="no least-squares form"):
        OptimizationProblem("lasso", 3).residual_fn()
    with pytest.raises(TypeError, match="key"):
        OptimizationProblem("quadratic", 3).sample(0)


# ---------------------------------------------------------------- recommend_algorithm


@pytest.mark.parametrize(
    ("problem", "algorithm"),
    [
        (OptimizationProblem("lasso", 10), "fista"),
        (OptimizationProblem("poisson_pinn", 1), "adam"),
        (OptimizationProblem("logistic_regression", 4, {"batch_size": 10}), "adam"),
        (OptimizationProblem("quadratic", 10), "gauss_newton"),
        (OptimizationProblem("rosenbrock", GAUSS_NEWTON_MAX_PARAMS), "gauss_newton"),
        (OptimizationProblem("quadratic", GAUSS_NEWTON_MAX_PARAMS + 1), "lbfgs"),
        (OptimizationProblem("logistic_regression", 4), "lbfgs"),
        (OptimizationProblem("mlp_regression", 3, {"batch_size": None}), "lbfgs"),
    ],
)
def test_recommendation_rule(problem, algorithm):
    assert recommend_algorithm(problem).algorithm == algorithm


def test_learned_is_recommended_only_for_the_family_it_was_trained_on():
    problem = OptimizationProblem("poisson_pinn", 1, {"num_modes": 2})
    assert recommend_algorithm(problem, problem.family()).algorithm == "learned"
    assert recommend_algorithm(problem, PoissonFamily(num_modes=3)).algorithm == "adam"
    deterministic = OptimizationProblem("logistic_regression", 4)
    assert recommend_algorithm(deterministic, deterministic.family()).algorithm == "lbfgs"
    with pytest.raises(TypeError, match="OptimizationProblem"):
        recommend_algorithm(QuadraticFamily(dimension=3))
