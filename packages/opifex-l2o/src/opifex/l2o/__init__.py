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

Benchmarking. ``L2OBenchmark(problem_families, baseline_optimizers)`` tunes the baselines'
learning rates by grid search on training tasks, runs every optimiser on the same held-out
tasks (``run_optimizer``) and reports per-task speedup at the tuned baseline's final loss
(censored), the same in loss evaluations, final-loss ratio, divergence and wall time
(``BenchmarkResult``: summary, JSON, plot).

Engine. ``L2OEngine(l2o_config=L2OEngineConfig(...), meta_config=MetaOptimizerConfig(...))``
is a façade over the above: ``meta_train``, ``optimize`` (a guarded learned run that detects
divergence and stalls under ``jit`` and, with ``use_traditional_fallback``, continues with
Adam or L-BFGS), ``optimize_with_meta_framework``, ``solve_gradient_problem``,
``solve_physics_informed``, ``solve_with_meta_learning`` (warm starts from a store of solved
problems), ``recommend_algorithm``, ``solve_automatically`` and ``compare_all_solvers``.

Pretrained weights: ``load_pretrained(name)`` (``pretrained_names()``), produced by the
benchmark in ``benchmarks/l2o/``.
"""

from opifex.core.metatrain import Curriculum as L2OCurriculum
from opifex.core.metatrain import (
    MetaGradientEstimator,
    MetaGradientInfo,
    MetaTrainConfig,
    MetaTrainHistory,
    MetaTrainResult,
    MetaTrainState,
    PESState,
    UnrollOutput,
    UnrollState,
    WarmStart,
    WarmStartStore,
    truncation_meta_loss,
)
from opifex.l2o._baselines import (
    BASELINES,
    DEFAULT_LEARNING_RATES,
    TUNABLE_BASELINES,
    TuningResult,
    baseline_optimizer,
    run_baseline,
    tune_learning_rate,
)
from opifex.l2o._benchmark import METRICS, L2OBenchmark
from opifex.l2o._benchmark_result import BenchmarkResult, FamilyResult
from opifex.l2o._compare import COMPARISONS, compare_runs, losses_by_evaluations
from opifex.l2o._engine import L2OEngine
from opifex.l2o._engine_config import L2OEngineConfig, MetaOptimizerConfig
from opifex.l2o._engine_result import EngineStatus, L2OResult
from opifex.l2o._evaluate import (
    RunResult,
    diverged_mask,
    run_optimizer,
    sample_tasks,
    split_task_keys,
)
from opifex.l2o._fallback import guarded_solve
from opifex.l2o._features import FeatureConfig, FeatureState, init_features, update_features
from opifex.l2o._guarded import GuardedRun, Guards, guarded_run
from opifex.l2o._learnable import (
    LearnableAdamState,
    LearnableSGDState,
    init_learnable_adam_params,
    init_learnable_sgd_params,
    learnable_adam,
    learnable_sgd,
)
from opifex.l2o._learned_meta import (
    init_unroll,
    init_unrolls,
    meta_train,
    pes,
    truncated_bptt,
    truncated_es,
    unroll,
)
from opifex.l2o._lstm import (
    LSTMOptimizerState,
    init_lstm_optimizer_params,
    lstm_optimizer,
    preprocess_gradient,
)
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o._pretrained import Pretrained, load_pretrained, pretrained_names, save_pretrained
from opifex.l2o._problem import PROBLEM_TYPES, OptimizationProblem
from opifex.l2o._recipe import LASSO25X50_MLP, MLP_REGRESSION_MLP, QUADRATIC10_MLP, MLPRecipe
from opifex.l2o._recommend import ALGORITHMS, Recommendation, recommend_algorithm
from opifex.l2o._solver_table import compare_solvers

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "COMPARISONS",
    "DEFAULT_LEARNING_RATES",
    "LASSO25X50_MLP",
    "METRICS",
    "MLP_REGRESSION_MLP",
    "PROBLEM_TYPES",
    "QUADRATIC10_MLP",
    "TUNABLE_BASELINES",
    "BenchmarkResult",
    "EngineStatus",
    "FamilyResult",
    "FeatureConfig",
    "FeatureState",
    "GuardedRun",
    "Guards",
    "L2OBenchmark",
    "L2OCurriculum",
    "L2OEngine",
    "L2OEngineConfig",
    "L2OResult",
    "LSTMOptimizerState",
    "LearnableAdamState",
    "LearnableSGDState",
    "MLPRecipe",
    "MetaGradientEstimator",
    "MetaGradientInfo",
    "MetaOptimizerConfig",
    "MetaTrainConfig",
    "MetaTrainHistory",
    "MetaTrainResult",
    "MetaTrainState",
    "OptimizationProblem",
    "PESState",
    "Pretrained",
    "Recommendation",
    "RunResult",
    "TuningResult",
    "UnrollOutput",
    "UnrollState",
    "WarmStart",
    "WarmStartStore",
    "baseline_optimizer",
    "compare_runs",
    "compare_solvers",
    "diverged_mask",
    "guarded_run",
    "guarded_solve",
    "init_features",
    "init_learnable_adam_params",
    "init_learnable_sgd_params",
    "init_lstm_optimizer_params",
    "init_mlp_optimizer_params",
    "init_unroll",
    "init_unrolls",
    "learnable_adam",
    "learnable_sgd",
    "load_pretrained",
    "losses_by_evaluations",
    "lstm_optimizer",
    "meta_train",
    "mlp_optimizer",
    "pes",
    "preprocess_gradient",
    "pretrained_names",
    "recommend_algorithm",
    "run_baseline",
    "run_optimizer",
    "sample_tasks",
    "save_pretrained",
    "split_task_keys",
    "truncated_bptt",
    "truncated_es",
    "truncation_meta_loss",
    "tune_learning_rate",
    "unroll",
    "update_features",
]
