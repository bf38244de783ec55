"""Learned optimiser on teacher-student MLP regression: speed to 10 % of the initial loss.

Target 2 of the opifex-l2o issue, on ``TeacherStudentMLPFamily(layer_sizes=(8, 16, 4),
num_points=512, batch_size=32)`` (a student MLP regressing a random teacher of the same
architecture, minibatch losses), horizon 200 steps: the median, over held-out tasks, of the
speedup ``steps_to_target(adam) / steps_to_target(learned)`` to 10 % of the task's initial loss
is at least 2.5 against Adam with its learning rate tuned (``opifex.l2o.tune_learning_rate``,
mean final loss at 200 steps, on the training tasks), and the learned optimiser's median final
loss (mean of the last 10 minibatch losses) is below tuned Adam's and tuned SGD's. The speedup
against tuned SGD is reported beside it: on this family SGD at its tuned learning rate is
itself much faster than tuned Adam to 10 %.

All optimisers run on the same tasks with the same initial parameters and minibatches (same
task keys), so the 10 % target ``0.1 L_0`` is the same for all of them on a task.

``--train`` first meta-trains the optimiser and writes the package's
``pretrained/mlp_regression_mlp.npz``; without it the shipped weights are evaluated. Recipe:
``MLP_REGRESSION_MLP``, antithetic PES on ``meta_loss="log_mean"``, training horizon 60
(shorter than the evaluation horizon: the log-mean over a short unroll weighs the first steps,
where the speed to 10 % is decided), the weights with the lowest validation loss of
``meta_train`` (its own held-out tasks, never the benchmark's).

Run ``python benchmarks/l2o/bench_l2o_mlp_regression.py [--train] [--quick]``. Output: a table
on stdout, ``benchmarks/results/l2o_mlp_regression.json`` and
``benchmarks/results/l2o_mlp_regression.png``.
"""

# No ``from __future__ import annotations``: the CLI loads this file by path.
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from opifex.core import SolveResult, speedup, steps_to_target
from opifex.core.families import TeacherStudentMLPFamily
from opifex.l2o import MLP_REGRESSION_MLP, MetaTrainConfig, load_pretrained, run_optimizer
from opifex.l2o.benchmarking import (
    diverged_mask,
    run_baseline,
    split_task_keys,
    tune_learning_rate,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared module
from l2o_script import environment, print_training, script_main

Progress = Callable[[int, int, str], None]
ROOT = Path(__file__).resolve().parents[2]
NAME = "mlp_regression_mlp"
PRETRAINED = ROOT / f"packages/opifex-l2o/src/opifex/l2o/pretrained/{NAME}.npz"
FAMILY = TeacherStudentMLPFamily(layer_sizes=(8, 16, 4), num_points=512, batch_size=32)
FAMILY_TEXT = "TeacherStudentMLPFamily(layer_sizes=(8, 16, 4), num_points=512, batch_size=32)"
HORIZON = 200
TARGET_FRACTION = 0.1
TARGET_SPEEDUP = 2.5
FINAL_WINDOW = 10
GRID = tuple(float(lr) for lr in np.logspace(-3.0, 1.0, 13))
BASELINES = ("adam", "sgd")

# the meta-training recipe of the shipped weights (the optimiser: opifex.l2o.MLP_REGRESSION_MLP)
RECIPE = MetaTrainConfig(
    estimator="pes",
    meta_loss="log_mean",
    num_tasks=16,
    truncation_length=20,
    horizon=60,
    num_outer_steps=700,
    outer_learning_rate=3e-3,
    clip_norm=1.0,
    pes_sigma=0.01,
    num_particles=8,
    validation_every=87,
    num_validation_tasks=32,
    validation_metric="final_loss",
)
INIT_KEY, TRAIN_KEY, BENCH_KEY = 0, 2, 5


@dataclasses.dataclass(frozen=True)
class Settings:
    num_train_tasks: int = 32
    num_test_tasks: int = 1000


QUICK = Settings(num_train_tasks=16, num_test_tasks=128)


def train(learning_rates: dict[str, float], progress: bool) -> dict[str, Any]:
    """Meta-train with ``RECIPE``, write ``PRETRAINED``; return timing and throughput."""
    recipe = MLP_REGRESSION_MLP
    result, training = recipe.meta_train(
        jax.random.key(INIT_KEY), jax.random.key(TRAIN_KEY), FAMILY, RECIPE, progress=progress
    )
    recipe.save(
        PRETRAINED,
        result.best_phi,
        metadata={
            "family": FAMILY_TEXT,
            "horizon": HORIZON,
            "meta_train": {
                **dataclasses.asdict(RECIPE),
                "keys": [INIT_KEY, TRAIN_KEY],
                "init": f"MLP_REGRESSION_MLP.init_phi(key {INIT_KEY})",
            },
            "selected": "best_phi (lowest validation final loss on meta_train's held-out tasks)",
            "benchmark": "benchmarks/l2o/bench_l2o_mlp_regression.py --train",
            "baseline": {
                **{f"{name}_learning_rate": lr for name, lr in learning_rates.items()},
                "tuned_at_steps": HORIZON,
            },
            "training": {k: v for k, v in training.items() if k != "validation_metric"},
        },
    )
    return training


def _timed(run: Callable[[], SolveResult]) -> tuple[SolveResult, float]:
    """``run()`` and its wall time after a compiling warm-up call."""
    jax.block_until_ready(run().trace["value"])
    start = time.perf_counter()
    result = run()
    jax.block_until_ready(result.trace["value"])
    return result, time.perf_counter() - start


def _finite(value: Any) -> float | None:
    """``float(value)``, or ``None`` (JSON ``null``) where it is not finite (never reached)."""
    return float(value) if np.isfinite(value) else None


def _spread(values: np.ndarray) -> dict[str, float | None]:
    return {f"p{q}": _finite(np.percentile(values, q)) for q in (10, 50, 90)}


def evaluate(
    settings: Settings, learning_rates: dict[str, float], optimizer: Any
) -> dict[str, Any]:
    """Every optimiser on the held-out tasks; steps to 10 %, speedups, final losses, check."""
    _, test_keys = split_task_keys(
        jax.random.key(BENCH_KEY), settings.num_train_tasks, settings.num_test_tasks
    )
    runs = {"l2o_mlp": lambda: run_optimizer(optimizer, FAMILY, test_keys, HORIZON)}
    for name in BASELINES:
        runs[name] = lambda name=name: run_baseline(
            name, FAMILY, test_keys, HORIZON, learning_rate=learning_rates[name]
        )
    curves, finals, rows = {}, {}, []
    for name, call in runs.items():
        result, wall = _timed(call)
        curves[name] = np.asarray(result.trace["value"], dtype=np.float64)
        target_loss = TARGET_FRACTION * curves[name][:, 0]
        steps = np.asarray(steps_to_target(curves[name], target_loss), dtype=np.float64)
        finals[name] = curves[name][:, -FINAL_WINDOW:].mean(axis=1)
        rows.append(
            {
                "optimizer": name,
                "learning_rate": learning_rates.get(name),
                "median_steps_to_target": _finite(np.median(steps)),
                "fraction_reached": float(np.mean(np.isfinite(steps))),
                "median_final_loss": float(np.median(finals[name])),
                "num_diverged": int(np.asarray(diverged_mask(result.trace["value"])).sum()),
                "wall_time_s": wall,
            }
        )
    learned = curves["l2o_mlp"]
    target_loss = TARGET_FRACTION * learned[:, 0]  # the same L_0 for all: the same task keys
    speedups = {
        name: np.asarray(speedup(learned, curves[name], target_loss), dtype=np.float64)
        for name in BASELINES
    }
    median_final = {row["optimizer"]: row["median_final_loss"] for row in rows}
    target = {
        "speedup_threshold": TARGET_SPEEDUP,
        "median_speedup_vs_adam": _finite(np.median(speedups["adam"])),
        "median_final_learned": median_final["l2o_mlp"],
        "median_final_adam": median_final["adam"],
        "median_final_sgd": median_final["sgd"],
    }
    target["met"] = bool(
        np.median(speedups["adam"]) >= TARGET_SPEEDUP
        and target["median_final_learned"] < target["median_final_adam"]
        and target["median_final_learned"] < target["median_final_sgd"]
    )
    long_run = run_optimizer(optimizer, FAMILY, test_keys, 2 * HORIZON)
    long_losses = np.asarray(long_run.trace["value"], dtype=np.float64)
    checks = {
        "num_steps": 2 * HORIZON,
        "num_tasks": settings.num_test_tasks,
        "num_diverged": int(np.asarray(diverged_mask(long_run.trace["value"])).sum()),
        "median_final_loss": float(np.median(long_losses[:, -FINAL_WINDOW:].mean(axis=1))),
    }
    return {
        "rows": rows,
        "speedups": {
            name: {**_spread(s), "fraction_faster": float(np.mean(s > 1.0))}
            for name, s in speedups.items()
        },
        "fraction_final_below": {
            name: float(np.mean(finals["l2o_mlp"] < finals[name])) for name in BASELINES
        },
        "target": target,
        "checks": checks,
        "curves": {
            name: {
                f"p{q}": [float(f"{v:.4g}") for v in np.percentile(curve / curve[:, :1], q, axis=0)]
                for q in (10, 50, 90)
            }
            for name, curve in curves.items()
        },
    }


def plot(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Median loss relative to the initial one per step, log-y, with the 10-90 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, q in curves.items():
        steps = np.arange(len(q["p50"]))
        (line,) = ax.plot(steps, q["p50"], label=name)
        ax.fill_between(steps, q["p10"], q["p90"], color=line.get_color(), alpha=0.15)
    ax.axhline(TARGET_FRACTION, color="grey", linestyle=":", label="10 % target")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("minibatch loss / initial loss")
    ax.set_title("Teacher-student MLP 8-16-4: median and 10-90 % band over tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(
    settings: Settings, train_first: bool, progress: Progress | None, plot_path: Path | None
) -> dict[str, Any]:
    tick = progress or (lambda done, total, label: None)
    total = 3 if train_first else 2
    done = 0
    train_keys, _ = split_task_keys(
        jax.random.key(BENCH_KEY), settings.num_train_tasks, settings.num_test_tasks
    )
    start = time.perf_counter()
    tunings = {
        name: tune_learning_rate(name, FAMILY, train_keys, HORIZON, grid=GRID) for name in BASELINES
    }
    tuning_s = time.perf_counter() - start
    learning_rates = {name: t.learning_rate for name, t in tunings.items()}
    done += 1
    tick(done, total, "tuned Adam and SGD")
    training = None
    if train_first:
        training = train(learning_rates, progress=progress is None)
        done += 1
        tick(done, total, "meta-trained")
    pretrained = load_pretrained(NAME)
    result = evaluate(settings, learning_rates, pretrained.optimizer)
    done += 1
    tick(done, total, "evaluated")
    if plot_path is not None:
        plot(result["curves"], plot_path)
    return {
        "benchmark": "l2o_mlp_regression",
        "meta": {**environment(), "settings": dataclasses.asdict(settings)},
        "family": FAMILY_TEXT,
        "horizon": HORIZON,
        "pretrained": pretrained.metadata,
        "training": training,
        "tuning": {
            "grid": list(GRID),
            "learning_rates": learning_rates,
            "wall_time_s": tuning_s,
        },
        "summary": result["rows"],
        "speedups": result["speedups"],
        "fraction_final_below": result["fraction_final_below"],
        "checks": {"400_steps": result["checks"]},
        "targets": {"mlp_regression_speedup": result["target"]},
        "relative_loss_quantiles": result["curves"],
    }


def _print(report: dict[str, Any]) -> None:
    print(f"\n{report['family']}, {report['meta']['settings']}")
    print("tuned learning rates:", json.dumps(report["tuning"]["learning_rates"]))
    for row in report["summary"]:
        print(
            "  "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
        )
    print("speedup of the learned optimiser:", json.dumps(report["speedups"]))
    print("fraction of final losses below:", json.dumps(report["fraction_final_below"]))
    print("checks:", json.dumps(report["checks"]))
    print("target 2:", json.dumps(report["targets"]["mlp_regression_speedup"]))
    print_training(report["training"])


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    return script_main(
        argv,
        progress,
        description=__doc__.splitlines()[0],
        quick_help="128 held-out tasks, 16 for tuning",
        name="l2o_mlp_regression",
        run=lambda quick, train, tick, plot: run(QUICK if quick else Settings(), train, tick, plot),
        printout=_print,
    )


if __name__ == "__main__":
    sys.exit(main())
