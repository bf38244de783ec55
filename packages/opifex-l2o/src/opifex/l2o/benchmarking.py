"""The pieces of ``opifex.l2o.L2OBenchmark``, for custom evaluations of optimisers.

``L2OBenchmark`` (top level) is the one comparison path: it tunes the baselines on training
tasks and compares every optimiser with them on the same held-out tasks. Its parts:

* tasks: ``split_task_keys`` (disjoint training and held-out keys), ``sample_tasks``;
* runs: ``opifex.l2o.run_optimizer`` (any optax optimiser, batched over tasks) and
  ``run_baseline`` (``BASELINES``, including ISTA / FISTA), ``evaluation_counts``,
  ``diverged_mask``;
* tuning: ``tune_learning_rate`` (grid search, ``DEFAULT_LEARNING_RATES``) -> ``TuningResult``;
* comparison: ``compare_runs`` (``COMPARISONS`` per task), ``losses_by_evaluations``;
  ``FamilyResult`` holds one family's results in a ``BenchmarkResult``; ``METRICS``.
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
from opifex.l2o._benchmark import METRICS
from opifex.l2o._benchmark_result import FamilyResult
from opifex.l2o._compare import COMPARISONS, compare_runs, losses_by_evaluations
from opifex.l2o._evaluate import (
    diverged_mask,
    evaluation_counts,
    sample_tasks,
    split_task_keys,
)

__all__ = [
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
    "evaluation_counts",
    "losses_by_evaluations",
    "run_baseline",
    "sample_tasks",
    "split_task_keys",
    "tune_learning_rate",
]
