"""Learned optimiser benchmark: opifex.l2o's pretrained MLP optimiser against tuned baselines.

Target 1 of the opifex-l2o issue, on random quadratics ``f(theta) = ||W theta - y||^2``
(``QuadraticFamily(dimension=10)``, ``W`` and ``y`` Gaussian), horizon 100:

* the median, over held-out tasks, of the speedup over learning-rate-tuned Adam is at least 2
  (Adam's step-100 loss reached in at most 50 steps; ``opifex.core.speedup``, censored);
* nothing diverges (non-finite, or a final loss above the first) when the learned optimiser
  runs for 200 steps, or on ``dimension=20`` quadratics.

The claim is also measured where the optimiser was not trained (``SHIFTED``): the same tasks
with the loss divided or multiplied by 10 or the parameters multiplied by 10, and quadratics
from other generators (uniform entries; a prescribed condition number), each against Adam
re-tuned on that family.

Baselines (``opifex.l2o.L2OBenchmark``): Adam, plain gradient descent and heavy-ball momentum
with learning rates grid-tuned on training tasks (mean final loss at step 100), and L-BFGS
(compared in iterations and in loss evaluations). All run in one process on the same held-out
tasks, starts and keys.

``--train`` first meta-trains the optimiser (antithetic PES on the log of the loss, the recipe
in ``RECIPE``) and writes it to the package's ``pretrained/quadratic10_mlp.npz``; without it
the shipped weights are evaluated. Meta-training throughput (inner steps per second across
the task batch and particles) is recorded when ``--train`` runs.

Run ``python benchmarks/l2o/bench_l2o.py [--train] [--quick]``; ``opifex bench l2o`` calls
``main(argv, progress)``. Output: a table on stdout, ``benchmarks/results/l2o.json`` and
``benchmarks/results/l2o.png``.
"""

# No ``from __future__ import annotations``: the CLI loads this file by path.
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from opifex.core.families import QuadraticFamily, ScaledFamily
from opifex.l2o import (
    QUADRATIC10_MLP,
    L2OBenchmark,
    MetaTrainConfig,
    load_pretrained,
    run_optimizer,
)
from opifex.l2o.benchmarking import diverged_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared module
from l2o_script import environment, print_training, script_main

Progress = Callable[[int, int, str], None]
ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "packages/opifex-l2o/src/opifex/l2o/pretrained/quadratic10_mlp.npz"
FAMILY = QuadraticFamily(dimension=10)
HORIZON = 100

# the meta-training recipe of the shipped weights (the optimiser: opifex.l2o.QUADRATIC10_MLP)
RECIPE = MetaTrainConfig(
    estimator="pes",
    meta_loss="log_mean",
    num_tasks=32,
    truncation_length=20,
    horizon=HORIZON,
    num_outer_steps=6000,
    outer_learning_rate=1e-3,
    clip_norm=1.0,
    pes_sigma=0.01,
    num_particles=8,
    validation_every=100,
    num_validation_tasks=64,
    validation_metric="final_loss",
)
INIT_KEY, TRAIN_KEY, BENCH_KEY, EXTRA_KEY = 0, 2, 1, 3
# tasks the optimiser was not trained on (the claim must survive them); Adam is re-tuned on each
SHIFTED = {
    "loss / 10 (same tasks)": ScaledFamily(FAMILY, loss_scale=0.1),
    "loss x 10 (same tasks)": ScaledFamily(FAMILY, loss_scale=10.0),
    "parameters x 10 (same tasks)": ScaledFamily(FAMILY, param_scale=10.0),
    "uniform W and y": QuadraticFamily(dimension=10, sampler="uniform"),
    "condition number 100": QuadraticFamily(dimension=10, condition_number=100.0),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    num_train_tasks: int = 64
    num_test_tasks: int = 1000


QUICK = Settings(num_train_tasks=16, num_test_tasks=100)


def train(progress: bool) -> dict[str, Any]:
    """Meta-train with ``RECIPE``, write ``PRETRAINED``; return timing and throughput."""
    recipe = QUADRATIC10_MLP
    result, training = recipe.meta_train(
        jax.random.key(INIT_KEY), jax.random.key(TRAIN_KEY), FAMILY, RECIPE, progress=progress
    )
    recipe.save(
        PRETRAINED,
        result.best_phi,
        metadata={
            "family": "QuadraticFamily(dimension=10)",
            "horizon": HORIZON,
            "meta_train": {**dataclasses.asdict(RECIPE), "keys": [INIT_KEY, TRAIN_KEY]},
            "selected": "best_phi (lowest validation final loss on meta_train's held-out tasks)",
            "benchmark": "benchmarks/l2o/bench_l2o.py --train",
            "training": {k: v for k, v in training.items() if k != "validation_metric"},
        },
    )
    return training


def _divergence(optimizer: Any, family: QuadraticFamily, steps: int, tasks: int) -> dict:
    keys = jax.random.split(jax.random.key(EXTRA_KEY), tasks)
    losses = run_optimizer(optimizer, family, keys, steps).trace["value"]
    diverged = np.asarray(diverged_mask(losses))
    ratio = np.asarray(losses[:, -1] / losses[:, 0])
    return {
        "dimension": family.dimension,
        "num_steps": steps,
        "num_tasks": tasks,
        "num_diverged": int(diverged.sum()),
        "median_final_over_initial": float(np.median(ratio)),
    }


def _shifted(optimizer: Any, settings: Settings, progress: bool) -> list[dict[str, Any]]:
    """The speedup over Adam, re-tuned on each, on tasks the optimiser was not trained on.

    Each shifted family gets its own benchmark with the main run's key, so the scaled families
    see exactly the main run's held-out tasks.
    """
    rows = []
    for label, family in SHIFTED.items():
        result = L2OBenchmark({label: family}, baseline_optimizers=("adam",)).run(
            {"l2o_mlp": optimizer},
            num_steps=HORIZON,
            num_train_tasks=settings.num_train_tasks,
            num_test_tasks=settings.num_test_tasks,
            key=jax.random.key(BENCH_KEY),
            progress=progress,
        )
        shifted = result.families[label]
        speedups = np.asarray(shifted.per_task["l2o_mlp"]["adam"]["speedup"])
        ratios = np.asarray(shifted.per_task["l2o_mlp"]["adam"]["final_loss_ratio"])
        rows.append(
            {
                "tasks": label,
                "family": repr(family),
                "adam_learning_rate": shifted.tuning["adam"].learning_rate,
                "median_speedup_vs_tuned_adam": float(np.median(speedups)),
                "p10_speedup": float(np.percentile(speedups, 10)),
                "p90_speedup": float(np.percentile(speedups, 90)),
                "fraction_at_least_2x": float(np.mean(speedups >= 2.0)),
                "median_final_loss_ratio": float(np.nanmedian(ratios)),
                "fraction_diverged": shifted.fraction_diverged("l2o_mlp"),
            }
        )
    return rows


def _compact(full: dict[str, Any], losses: dict[str, Any]) -> dict[str, Any]:
    """The JSON result without per-task curves (20 MB for 1000 tasks): tuning tables, the
    per-step 10 / 50 / 90 % quantiles of every optimiser's loss, per-task speedups vs Adam."""
    family = full["families"]["quadratic10"]
    quantiles = {
        name: {f"p{q}": np.percentile(np.asarray(curves), q, axis=0).tolist() for q in (10, 50, 90)}
        for name, curves in losses.items()
    }
    return {
        "format": full["format"],
        "baselines": full["baselines"],
        "learned": full["learned"],
        "tuning": family["tuning"],
        "wall_time_s": family["wall_time_s"],
        "loss_quantiles": quantiles,
        "speedup_vs_adam": family["per_task"]["l2o_mlp"]["adam"]["speedup"],
    }


def run(
    settings: Settings, train_first: bool, progress: Progress | None, plot_path: Path | None
) -> dict[str, Any]:
    tick = progress or (lambda done, total, label: None)
    total = 5 if train_first else 4
    done = 0
    training = None
    if train_first:
        training = train(progress=progress is None)
        done += 1
        tick(done, total, "meta-trained")
    pretrained = load_pretrained("quadratic10_mlp")
    bench = L2OBenchmark(
        {"quadratic10": FAMILY}, baseline_optimizers=("adam", "sgd", "momentum", "lbfgs")
    )
    result = bench.run(
        {"l2o_mlp": pretrained.optimizer},
        num_steps=HORIZON,
        num_train_tasks=settings.num_train_tasks,
        num_test_tasks=settings.num_test_tasks,
        key=jax.random.key(BENCH_KEY),
        progress=progress is None,
    )
    done += 1
    tick(done, total, "benchmark")
    long_run = _divergence(pretrained.optimizer, FAMILY, 2 * HORIZON, settings.num_test_tasks)
    done += 1
    tick(done, total, "200 steps")
    larger = _divergence(
        pretrained.optimizer, QuadraticFamily(dimension=20), 2 * HORIZON, settings.num_test_tasks
    )
    done += 1
    tick(done, total, "dimension 20")
    shifted = _shifted(pretrained.optimizer, settings, progress is None)
    done += 1
    tick(done, total, "shifted tasks")
    quadratic = result.families["quadratic10"]
    speedups = np.asarray(quadratic.per_task["l2o_mlp"]["adam"]["speedup"])
    median = float(np.median(speedups))
    target = {
        "median_speedup_vs_tuned_adam": median,
        "p10_speedup": float(np.percentile(speedups, 10)),
        "p90_speedup": float(np.percentile(speedups, 90)),
        "fraction_at_least_2x": float(np.mean(speedups >= 2.0)),
        "diverged_200_steps": long_run["num_diverged"],
        "diverged_dimension_20": larger["num_diverged"],
    }
    target["met"] = bool(median >= 2.0 and long_run["num_diverged"] == larger["num_diverged"] == 0)
    if plot_path is not None:
        result.plot(plot_path)
    return {
        "benchmark": "l2o",
        "meta": {**environment(), "settings": dataclasses.asdict(settings)},
        "pretrained": pretrained.metadata,
        "training": training,
        "result": _compact(result.to_json_dict(), quadratic.losses),
        "summary": result.summary(),
        "checks": {"200_steps": long_run, "dimension_20": larger},
        "shifted": shifted,
        "targets": {"quadratic_2x_vs_tuned_adam": target},
    }


def _print(report: dict[str, Any]) -> None:
    for label, rows in report["summary"].items():
        print(f"\n{label}")
        for row in rows:
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    print("\nchecks:", json.dumps(report["checks"]))
    print("\nshifted tasks (Adam re-tuned on each):")
    for row in report["shifted"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "family"))
    print("target 1:", json.dumps(report["targets"]["quadratic_2x_vs_tuned_adam"]))
    print_training(report["training"])


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    return script_main(
        argv,
        progress,
        description=__doc__.splitlines()[0],
        quick_help="100 held-out tasks (< ~1 min)",
        name="l2o",
        run=lambda quick, train, tick, plot: run(QUICK if quick else Settings(), train, tick, plot),
        printout=_print,
    )


if __name__ == "__main__":
    sys.exit(main())
