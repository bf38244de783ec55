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

Meta-training. ``meta_train(key, phi, family, make_optimizer, config)`` fits ``phi`` over a
``TaskFamily`` (tasks resampled, truncations staggered) with one of three meta-gradient
estimators (``MetaTrainConfig.estimator``): truncated backpropagation through time
(``truncated_bptt``), antithetic persistent evolution strategies (``pes``, Vicol et al., 2021,
unbiased for the whole unroll) or truncated ES (``truncated_es``). It clips meta-gradients,
resets non-finite unrolls and skips non-finite outer steps (both counted), validates on held-out
tasks with early stopping, follows an ``L2OCurriculum`` over the horizon, checkpoints and
resumes exactly, and shards the task batch over the available devices.

Benchmarking. ``L2OBenchmark(problem_families, baseline_optimizers)`` tunes the baselines'
learning rates by grid search on training tasks, runs every optimiser on the same held-out
tasks (``run_optimizer``) and reports per-task speedup at the tuned baseline's final loss
(censored), the same in loss evaluations, final-loss ratio, divergence and wall time
(``BenchmarkResult``: summary, JSON, plot).

The L2O engine and pretrained weights are not part of this package yet.
"""

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
from opifex.l2o._curriculum import L2OCurriculum
from opifex.l2o._estimator import MetaGradientEstimator, MetaGradientInfo
from opifex.l2o._evaluate import (
    RunResult,
    diverged_mask,
    run_optimizer,
    sample_tasks,
    split_task_keys,
)
from opifex.l2o._features import FeatureConfig, FeatureState, init_features, update_features
from opifex.l2o._learnable import (
    LearnableAdamState,
    LearnableSGDState,
    init_learnable_adam_params,
    init_learnable_sgd_params,
    learnable_adam,
    learnable_sgd,
)
from opifex.l2o._lstm import (
    LSTMOptimizerState,
    init_lstm_optimizer_params,
    lstm_optimizer,
    preprocess_gradient,
)
from opifex.l2o._meta_config import MetaTrainConfig
from opifex.l2o._meta_state import MetaTrainHistory, MetaTrainResult, MetaTrainState
from opifex.l2o._meta_train import meta_train
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o._pes import PESState, pes
from opifex.l2o._truncated_bptt import truncated_bptt
from opifex.l2o._truncated_es import truncated_es
from opifex.l2o._unroll import (
    UnrollOutput,
    UnrollState,
    init_unroll,
    init_unrolls,
    truncation_meta_loss,
    unroll,
)

__all__ = [
    "BASELINES",
    "COMPARISONS",
    "DEFAULT_LEARNING_RATES",
    "METRICS",
    "TUNABLE_BASELINES",
    "BenchmarkResult",
    "FamilyResult",
    "FeatureConfig",
    "FeatureState",
    "L2OBenchmark",
    "L2OCurriculum",
    "LSTMOptimizerState",
    "LearnableAdamState",
    "LearnableSGDState",
    "MetaGradientEstimator",
    "MetaGradientInfo",
    "MetaTrainConfig",
    "MetaTrainHistory",
    "MetaTrainResult",
    "MetaTrainState",
    "PESState",
    "RunResult",
    "TuningResult",
    "UnrollOutput",
    "UnrollState",
    "baseline_optimizer",
    "compare_runs",
    "diverged_mask",
    "init_features",
    "init_learnable_adam_params",
    "init_learnable_sgd_params",
    "init_lstm_optimizer_params",
    "init_mlp_optimizer_params",
    "init_unroll",
    "init_unrolls",
    "learnable_adam",
    "learnable_sgd",
    "losses_by_evaluations",
    "lstm_optimizer",
    "meta_train",
    "mlp_optimizer",
    "pes",
    "preprocess_gradient",
    "run_baseline",
    "run_optimizer",
    "sample_tasks",
    "split_task_keys",
    "truncated_bptt",
    "truncated_es",
    "truncation_meta_loss",
    "tune_learning_rate",
    "unroll",
    "update_features",
]
