"""opifex.meta: gradient-based meta-learning (MAML, FOMAML, Reptile, Meta-SGD) in JAX.

The meta-learners are thin façades over ``opifex.core.metatrain`` (its estimators and its
outer loop: vmapped and shardable meta-batches, validation, early stopping, checkpoints with
exact resume, a progress bar):

* ``MAMLOptimizer`` (``MAMLConfig``): MAML, exact or first-order;
* ``ReptileOptimizer`` (``ReptileConfig``): Reptile;
* ``GradientBasedMetaLearner`` (``MetaSGDConfig``): Meta-SGD, a learned start and learned
  per-parameter steps (``MetaSGD``, ``per_parameter_sgd``, ``meta_sgd_parameters``);
* ``MetaL2OIntegration`` (``MetaL2OConfig``): a start meta-learned for any optax optimiser,
  a learned optimiser from ``opifex.l2o`` included.

Few-shot tasks carry fixed support and query sets (``FewShotFamily``, ``TaskPool``);
``adapt`` and ``evaluate_adaptation`` (``AdaptationCurve``) adapt to held-out tasks.

The toolkit: ``AdaptiveLearningRateScheduler`` (schedules and loss-driven learning rates, also
as optax schedules and ``inject_hyperparams`` controllers), ``PerformanceMonitor`` (convergence
rate, speed and stability of a run, jit-friendly) and ``WarmStartingStrategy`` (starting a new
problem from solved ones, across shape changes); ``MetaOptimizer``, whose ``quantum_step``
lowers any energy of orbital coefficients while keeping them orthonormal in the overlap metric
(``minimize_orbitals`` repeats it to convergence).
"""

from opifex.meta._adapt import AdaptationCurve, adapt, evaluate_adaptation
from opifex.meta._maml import MAMLConfig, MAMLOptimizer
from opifex.meta._meta_l2o import MetaL2OConfig, MetaL2OIntegration
from opifex.meta._meta_optimizer import (
    MetaOptimizer,
    MetaOptimizerConfig,
    OrbitalSolver,
    QuantumState,
    QuantumStepInfo,
    SCFContext,
    minimize_orbitals,
)
from opifex.meta._meta_sgd import (
    GradientBasedMetaLearner,
    MetaSGD,
    MetaSGDConfig,
    meta_sgd_parameters,
    per_parameter_sgd,
)
from opifex.meta._monitor import (
    MonitorConfig,
    MonitorState,
    PerformanceMonitor,
    monitor_init,
    monitor_metrics,
    monitor_update,
)
from opifex.meta._reptile import ReptileConfig, ReptileOptimizer
from opifex.meta._scheduler import (
    DETERMINISTIC_STRATEGIES,
    SCHEDULER_STRATEGIES,
    AdaptiveLearningRateScheduler,
    InjectedScheduleState,
    SchedulerConfig,
    SchedulerState,
    scheduled_learning_rate,
    scheduler_init,
    scheduler_update,
    set_learning_rate,
)
from opifex.meta._tasks import FewShotFamily, FewShotTask, TaskPool
from opifex.meta._warm_starting import (
    RESIZE_METHODS,
    WARM_START_STRATEGIES,
    WarmStartingConfig,
    WarmStartingStrategy,
    resize_leaf,
    similarity_from_distance,
    target_initialization,
    transfer_params,
)

__all__ = [
    "DETERMINISTIC_STRATEGIES",
    "RESIZE_METHODS",
    "SCHEDULER_STRATEGIES",
    "WARM_START_STRATEGIES",
    "AdaptationCurve",
    "AdaptiveLearningRateScheduler",
    "FewShotFamily",
    "FewShotTask",
    "GradientBasedMetaLearner",
    "InjectedScheduleState",
    "MAMLConfig",
    "MAMLOptimizer",
    "MetaL2OConfig",
    "MetaL2OIntegration",
    "MetaOptimizer",
    "MetaOptimizerConfig",
    "MetaSGD",
    "MetaSGDConfig",
    "MonitorConfig",
    "MonitorState",
    "OrbitalSolver",
    "PerformanceMonitor",
    "QuantumState",
    "QuantumStepInfo",
    "ReptileConfig",
    "ReptileOptimizer",
    "SCFContext",
    "SchedulerConfig",
    "SchedulerState",
    "TaskPool",
    "WarmStartingConfig",
    "WarmStartingStrategy",
    "adapt",
    "evaluate_adaptation",
    "meta_sgd_parameters",
    "minimize_orbitals",
    "monitor_init",
    "monitor_metrics",
    "monitor_update",
    "per_parameter_sgd",
    "resize_leaf",
    "scheduled_learning_rate",
    "scheduler_init",
    "scheduler_update",
    "set_learning_rate",
    "similarity_from_distance",
    "target_initialization",
    "transfer_params",
]
