"""``L2OBenchmark``: learned optimisers against tuned baselines on the same held-out tasks.

A thin façade over ``split_task_keys``, ``tune_learning_rate``, ``run_baseline``,
``run_optimizer`` and ``compare_runs``. For problem family ``i`` the task keys are
``split_task_keys(jax.random.fold_in(key, i), num_train_tasks, num_test_tasks)``: the tunable
baselines are tuned on the training tasks, then every optimiser runs on the held-out tasks
(same tasks, starting points and minibatches for all). The speedup target on a task is the tuned
baseline's loss at the final step there.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from opifex.core import SolveResult, TaskFamily, check_int_at_least
from opifex.core.families import LassoFamily
from opifex.l2o._baselines import (
    BASELINES,
    DEFAULT_LEARNING_RATES,
    PROXIMAL_BASELINES,
    TUNABLE_BASELINES,
    check_grid,
    run_baseline,
    tune_learning_rate,
)
from opifex.l2o._benchmark_result import BenchmarkResult, FamilyResult
from opifex.l2o._compare import COMPARISONS, compare_runs
from opifex.l2o._evaluate import (
    check_family,
    check_key,
    evaluation_counts,
    run_optimizer,
    split_task_keys,
)

logger = logging.getLogger(__name__)

METRICS = (*COMPARISONS, "fraction_diverged", "wall_time")


def _names(values: Any, valid: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{what} must be a sequence of names, got {values!r}")
    unknown = [v for v in values if v not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; valid: {', '.join(valid)}")
    if len(set(values)) != len(values) or not values:
        raise ValueError(f"{what} must be distinct and non-empty, got {list(values)}")
    return tuple(values)


def _families(problem_families: Any) -> dict[str, TaskFamily]:
    if isinstance(problem_families, Mapping):
        families = dict(problem_families)
    elif isinstance(problem_families, Sequence):
        classes = [type(f).__name__ for f in problem_families]
        families = {
            (c if classes.count(c) == 1 else f"{c}[{i}]"): f
            for i, (c, f) in enumerate(zip(classes, problem_families, strict=True))
        }
    else:
        raise TypeError(
            f"problem_families must be a sequence or a dict of TaskFamily, got {problem_families!r}"
        )
    if not families:
        raise ValueError("problem_families must not be empty")
    for family in families.values():
        check_family(family)
    return families


def _timed(run: Callable[[], SolveResult], timing: bool) -> tuple[SolveResult, float | None]:
    result = jax.block_until_ready(run())
    if not timing:
        return result, None
    start = time.perf_counter()
    jax.block_until_ready(run())  # compiled by the first call
    return result, time.perf_counter() - start


class L2OBenchmark:
    """Benchmark learned optimisers against tuned baselines on held-out tasks.

    Args:
        problem_families: a sequence of hashable ``TaskFamily`` (named by class) or a dict
            ``{name: family}``.
        baseline_optimizers: names from ``BASELINES``: ``"adam"``, ``"sgd"``, ``"momentum"``
            (learning rate tuned), ``"lbfgs"``, and for LASSO families ``"ista"`` / ``"fista"``.
        metrics: names from ``METRICS`` (default all): ``"speedup"``, ``"evaluation_speedup"``,
            ``"final_loss_ratio"``, ``"fraction_diverged"``, ``"wall_time"``.
        learning_rates: the tuning grid (default ``DEFAULT_LEARNING_RATES``, 1e-4 .. 10).

    Raises:
        ValueError: unknown or repeated baseline / metric names (the message lists the valid
            ones), ISTA / FISTA with a family that is not a ``LassoFamily``, a bad grid.
        TypeError: a family that is not a hashable ``TaskFamily``.

    Example:
        >>> import jax, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> bench = L2OBenchmark({"quadratic": QuadraticFamily(dimension=3)}, ["sgd"],
        ...                      metrics=["final_loss_ratio"], learning_rates=[0.01, 0.1, 1.0])
        >>> result = bench.run({"adam": optax.adam(0.3)}, num_steps=10, num_train_tasks=2,
        ...                    num_test_tasks=3, key=jax.random.key(0), progress=False)
        >>> quadratic = result.families["quadratic"]
        >>> quadratic.losses["adam"].shape, quadratic.tuning["sgd"].learning_rate
        ((3, 11), 0.1)
        >>> quadratic.per_task["adam"]["sgd"]["final_loss_ratio"].shape
        (3,)
    """

    def __init__(
        self,
        problem_families: Sequence[TaskFamily] | Mapping[str, TaskFamily],
        baseline_optimizers: Sequence[str] = ("adam", "sgd", "lbfgs"),
        metrics: Sequence[str] = METRICS,
        *,
        learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    ):
        self.problem_families = _families(problem_families)
        self.baseline_optimizers = _names(baseline_optimizers, BASELINES, "baseline_optimizers")
        self.metrics = _names(metrics, METRICS, "metrics")
        self.learning_rates = check_grid(learning_rates)
        for name in set(self.baseline_optimizers) & set(PROXIMAL_BASELINES):
            for label, family in self.problem_families.items():
                if not isinstance(family, LassoFamily):
                    raise ValueError(
                        f"baseline {name!r} needs LassoFamily problems; family {label!r} is a "
                        f"{type(family).__name__}"
                    )

    def _check_learned(self, learned_optimizers: Any) -> dict[str, optax.GradientTransformation]:
        if not isinstance(learned_optimizers, Mapping):
            raise TypeError(
                "learned_optimizers must be a dict {name: optax transformation}, got "
                f"{type(learned_optimizers).__name__}"
            )
        for name, optimizer in learned_optimizers.items():
            if not isinstance(name, str) or name in self.baseline_optimizers:
                raise ValueError(
                    f"learned optimiser names must be strings other than the baselines' "
                    f"{list(self.baseline_optimizers)}, got {name!r}"
                )
            if not isinstance(optimizer, optax.GradientTransformation):
                raise TypeError(
                    f"learned_optimizers[{name!r}] must be an optax GradientTransformation, got "
                    f"{type(optimizer).__name__}"
                )
        return dict(learned_optimizers)

    def run(
        self,
        learned_optimizers: Mapping[str, optax.GradientTransformation],
        num_steps: int,
        num_train_tasks: int,
        num_test_tasks: int,
        key: jax.Array,
        *,
        progress: bool = True,
    ) -> BenchmarkResult:
        """Tune the baselines, run every optimiser on the held-out tasks and compare.

        Args:
            learned_optimizers: ``{name: optimizer}``; any optax transformation (each name
                distinct from the baselines'). May be empty (baselines only).
            num_steps: steps per run (>= 1), also the horizon the baselines are tuned for.
            num_train_tasks: training tasks per family for tuning (>= 1).
            num_test_tasks: held-out tasks per family for the comparison (>= 1).
            key: a ``jax.random`` key; it fixes every task, start and minibatch.
            progress: show a progress bar (one tick per tuning or run).

        Returns:
            A ``BenchmarkResult``.

        Raises:
            ValueError: a learned optimiser named like a baseline, counts below 1.
            TypeError: a learned optimiser that is not an optax transformation, a bad key.
            RuntimeError: a baseline diverged on the training tasks at every learning rate.
        """
        learned = self._check_learned(learned_optimizers)
        check_int_at_least(num_steps, 1, "num_steps")
        check_int_at_least(num_train_tasks, 1, "num_train_tasks")
        check_int_at_least(num_test_tasks, 1, "num_test_tasks")
        check_key(key)
        tuned = [b for b in self.baseline_optimizers if b in TUNABLE_BASELINES]
        work = (len(tuned) + len(self.baseline_optimizers) + len(learned)) * len(
            self.problem_families
        )
        families = {}
        with tqdm(total=work, desc="L2O benchmark", disable=not progress) as bar:
            for index, (label, family) in enumerate(self.problem_families.items()):
                train_keys, test_keys = split_task_keys(
                    jax.random.fold_in(key, index), num_train_tasks, num_test_tasks
                )
                tuning = {}
                for name in tuned:
                    bar.set_postfix_str(f"{label}: tuning {name}")
                    tuning[name] = tune_learning_rate(
                        name, family, train_keys, num_steps, self.learning_rates
                    )
                    bar.update()
                runs, wall_times = {}, {}
                for name in (*self.baseline_optimizers, *learned):
                    bar.set_postfix_str(f"{label}: {name}")
                    if name in learned:
                        run = functools.partial(
                            run_optimizer, learned[name], family, test_keys, num_steps
                        )
                    else:
                        rate = tuning[name].learning_rate if name in tuning else None
                        run = functools.partial(
                            run_baseline, name, family, test_keys, num_steps, rate
                        )
                    runs[name], wall_time = _timed(run, "wall_time" in self.metrics)
                    if wall_time is not None:
                        wall_times[name] = wall_time
                    bar.update()
                curves = {n: np.asarray(r.trace["value"]) for n, r in runs.items()}
                counts = {n: evaluation_counts(r) for n, r in runs.items()}
                families[label] = FamilyResult(
                    description=repr(family),
                    tuning=tuning,
                    losses=curves,
                    num_evaluations=counts,
                    wall_time_s=wall_times,
                    per_task=self._compare(curves, counts, learned),
                )
        result = BenchmarkResult(
            meta=self._meta(num_steps, num_train_tasks, num_test_tasks, key),
            baselines=self.baseline_optimizers,
            learned=tuple(learned),
            metrics=self.metrics,
            families=families,
        )
        for row in result.summary()["comparisons"]:
            logger.info("%s", row)
        return result

    def _compare(
        self,
        curves: dict[str, np.ndarray],
        counts: dict[str, np.ndarray],
        learned: Sequence[str],
    ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """``per_task[learned][baseline][metric]`` for the requested comparison metrics."""
        per_task: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for name in learned:
            per_task[name] = {}
            for baseline in self.baseline_optimizers:
                per_task[name][baseline] = compare_runs(
                    curves[name],
                    counts[name],
                    curves[baseline],
                    counts[baseline],
                    [m for m in COMPARISONS if m in self.metrics],
                )
        return per_task

    def _meta(
        self, num_steps: int, num_train_tasks: int, num_test_tasks: int, key: jax.Array
    ) -> dict[str, Any]:
        device = jax.devices()[0]
        return {
            "num_steps": num_steps,
            "num_train_tasks": num_train_tasks,
            "num_test_tasks": num_test_tasks,
            "learning_rates": list(self.learning_rates),
            "key_data": np.asarray(jax.random.key_data(key)).tolist(),
            "jax_version": jax.__version__,
            "device": f"{device.platform}: {device.device_kind}",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
