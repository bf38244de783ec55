"""What ``L2OBenchmark.run`` returns: curves, tuning tables, per-task metrics and summaries.

``to_json_dict`` gives plain JSON (non-finite numbers as the strings ``"nan"``, ``"inf"``,
``"-inf"``, so that ``json.dumps(..., allow_nan=False)`` works) and ``from_json_dict`` reads it
back. ``plot`` draws the learning curves with matplotlib, which is not a dependency of
``opifex-l2o``: it is imported only there.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from opifex.l2o._baselines import TuningResult
from opifex.l2o._compare import quantile

FORMAT = "opifex.l2o.benchmark/1"


@dataclasses.dataclass(frozen=True)
class FamilyResult:
    """The results on one problem family (all on the same held-out tasks).

    Attributes:
        description: ``repr`` of the family.
        tuning: per tuned baseline, its ``TuningResult`` (on the training tasks).
        losses: per optimiser, its ``(num_test_tasks, num_steps + 1)`` loss curves.
        num_evaluations: per optimiser, its evaluation counts, the same shape.
        wall_time_s: per optimiser, seconds for one compiled run on all held-out tasks
            (measured after a first, compiling run; empty unless the ``"wall_time"`` metric).
        per_task: ``per_task[learned][baseline][metric]``, a ``(num_test_tasks,)`` array of
            each requested comparison metric.
    """

    description: str
    tuning: dict[str, TuningResult]
    losses: dict[str, np.ndarray]
    num_evaluations: dict[str, np.ndarray]
    wall_time_s: dict[str, float]
    per_task: dict[str, dict[str, dict[str, np.ndarray]]]

    def fraction_diverged(self, name: str) -> float:
        """The fraction of held-out tasks on which optimiser ``name`` hit a NaN / inf loss."""
        return float(np.mean(~np.all(np.isfinite(self.losses[name]), axis=1)))


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _encode(value.tolist())
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def _floats(value: Any) -> np.ndarray:
    """Decode a (nested) list of numbers and ``"nan"`` / ``"inf"`` strings."""
    return np.asarray(value, dtype=object).astype(float)


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """The outcome of ``L2OBenchmark.run``.

    Attributes:
        meta: settings and provenance (``num_steps``, task counts, learning-rate grid, key,
            jax version, device, date).
        baselines: the baseline names, in order.
        learned: the learned optimisers' names, in order.
        metrics: the metrics requested.
        families: per family name, its ``FamilyResult``.
    """

    meta: dict[str, Any]
    baselines: tuple[str, ...]
    learned: tuple[str, ...]
    metrics: tuple[str, ...]
    families: dict[str, FamilyResult]

    def summary(self) -> dict[str, list[dict[str, Any]]]:
        """Table rows: ``"optimizers"`` (one per family and optimiser) and ``"comparisons"``.

        A comparison row (one per family, learned optimiser and baseline) has, per requested
        comparison metric, its median and 90th percentile over the held-out tasks (inverted-CDF
        quantiles of the tasks where it is defined) and on how many tasks it is undefined (NaN,
        e.g. where the baseline diverged).
        """
        optimizers, comparisons = [], []
        for family, result in self.families.items():
            for name in (*self.baselines, *self.learned):
                tuned = result.tuning.get(name)
                finals = result.losses[name][:, -1]
                row = {
                    "family": family,
                    "optimizer": name,
                    "kind": "baseline" if name in self.baselines else "learned",
                    "learning_rate": None if tuned is None else tuned.learning_rate,
                    # a NaN final loss (diverged) ranks as the worst, it is not dropped
                    "final_loss_median": quantile(np.where(np.isnan(finals), np.inf, finals), 0.5),
                    "num_evaluations_median": quantile(result.num_evaluations[name][:, -1], 0.5),
                }
                if "fraction_diverged" in self.metrics:
                    row["fraction_diverged"] = result.fraction_diverged(name)
                if name in result.wall_time_s:
                    row["wall_time_s"] = result.wall_time_s[name]
                optimizers.append(row)
            for learned, against in result.per_task.items():
                for baseline, values in against.items():
                    row = {"family": family, "optimizer": learned, "baseline": baseline}
                    for metric, per_task in values.items():
                        row[f"{metric}_median"] = quantile(per_task, 0.5)
                        row[f"{metric}_p90"] = quantile(per_task, 0.9)
                        row[f"{metric}_num_undefined"] = int(np.sum(np.isnan(per_task)))
                    comparisons.append(row)
        return {"optimizers": optimizers, "comparisons": comparisons}

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(..., allow_nan=False)`` accepts it)."""
        families = {
            name: {
                "description": r.description,
                "tuning": {k: t._asdict() for k, t in r.tuning.items()},
                "losses": r.losses,
                "num_evaluations": r.num_evaluations,
                "wall_time_s": r.wall_time_s,
                "per_task": r.per_task,
            }
            for name, r in self.families.items()
        }
        return _encode(
            {
                "format": FORMAT,
                "meta": self.meta,
                "baselines": self.baselines,
                "learned": self.learned,
                "metrics": self.metrics,
                "families": families,
                "summary": self.summary(),
            }
        )

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Read back the output of ``to_json_dict`` (``summary`` is recomputed, not read)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not an L2O benchmark result of format {FORMAT!r}: got {found!r}")
        families = {}
        for name, r in data["families"].items():
            tuning = {
                k: TuningResult(
                    name=t["name"],
                    learning_rate=float(t["learning_rate"]),
                    grid=tuple(float(v) for v in t["grid"]),
                    scores=tuple(float(v) for v in t["scores"]),
                    num_diverged=tuple(int(v) for v in t["num_diverged"]),
                )
                for k, t in r["tuning"].items()
            }
            families[name] = FamilyResult(
                description=r["description"],
                tuning=tuning,
                losses={k: _floats(v) for k, v in r["losses"].items()},
                num_evaluations={
                    k: np.asarray(v, dtype=np.int64) for k, v in r["num_evaluations"].items()
                },
                wall_time_s={k: float(v) for k, v in r["wall_time_s"].items()},
                per_task={
                    learned: {
                        baseline: {metric: _floats(v) for metric, v in values.items()}
                        for baseline, values in against.items()
                    }
                    for learned, against in r["per_task"].items()
                },
            )
        return cls(
            meta=dict(data["meta"]),
            baselines=tuple(data["baselines"]),
            learned=tuple(data["learned"]),
            metrics=tuple(data["metrics"]),
            families=families,
        )

    def plot(self, path: str | os.PathLike) -> str:
        """Save the learning curves as an image (PNG for a ``.png`` path); return the path.

        One panel per family, log-scaled loss against steps (iterations for L-BFGS, ISTA and
        FISTA): per optimiser, the median over the held-out tasks and a band from the 10th to
        the 90th percentile. A diverged task counts as an infinite loss (the legend gives how
        many); losses <= 0 are not drawn (log scale).

        Raises:
            ImportError: matplotlib is not installed (the ``plot`` extra: ``opifex-l2o[plot]``).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as error:
            raise ImportError(
                "BenchmarkResult.plot needs matplotlib, which opifex-l2o does not install: "
                "pip install 'opifex-l2o[plot]'"
            ) from error
        figure = Figure(figsize=(5.0 * len(self.families), 4.0), layout="constrained")
        axes = figure.subplots(1, len(self.families), squeeze=False)[0]
        for ax, (family, result) in zip(axes, self.families.items(), strict=True):
            for name in (*self.baselines, *self.learned):
                curves = np.where(np.isnan(result.losses[name]), np.inf, result.losses[name])
                low, median, high = (
                    np.quantile(curves, q, axis=0, method="inverted_cdf") for q in (0.1, 0.5, 0.9)
                )
                steps = np.arange(curves.shape[1])
                diverged = int(np.sum(~np.all(np.isfinite(curves), axis=1)))
                label = name + (f" ({diverged} diverged)" if diverged else "")
                (line,) = ax.plot(steps, median, label=label)
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
            ax.set_yscale("log", nonpositive="mask")
            ax.set_title(family)
            ax.set_xlabel("step (iteration for L-BFGS, ISTA, FISTA)")
            ax.set_ylabel("loss: median, 10-90% band")
            ax.legend(fontsize="small")
        figure.savefig(path, dpi=120)
        return os.fspath(path)
