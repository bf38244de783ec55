"""``solver_table``: the learned optimiser and the baselines on the same tasks, as a table.

A summary of one ``L2OBenchmark`` run (the one comparison path of ``opifex.l2o``), for
``L2OEngine.compare_all_solvers``: the Adam and SGD learning rates are tuned on training tasks
(grid search), then the learned optimiser (plain, without the engine's fallback), ``"adam"``,
``"sgd"``, ``"lbfgs"`` and, for LASSO, ``"fista"`` run on the same held-out tasks. Each row of
the table holds medians over the held-out tasks (inverted-CDF quantiles):

* ``final_loss``: the loss after ``num_steps`` steps (a NaN counts as ``inf``);
* ``steps_to_target``: the first step at which the loss is at most the target (censored:
  ``inf`` when never reached). The target on a task is ``target`` if given, else the tuned
  Adam's final loss there (the speedup target of the learned-optimisation literature);
* ``wall_time_s``: seconds for one compiled run over all held-out tasks;
* ``fraction_diverged``: the fraction of tasks with a NaN / inf loss;
* ``learning_rate``: the tuned learning rate (``None`` for the others).

Steps are iterations for L-BFGS and FISTA (an L-BFGS iteration costs several evaluations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax

from opifex.core import steps_to_target
from opifex.l2o._baselines import DEFAULT_LEARNING_RATES
from opifex.l2o._benchmark import L2OBenchmark
from opifex.l2o._compare import quantile
from opifex.l2o._problem import OptimizationProblem

LEARNED = "learned"


def solver_table(
    problem: OptimizationProblem,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    key: jax.Array,
    *,
    num_tasks: int = 4,
    num_train_tasks: int = 4,
    target: float | None = None,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """The table of the module docstring: ``{solver: {column: value}}``.

    ``L2OEngine.compare_all_solvers`` calls it with the engine's learned optimiser. (No
    example here: the tuning and the runs compile several programs, which takes seconds.)
    """
    baselines = ("adam", "sgd", "lbfgs") + (("fista",) if problem.problem_type == "lasso" else ())
    label = problem.problem_type
    benchmark = L2OBenchmark(
        {label: problem.family()},
        baselines,
        metrics=("fraction_diverged", "wall_time"),
        learning_rates=learning_rates,
    )
    result = benchmark.run(
        {LEARNED: optimizer}, num_steps, num_train_tasks, num_tasks, key, progress=progress
    )
    family = result.families[label]
    targets = family.losses["adam"][:, -1] if target is None else np.full(num_tasks, target)
    table = {}
    for name in (LEARNED, *baselines):
        losses = family.losses[name]
        finals = np.where(np.isnan(losses[:, -1]), np.inf, losses[:, -1])
        tuned = family.tuning.get(name)
        table[name] = {
            "final_loss": quantile(finals, 0.5),
            "steps_to_target": quantile(np.asarray(steps_to_target(losses, targets)), 0.5),
            "wall_time_s": family.wall_time_s[name],
            "fraction_diverged": family.fraction_diverged(name),
            "learning_rate": None if tuned is None else tuned.learning_rate,
        }
    return table
