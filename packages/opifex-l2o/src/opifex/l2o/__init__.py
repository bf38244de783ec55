"""Learned optimisers as optax transformations whose weights are a differentiable pytree.

* ``mlp_optimizer(phi)``: a per-coordinate MLP on normalised features (gradient, parameter,
  momenta, RMS estimates and their ratios, time, optionally the loss), emitting a direction
  and a log-magnitude (Metz et al., 2019 and 2022). Features: ``FeatureConfig``,
  ``init_features`` / ``update_features``.
* ``lstm_optimizer(phi)``: the coordinate-wise LSTM of Andrychowicz et al. (2016).
* ``learnable_sgd(phi)`` / ``learnable_adam(phi)``: SGD with momentum and Adam whose
  hyperparameters are ``phi`` (equal to ``optax.sgd`` / ``optax.adam`` at the same values).

Each is an ``optax.GradientTransformationExtraArgs``: it works on any pytree of parameters,
under ``jit`` and ``vmap``, inside ``optax.chain``, and is differentiable in ``phi``, so that an
unrolled inner loss can be ``jax.grad``-ed with respect to ``phi``. Its state is a
``NamedTuple`` of arrays with the parameters' dtypes; updates have the gradients' dtypes.

Horizon. A learned optimiser is meta-trained on a distribution of tasks for a fixed number of
inner steps (its horizon); ``phi`` carries no guarantee outside them. Unrolled past its horizon,
or on tasks unlike its training tasks, a learned optimiser may stall or diverge (the time
features ``tanh(t / T)`` also take values never seen in training). Nothing here checks this.

Non-finite gradients. NaN / inf gradients are not filtered: they propagate into the updates
and into the optimiser state, where the moving averages keep them. For ``mlp_optimizer`` a
non-finite coordinate spoils its whole tensor (the features are normalised per tensor); for the
others only that coordinate. Wrap the optimiser in ``optax.apply_if_finite`` to skip such
steps and keep the state.

Meta-training lives in ``opifex.core.metatrain`` (shared with ``opifex.meta``); the names
here are its learned-optimiser forms. ``meta_train(key, phi, family, make_optimizer, config)``
is ``opifex.core.metatrain.meta_train`` of ``LearnedOptimizer(family, make_optimizer)``: it fits
``phi`` over a ``TaskFamily`` (tasks resampled, truncations staggered) with a meta-gradient
estimator (``MetaTrainConfig.estimator``) such as truncated backpropagation through time
(``truncated_bptt``), antithetic persistent evolution strategies (``pes``, Vicol et al., 2021,
unbiased for the whole unroll) or truncated ES (``truncated_es``). It clips meta-gradients,
resets non-finite unrolls and skips non-finite outer steps (both counted), validates on held-out
tasks with early stopping, follows an ``L2OCurriculum`` (``opifex.core.metatrain.Curriculum``)
over the horizon, checkpoints and resumes exactly, and shards the task batch over the
available devices.

Benchmarking. ``L2OBenchmark(problem_families, baseline_optimizers)`` is the one comparison
path: it tunes the baselines' learning rates by grid search on training tasks, runs every
optimiser on the same held-out tasks (``run_optimizer``) and reports per-task speedup at the
tuned baseline's final loss (censored), the same in loss evaluations, final-loss ratio,
divergence and wall time (``BenchmarkResult``: summary, JSON, plot). Its parts are in
``opifex.l2o.benchmarking``.

Engine. ``L2OEngine(l2o_config=L2OEngineConfig(...), meta_config=MetaTrainConfig(...))`` is a
façade over the above: ``meta_train``, ``optimize`` (a guarded learned run that detects
divergence and stalls under ``jit`` and, with ``use_traditional_fallback``, continues with
Adam or L-BFGS), ``optimize_with_meta_framework``, ``solve_gradient_problem``,
``solve_physics_informed``, ``solve_with_meta_learning`` (warm starts from a store of solved
problems), ``recommend_algorithm``, ``solve_automatically`` and ``compare_all_solvers``. Every
solve returns an ``opifex.core.SolveResult`` (status ``opifex.core.SolveStatus``) whose ``aux``
is an ``EngineInfo``. Its functional core is in ``opifex.l2o.engine``; the optimisers' building
blocks (features, states) in ``opifex.l2o.optimizers``.

Pretrained weights: ``load_pretrained(name)`` (``pretrained_names()``), produced by the
benchmark in ``benchmarks/l2o/``.
"""

import importlib
import warnings
from typing import Any

from opifex.core.metatrain import Curriculum as L2OCurriculum
from opifex.core.metatrain import MetaTrainConfig, MetaTrainResult
from opifex.l2o._benchmark import L2OBenchmark
from opifex.l2o._benchmark_result import BenchmarkResult
from opifex.l2o._engine import L2OEngine
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import EngineInfo
from opifex.l2o._evaluate import run_optimizer
from opifex.l2o._features import FeatureConfig
from opifex.l2o._learnable import (
    init_learnable_adam_params,
    init_learnable_sgd_params,
    learnable_adam,
    learnable_sgd,
)
from opifex.l2o._learned_meta import meta_train
from opifex.l2o._lstm import init_lstm_optimizer_params, lstm_optimizer
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o._pretrained import Pretrained, load_pretrained, pretrained_names, save_pretrained
from opifex.l2o._problem import OptimizationProblem
from opifex.l2o._recipe import LASSO25X50_MLP, MLP_REGRESSION_MLP, QUADRATIC10_MLP, MLPRecipe

__all__ = [
    "LASSO25X50_MLP",
    "MLP_REGRESSION_MLP",
    "QUADRATIC10_MLP",
    "BenchmarkResult",
    "EngineInfo",
    "FeatureConfig",
    "L2OBenchmark",
    "L2OCurriculum",
    "L2OEngine",
    "L2OEngineConfig",
    "MLPRecipe",
    "MetaTrainConfig",
    "MetaTrainResult",
    "OptimizationProblem",
    "Pretrained",
    "init_learnable_adam_params",
    "init_learnable_sgd_params",
    "init_lstm_optimizer_params",
    "init_mlp_optimizer_params",
    "learnable_adam",
    "learnable_sgd",
    "load_pretrained",
    "lstm_optimizer",
    "meta_train",
    "mlp_optimizer",
    "pretrained_names",
    "run_optimizer",
    "save_pretrained",
]

# names that left the top level, kept for one release: name -> (module, attribute, new home)
_MOVED = {
    **{
        name: ("opifex.l2o.benchmarking", name, "opifex.l2o.benchmarking")
        for name in (
            "BASELINES",
            "COMPARISONS",
            "DEFAULT_LEARNING_RATES",
            "METRICS",
            "TUNABLE_BASELINES",
            "FamilyResult",
            "TuningResult",
            "baseline_optimizer",
            "compare_runs",
            "diverged_mask",
            "losses_by_evaluations",
            "run_baseline",
            "sample_tasks",
            "split_task_keys",
            "tune_learning_rate",
        )
    },
    **{
        name: ("opifex.l2o.engine", name, "opifex.l2o.engine")
        for name in (
            "ALGORITHMS",
            "PROBLEM_TYPES",
            "Recommendation",
            "WarmStart",
            "WarmStartStore",
            "guarded_solve",
            "recommend_algorithm",
        )
    },
    **{
        name: ("opifex.l2o.optimizers", name, "opifex.l2o.optimizers")
        for name in (
            "FeatureState",
            "LSTMOptimizerState",
            "LearnableAdamState",
            "LearnableSGDState",
            "init_features",
            "preprocess_gradient",
            "update_features",
        )
    },
    "MetaOptimizerConfig": (
        "opifex.core.metatrain",
        "MetaTrainConfig",
        "opifex.l2o.MetaTrainConfig",
    ),
    "compare_solvers": (
        "opifex.l2o._solver_table",
        "solver_table",
        "opifex.l2o.L2OEngine.compare_all_solvers or opifex.l2o.L2OBenchmark",
    ),
    **{
        name: ("opifex.core.metatrain", name, "opifex.core.metatrain")
        for name in (
            "MetaGradientEstimator",
            "MetaGradientInfo",
            "MetaTrainHistory",
            "MetaTrainState",
            "PESState",
            "UnrollOutput",
            "UnrollState",
            "truncation_meta_loss",
        )
    },
    **{
        name: (
            "opifex.l2o._learned_meta",
            name,
            "opifex.core.metatrain with a LearnedOptimizer inner loop",
        )
        for name in (
            "init_unroll",
            "init_unrolls",
            "pes",
            "truncated_bptt",
            "truncated_es",
            "unroll",
        )
    },
}
# names that are gone: what replaces them
_REMOVED = {
    "EngineStatus": "opifex.core.SolveStatus (CONVERGED is SUCCESS; DIVERGED and NONFINITE)",
    "L2OResult": "opifex.core.SolveResult with aux=opifex.l2o.EngineInfo",
    "GuardedRun": "opifex.core.SolveResult of an opifex.core.OptaxSolver run",
    "Guards": "opifex.core.OptaxSolver's options",
    "guarded_run": "opifex.core.run_solver(opifex.core.OptaxSolver(...), ...)",
    "RunResult": "opifex.core.SolveResult (trace['value'], trace['num_fun_evals'])",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, attribute, home = _MOVED[name]
        warnings.warn(
            f"opifex.l2o.{name} is deprecated and will be removed in the next release; use {home}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), attribute)
    if name in _REMOVED:
        raise AttributeError(f"opifex.l2o.{name} was removed; use {_REMOVED[name]}")
    raise AttributeError(f"module 'opifex.l2o' has no attribute {name!r}")
