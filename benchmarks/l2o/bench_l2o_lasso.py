"""Learned optimiser on LASSO: the pretrained MLP optimiser against tuned Adam, ISTA, FISTA.

Target 3 of the opifex-l2o issue, on LASSO problems ``min_x 0.5 ||A x - b||^2 + lambda ||x||_1``
(``LassoFamily(num_rows=25, dimension=50, l1_penalty=0.005)``: unit-norm Gaussian columns,
``b = A x_true`` with a 10 %-sparse ``x_true``, start ``x_0 = 0``), horizon 1000 iterations:
the median and the 90th percentile, over held-out tasks, of the learned optimiser's relative
loss after 1000 iterations are both below those of Adam with its learning rate tuned
(``opifex.l2o.tune_learning_rate``, mean final loss at 1000 steps) on the training tasks. ISTA
and FISTA (proximal gradient, step ``1 / ||A||^2``; they use the structure of the problem that
the gradient-only optimisers do not) are reported beside it.

Relative loss: ``(f(x_k) - f*) / (f(x_0) - f*)`` per task, with ``f*`` the lowest objective of
a 20000-iteration FISTA run on that task. Everything runs in float32, so the relative loss has a
floor near ``1e-7 f* / (f(x_0) - f*)`` (rounding of ``f`` itself near the optimum; FISTA's
plateau near 1e-9 is that floor), and can even be slightly negative. Tasks with
``f(x_0) - f* <= 0`` (``x_true = 0``, so ``b = 0`` and ``x_0 = 0`` is optimal) are excluded and
counted.

``--train`` first meta-trains the optimiser and writes the package's
``pretrained/lasso25x50_mlp.npz``; without it the shipped weights are evaluated. Recipe:
``LASSO25X50_MLP`` (no loss features), antithetic PES on ``meta_loss="log_mean"``, horizons
100 -> 300 -> 1000 (``CURRICULUM``), the weights with the lowest validation loss of
``meta_train`` (its own held-out tasks, never the benchmark's). Meta-training runs on
``GapLassoFamily``, whose loss is the optimality gap ``f - f*``: ``log_mean`` then averages
``log(f - f*)``, which keeps rewarding progress as the gap shrinks by orders of magnitude,
whereas ``log f`` flattens at ``log f*`` and stops distinguishing a gap of 1e-3 from 1e-6.
The gradient is unchanged (``f*`` is a per-task constant), and the optimiser has no loss
features, so it never sees ``f*``: the benchmark runs it on the plain ``LassoFamily``.

Run ``python benchmarks/l2o/bench_l2o_lasso.py [--train] [--quick]``. Output: a table on
stdout, ``benchmarks/results/l2o_lasso.json`` and ``benchmarks/results/l2o_lasso.png``.
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
import jax.numpy as jnp
import numpy as np

from opifex.core import SolveResult
from opifex.core.families import LassoFamily, LassoTask, fista
from opifex.l2o import (
    LASSO25X50_MLP,
    L2OCurriculum,
    MetaTrainConfig,
    load_pretrained,
    run_optimizer,
)
from opifex.l2o.benchmarking import (
    diverged_mask,
    run_baseline,
    sample_tasks,
    split_task_keys,
    tune_learning_rate,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared module
from l2o_script import environment, print_training, script_main

Progress = Callable[[int, int, str], None]
ROOT = Path(__file__).resolve().parents[2]
NAME = "lasso25x50_mlp"
PRETRAINED = ROOT / f"packages/opifex-l2o/src/opifex/l2o/pretrained/{NAME}.npz"
FAMILY = LassoFamily(num_rows=25, dimension=50, l1_penalty=0.005)
FAMILY_TEXT = "LassoFamily(num_rows=25, dimension=50, l1_penalty=0.005)"
HORIZON = 1000
REFERENCE_ITERATIONS = 20_000
ADAM_GRID = tuple(float(lr) for lr in np.logspace(-4.0, 1.0, 16))
REPORT_STEPS = (100, 300, 1000)

# the meta-training recipe of the shipped weights (the optimiser: opifex.l2o.LASSO25X50_MLP)
RECIPE = MetaTrainConfig(
    estimator="pes",
    meta_loss="log_mean",
    num_tasks=16,
    truncation_length=50,
    horizon=HORIZON,
    num_outer_steps=6500,
    outer_learning_rate=1e-3,
    clip_norm=1.0,
    pes_sigma=0.01,
    num_particles=4,
    validation_every=250,
    num_validation_tasks=32,
    validation_metric="final_loss",
)
CURRICULUM = L2OCurriculum(horizons=(100, 300, HORIZON), steps_per_stage=1000)
INIT_KEY, TRAIN_KEY, BENCH_KEY = 0, 2, 11


@dataclasses.dataclass(frozen=True)
class GapLassoFamily:
    """``FAMILY`` with loss ``f(x) - f*`` (``f*`` from ``ref_iters`` FISTA iterations).

    For meta-training only (module docstring). ``f*`` is lowered by ``margin`` times the
    initial gap plus 1e-9 so that the gap stays positive and its log finite.
    """

    base: LassoFamily = FAMILY
    ref_iters: int = 300
    margin: float = 1e-6

    def sample(self, key: jax.Array) -> tuple[LassoTask, jax.Array]:
        task = self.base.sample(key)
        solved = fista(task.matrix, task.target, self.base.l1_penalty, self.ref_iters)
        losses = solved.trace["value"]
        best = jnp.min(losses)
        optimum = best - self.margin * (losses[0] - best) - 1e-9
        return task, jax.lax.stop_gradient(optimum)

    def init(self, key: jax.Array, task: tuple[LassoTask, jax.Array]) -> jax.Array:
        return self.base.init(key, task[0])

    def loss(self, params: jax.Array, task: tuple[LassoTask, jax.Array], key: Any) -> jax.Array:
        lasso_task, optimum = task
        return self.base.loss(params, lasso_task, key) - optimum


@dataclasses.dataclass(frozen=True)
class Settings:
    num_train_tasks: int = 64
    num_test_tasks: int = 256


QUICK = Settings(num_train_tasks=16, num_test_tasks=64)


def train(adam_learning_rate: float, progress: bool) -> dict[str, Any]:
    """Meta-train with ``RECIPE``, write ``PRETRAINED``; return timing and throughput."""
    recipe = LASSO25X50_MLP
    result, training = recipe.meta_train(
        jax.random.key(INIT_KEY),
        jax.random.key(TRAIN_KEY),
        GapLassoFamily(),
        RECIPE,
        curriculum=CURRICULUM,
        progress=progress,
    )
    recipe.save(
        PRETRAINED,
        result.best_phi,
        metadata={
            "family": FAMILY_TEXT,
            "horizon": HORIZON,
            "meta_train": {
                **dataclasses.asdict(RECIPE),
                "curriculum": dataclasses.asdict(CURRICULUM),
                "keys": [INIT_KEY, TRAIN_KEY],
                "init": f"LASSO25X50_MLP.init_phi(key {INIT_KEY})",
                "meta_loss_on": "log(f - f*), f* from 300 FISTA iterations (GapLassoFamily)",
            },
            "selected": "best_phi (lowest validation final gap on meta_train's held-out tasks)",
            "benchmark": "benchmarks/l2o/bench_l2o_lasso.py --train",
            "baseline": {"adam_learning_rate": adam_learning_rate, "tuned_at_steps": HORIZON},
            "training": {k: v for k, v in training.items() if k != "validation_metric"},
        },
    )
    return training


@jax.jit
def _optima(matrix: jax.Array, target: jax.Array) -> jax.Array:
    run = jax.vmap(lambda a, b: fista(a, b, FAMILY.l1_penalty, REFERENCE_ITERATIONS))
    return jnp.min(run(matrix, target).trace["value"], axis=1)


def reference_optima(task_keys: jax.Array) -> np.ndarray:
    """``f*`` per task: the lowest objective of a ``REFERENCE_ITERATIONS``-step FISTA run."""
    tasks, _ = sample_tasks(FAMILY, task_keys)
    return np.asarray(_optima(tasks.matrix, tasks.target), dtype=np.float64)


def _timed(run: Callable[[], SolveResult]) -> tuple[SolveResult, float]:
    """``run()`` and its wall time after a compiling warm-up call."""
    jax.block_until_ready(run().trace["value"])
    start = time.perf_counter()
    result = run()
    jax.block_until_ready(result.trace["value"])
    return result, time.perf_counter() - start


def _quantiles(values: np.ndarray) -> dict[str, list[float]]:
    return {
        f"p{q}": [float(f"{v:.4g}") for v in np.percentile(values, q, axis=0)] for q in (10, 50, 90)
    }


def _row(name: str, run: SolveResult, relative: np.ndarray, keep: np.ndarray, wall: float) -> dict:
    row: dict[str, Any] = {"optimizer": name}
    for step in REPORT_STEPS:
        row[f"median_{step}"] = float(np.median(relative[:, step]))
        row[f"p90_{step}"] = float(np.percentile(relative[:, step], 90))
    row["num_diverged"] = int(np.asarray(diverged_mask(run.trace["value"]))[keep].sum())
    row["wall_time_s"] = wall
    return row


def evaluate(settings: Settings, adam_learning_rate: float, optimizer: Any) -> dict[str, Any]:
    """Every optimiser on the held-out tasks; relative losses, targets, checks, quantiles."""
    _, test_keys = split_task_keys(
        jax.random.key(BENCH_KEY), settings.num_train_tasks, settings.num_test_tasks
    )
    start = time.perf_counter()
    optima = reference_optima(test_keys)
    reference_s = time.perf_counter() - start
    runs = {
        "l2o_mlp": lambda: run_optimizer(optimizer, FAMILY, test_keys, HORIZON),
        "adam": lambda: run_baseline(
            "adam", FAMILY, test_keys, HORIZON, learning_rate=adam_learning_rate
        ),
        "ista": lambda: run_baseline("ista", FAMILY, test_keys, HORIZON),
        "fista": lambda: run_baseline("fista", FAMILY, test_keys, HORIZON),
    }
    rows, quantiles, final = [], {}, {}
    keep = None
    for name, call in runs.items():
        run, wall = _timed(call)
        losses = np.asarray(run.trace["value"], dtype=np.float64)
        gap0 = losses[:, 0] - optima
        keep = gap0 > 0 if keep is None else keep
        relative = ((losses - optima[:, None]) / np.where(keep, gap0, 1.0)[:, None])[keep]
        rows.append(_row(name, run, relative, keep, wall))
        quantiles[name] = _quantiles(relative)
        final[name] = relative[:, HORIZON]
    learned, adam = rows[0], rows[1]
    target = {
        "median_learned": learned[f"median_{HORIZON}"],
        "median_adam": adam[f"median_{HORIZON}"],
        "p90_learned": learned[f"p90_{HORIZON}"],
        "p90_adam": adam[f"p90_{HORIZON}"],
        "fraction_learned_below_adam": float(np.mean(final["l2o_mlp"] < final["adam"])),
    }
    target["met"] = bool(
        target["median_learned"] < target["median_adam"]
        and target["p90_learned"] < target["p90_adam"]
    )
    long_run = run_optimizer(optimizer, FAMILY, test_keys, 2 * HORIZON)
    long_losses = np.asarray(long_run.trace["value"], dtype=np.float64)[keep]
    long_relative = (long_losses[:, -1] - optima[keep]) / (long_losses[:, 0] - optima[keep])
    checks = {
        "num_steps": 2 * HORIZON,
        "num_tasks": int(keep.sum()),
        "num_diverged": int(np.asarray(diverged_mask(long_run.trace["value"]))[keep].sum()),
        "median_relative_loss": float(np.median(long_relative)),
    }
    tasks = {
        "num_test_tasks": settings.num_test_tasks,
        "num_kept": int(keep.sum()),
        "num_degenerate": int((~keep).sum()),
        "reference_iterations": REFERENCE_ITERATIONS,
        "reference_wall_time_s": reference_s,
    }
    return {
        "tasks": tasks,
        "rows": rows,
        "target": target,
        "checks": checks,
        "quantiles": quantiles,
    }


def plot(quantiles: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Median relative loss per step, log-y, with the 10-90 % band of every optimiser."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    floor = 1e-12
    for name, q in quantiles.items():
        steps = np.arange(len(q["p50"]))
        (line,) = ax.plot(steps, np.maximum(q["p50"], floor), label=name)
        low, high = np.maximum(q["p10"], floor), np.maximum(q["p90"], floor)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("(f(x_k) - f*) / (f(x_0) - f*)")
    ax.set_title("LASSO 25 x 50, lambda = 0.005: median and 10-90 % band over tasks")
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
    tuning = tune_learning_rate("adam", FAMILY, train_keys, HORIZON, grid=ADAM_GRID)
    tuning_s = time.perf_counter() - start
    done += 1
    tick(done, total, "tuned Adam")
    training = None
    if train_first:
        training = train(tuning.learning_rate, progress=progress is None)
        done += 1
        tick(done, total, "meta-trained")
    pretrained = load_pretrained(NAME)
    result = evaluate(settings, tuning.learning_rate, pretrained.optimizer)
    done += 1
    tick(done, total, "evaluated")
    if plot_path is not None:
        plot(result["quantiles"], plot_path)
    return {
        "benchmark": "l2o_lasso",
        "meta": {**environment(), "settings": dataclasses.asdict(settings)},
        "family": FAMILY_TEXT,
        "horizon": HORIZON,
        "pretrained": pretrained.metadata,
        "training": training,
        "tuning": {
            **tuning._asdict(),
            "scores": [s if np.isfinite(s) else None for s in tuning.scores],  # inf: diverged
            "wall_time_s": tuning_s,
        },
        "tasks": result["tasks"],
        "summary": result["rows"],
        "checks": {"2000_steps": result["checks"]},
        "targets": {"lasso_below_tuned_adam": result["target"]},
        "relative_loss_quantiles": result["quantiles"],
    }


def _print(report: dict[str, Any]) -> None:
    print(f"\n{report['family']}, {json.dumps(report['tasks'])}")
    print(f"Adam learning rate (tuned at {HORIZON} steps): {report['tuning']['learning_rate']:.4g}")
    for row in report["summary"]:
        print(
            "  "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
        )
    print("checks:", json.dumps(report["checks"]))
    print("target 3:", json.dumps(report["targets"]["lasso_below_tuned_adam"]))
    print_training(report["training"])


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    return script_main(
        argv,
        progress,
        description=__doc__.splitlines()[0],
        quick_help="64 held-out tasks, 16 for tuning",
        name="l2o_lasso",
        run=lambda quick, train, tick, plot: run(QUICK if quick else Settings(), train, tick, plot),
        printout=_print,
    )


if __name__ == "__main__":
    sys.exit(main())
