"""Per-task comparison of an optimiser's loss curves with a baseline's, and their summaries.

* ``speedup``: ``opifex.core.speedup`` in steps, with the target the baseline's final loss on
  that task (censored: never reached -> 0; NaN when the baseline's final loss is NaN). A
  speedup of at least 2 means the baseline's final loss was reached in at most half its steps.
  Where the baseline ends no lower than it started, its target is met at step 0: a method
  from the same start then gets speedup 1, whatever it does next.
* ``evaluation_speedup``: the same on the axis of loss evaluations (the runs'
  ``trace["num_fun_evals"]``), the honest comparison with a method whose steps cost several
  evaluations, such as L-BFGS and its line search.
* ``final_loss_ratio``: the method's final loss over the baseline's (below 1 is better).

Summaries are sample quantiles with the inverted-CDF rule (each is one task's actual value, so
that infinite speedups need no interpolation), over the tasks whose value is not NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.typing import ArrayLike

from opifex.core import check_choice, speedup

COMPARISONS = ("speedup", "evaluation_speedup", "final_loss_ratio")
_speedup = jax.jit(speedup)  # one compilation per shape, not one per operation


def losses_by_evaluations(losses: ArrayLike, num_evaluations: ArrayLike, length: int) -> np.ndarray:
    """Re-index loss curves by evaluations: entry ``e`` is the loss known after ``e`` evaluations.

    That is the loss at the last step ``k`` with ``num_evaluations[k] <= e`` (``inf`` before the
    first step's evaluation).

    Args:
        losses: ``(num_tasks, num_steps + 1)`` loss curves.
        num_evaluations: non-decreasing evaluation counts, the same shape.
        length: entries of the re-indexed curves (``e = 0 .. length - 1``).

    Returns:
        ``(num_tasks, length)`` curves.

    Example:
        >>> losses_by_evaluations([[4.0, 2.0, 1.0]], [[1, 3, 4]], 6).tolist()
        [[inf, 4.0, 4.0, 2.0, 1.0, 1.0]]
    """
    losses = np.asarray(losses, dtype=float)
    counts = np.asarray(num_evaluations)
    evaluations = np.arange(length)
    curves = np.full((losses.shape[0], length), np.inf)
    for i, (curve, count) in enumerate(zip(losses, counts, strict=True)):
        index = np.searchsorted(count, evaluations, side="right") - 1
        curves[i] = np.where(index >= 0, curve[np.maximum(index, 0)], np.inf)
    return curves


def compare_runs(
    losses: ArrayLike,
    num_evaluations: ArrayLike,
    baseline_losses: ArrayLike,
    baseline_evaluations: ArrayLike,
    metrics: Sequence[str] = COMPARISONS,
) -> dict[str, np.ndarray]:
    """The per-task ``metrics`` of a method's curves against a baseline's (same tasks).

    Args:
        losses: the method's ``(num_tasks, num_steps + 1)`` loss curves.
        num_evaluations: its evaluation counts, the same shape.
        baseline_losses: the baseline's loss curves on the same tasks.
        baseline_evaluations: the baseline's evaluation counts.
        metrics: names from ``COMPARISONS`` (default all).

    Returns:
        ``{metric: (num_tasks,) array}``.

    Raises:
        ValueError: curves of different tasks, an unknown metric.

    Example:
        >>> curve, counts = [[8.0, 4.0, 2.0, 1.0]], [[1, 2, 3, 4]]
        >>> {k: v.tolist() for k, v in compare_runs(curve, counts, curve, counts).items()}
        {'speedup': [1.0], 'evaluation_speedup': [1.0], 'final_loss_ratio': [1.0]}
    """
    for metric in metrics:
        check_choice(metric, COMPARISONS, "metric")
    losses = np.asarray(losses, dtype=float)
    baseline = np.asarray(baseline_losses, dtype=float)
    if losses.ndim != 2 or baseline.ndim != 2 or losses.shape[0] != baseline.shape[0]:
        raise ValueError(
            "losses and baseline_losses must be (num_tasks, num_steps + 1) curves of the same "
            f"tasks, got shapes {losses.shape} and {baseline.shape}"
        )
    target = baseline[:, -1]
    values = {}
    if "speedup" in metrics:
        values["speedup"] = np.asarray(_speedup(losses, baseline), dtype=float)
    if "evaluation_speedup" in metrics:
        length = 1 + int(max(np.max(num_evaluations), np.max(baseline_evaluations)))
        method_curves = losses_by_evaluations(losses, num_evaluations, length)
        baseline_curves = losses_by_evaluations(baseline, baseline_evaluations, length)
        speedups = _speedup(method_curves, baseline_curves, target)
        values["evaluation_speedup"] = np.asarray(speedups, dtype=float)
    if "final_loss_ratio" in metrics:
        with np.errstate(divide="ignore", invalid="ignore"):
            values["final_loss_ratio"] = losses[:, -1] / target
    return values


def quantile(values: ArrayLike, q: float) -> float:
    """The inverted-CDF sample quantile ``q`` of the non-NaN ``values`` (NaN if there are none).

    Example:
        >>> quantile([1.0, 3.0, float("inf"), float("nan")], 0.5)
        3.0
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan")
    return float(np.quantile(values, q, method="inverted_cdf"))
