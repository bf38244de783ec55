"""Physics-informed Burgers: meta-learned starts (MAML, Reptile) against random starts and Adam.

Tasks: the viscous Burgers equation ``u_t + u u_x = nu u_xx`` on ``[-1, 1] x [0, 1]`` with
``u(x, 0) = -sin(pi x)`` and zero boundary values, ``nu`` log-uniform in ``[0.005, 0.05]``
(``opifex.core.families.BurgersFamily``); the network is 2-32-32-1 tanh and the loss the PINN
loss (mean squared residual on 256 collocation points plus the initial and boundary
penalties on 64 points each; a new draw of points per key).

Starts, each trained with ``--seeds`` seeds (default 3) for ``--iterations`` meta-iterations
(default 5000) on meta-batches of 8 tasks at the defaults of the ``opifex.meta`` configs, with
the inner loop of the problem (SGD 1e-3, one step for MAML, 10 for Reptile):

* **random**: the family's initialisation (LeCun normal), one per seed;
* **MAML** (``MAMLOptimizer``, exact second-order meta-gradient);
* **Reptile** (``ReptileOptimizer``, outer step 0.1).

Evaluation on 64 held-out viscosities (a key never used in training): from each start, Adam
on the task's PINN loss at one fixed draw of points (full-batch), its learning rate tuned per
start on 16 training tasks (the grid ``ADAM_GRID``, the lowest mean loss after 100 steps); the
loss after 0 (zero-shot), 10, 100 and 500 steps, measured on 2048 / 512 / 512 fresh points
(a separate draw: the PINN's error off its training points). Mean with a 95 % interval over
the tasks; the tables give the median over seeds and the range.

The issue's reference figures (its "best published" zero-shot losses, 0.156 for MAML and
0.168 for Reptile against 0.485 for a random start) are quoted beside ours: their exact loss
definition (weights, numbers of points) is not known here, so the comparison is indicative.

Run ``python benchmarks/meta/bench_burgers.py [--quick]``; ``opifex bench meta-burgers``
calls ``main(argv, progress)``. Output: ``benchmarks/results/meta_burgers.json`` and ``.png``.
"""

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
from bench_common import print_progress, print_tables, run_metadata, write_outputs

from opifex.core.families import BurgersFamily
from opifex.core.metatrain import LearnedInit
from opifex.meta import (
    MAMLConfig,
    MAMLOptimizer,
    ReptileConfig,
    ReptileOptimizer,
    evaluate_adaptation,
)

LOG = logging.getLogger("opifex.benchmarks.meta")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "meta_burgers"
DISTRIBUTIONS = ("jax", "jaxlib", "optax", "opifex-core", "opifex-meta")

FAMILY = BurgersFamily(hidden_sizes=(32, 32))
SCORING = BurgersFamily(
    hidden_sizes=(32, 32), num_collocation=2048, num_initial=512, num_boundary=512
)
INNER_LR, BATCH = 1e-3, 8
STEPS = (0, 10, 100, 500)
ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
TUNING_TASKS, TUNING_STEPS = 16, 100
TEST_KEY, TUNING_KEY = 20_001, 20_002  # never used in training
REFERENCE = {"MAML": 0.156, "Reptile": 0.168, "random": 0.485}  # zero-shot, from the issue

Progress = Callable[[int, int, str], None]


@dataclasses.dataclass(frozen=True)
class ScoredBurgers:
    """Burgers tasks whose inner steps fit one draw of points and whose query is scored on
    ``SCORING``'s larger, separate draw."""

    def sample(self, key: jax.Array) -> Any:
        return FAMILY.sample(key)

    def init(self, key: jax.Array, task: Any) -> Any:
        return FAMILY.init(key, task)

    def loss(self, params: Any, task: Any, key: jax.Array) -> jax.Array:
        return FAMILY.loss(params, task, key)

    def query_loss(self, params: Any, task: Any, key: jax.Array) -> jax.Array:
        return SCORING.loss(params, task, key)


TASKS = ScoredBurgers()


def learners() -> dict[str, Any]:
    """MAML and Reptile at their configs' defaults, with the problem's inner loop."""
    return {
        "MAML": MAMLOptimizer(MAMLConfig(inner_learning_rate=INNER_LR, meta_batch_size=BATCH)),
        "Reptile": ReptileOptimizer(
            ReptileConfig(inner_learning_rate=INNER_LR, meta_batch_size=BATCH)
        ),
    }


def _adam_curve(start: Any, learning_rate: float, key: int, num_tasks: int, steps: Sequence[int]):
    inner = LearnedInit(TASKS, optax.adam(learning_rate))
    return evaluate_adaptation(jax.random.key(key), start, inner, num_tasks=num_tasks, steps=steps)


def _tuned_adam(start: Any) -> tuple[float, dict[str, float]]:
    """The grid's learning rate with the lowest mean loss after ``TUNING_STEPS`` steps.

    Measured on training tasks (``TUNING_KEY``), not on the held-out ones.
    """
    scores = {
        lr: float(_adam_curve(start, lr, TUNING_KEY, TUNING_TASKS, (TUNING_STEPS,)).mean[0])
        for lr in ADAM_GRID
    }
    finite = {lr: s for lr, s in scores.items() if np.isfinite(s)}
    return min(finite, key=finite.get), {str(k): v for k, v in scores.items()}


def _evaluate(start: Any, num_tasks: int) -> dict[str, Any]:
    learning_rate, grid = _tuned_adam(start)
    curve = _adam_curve(start, learning_rate, TEST_KEY, num_tasks, STEPS)
    return {
        "adam_learning_rate": learning_rate,
        "tuning_losses": grid,
        "loss": {str(s): float(m) for s, m in zip(STEPS, curve.mean, strict=True)},
        "ci95": {str(s): float(c) for s, c in zip(STEPS, curve.ci95, strict=True)},
    }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for s in STEPS:
        values = [r["loss"][str(s)] if np.isfinite(r["loss"][str(s)]) else np.inf for r in rows]
        out[f"loss_{s}"] = {
            "median": float(np.median(values)),
            "min": min(values),
            "max": max(values),
        }
    return out


def _render(results: dict[str, Any]) -> None:
    def cell(stats: dict[str, Any]) -> str:
        if stats["median"] is None:
            return "diverged"
        if stats["min"] == stats["max"]:
            return f"{stats['median']:.4f}"
        top = "diverged" if stats["max"] is None else f"{stats['max']:.4f}"
        return f"{stats['median']:.4f} [{stats['min']:.4f}, {top}]"

    rows = []
    for start, stats in results["summary"].items():
        reference = REFERENCE.get(start)
        rows.append(
            [
                start,
                *(cell(stats[f"loss_{s}"]) for s in STEPS),
                "" if reference is None else f"{reference:.3f}",
            ]
        )
    columns = [
        "start",
        *(f"Adam {s} steps" if s else "zero-shot" for s in STEPS),
        "issue's zero-shot",
    ]
    seeds = len(results["config"]["seeds"])
    title = f"Burgers PINN loss, 64 held-out viscosities: median over {seeds} seed(s) [min, max]"
    lines = [
        f"meta-training: {k} {v:.1f} s per run (median)"
        for k, v in results["train_seconds"].items()
    ]
    print_tables([(title, columns, rows)], lines, sys.stdout)


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    for start, rows in results["runs"].items():
        curves = np.array(
            [
                [np.nan if r["loss"][str(s)] is None else r["loss"][str(s)] for s in STEPS]
                for r in rows
            ]
        )
        axes.plot(np.maximum(STEPS, 1), np.nanmedian(curves, axis=0), marker="o", label=start)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("Adam steps (0 drawn at 1)")
    axes.set_ylabel("held-out PINN loss")
    axes.set_title("Burgers, 2-32-32-1: median over seeds")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark (see the module docstring); 0 when it ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke-sized run")
    parser.add_argument("--iterations", type=int, default=5000, help="meta-iterations")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per method")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("opifex.core.metatrain").setLevel(logging.WARNING)  # its validations
    if args.quick:
        args.iterations, args.seeds = 50, 1
    num_tasks = 16 if args.quick else 64
    progress = progress or print_progress
    seeds = list(range(args.seeds))
    methods = learners()
    total, done = (len(methods) + 1) * len(seeds), 0
    runs: dict[str, list[dict[str, Any]]] = {"random": []}
    seconds: dict[str, list[float]] = {}
    for seed in seeds:
        start = FAMILY.init(jax.random.key(seed), None)
        runs["random"].append({"seed": seed, **_evaluate(start, num_tasks)})
        done += 1
        progress(done, total, f"random start, seed {seed}")
        for name, learner in methods.items():
            began = time.perf_counter()
            result = learner.meta_train_family(
                FAMILY,
                start,
                args.iterations,
                key=jax.random.key(seed),
                progress=False,
                validation_every=max(1, args.iterations // 10),
                num_validation_tasks=16,
            )
            jax.block_until_ready(result.phi)
            seconds.setdefault(name, []).append(time.perf_counter() - began)
            runs.setdefault(name, []).append({"seed": seed, **_evaluate(result.phi, num_tasks)})
            done += 1
            progress(done, total, f"{name}, seed {seed}")
    results = {
        "benchmark": NAME,
        "meta": run_metadata(DISTRIBUTIONS),
        "config": {
            "iterations": args.iterations,
            "seeds": seeds,
            "held_out_tasks": num_tasks,
            "steps": list(STEPS),
            "adam_grid": list(ADAM_GRID),
            "inner_learning_rate": INNER_LR,
            "meta_batch_size": BATCH,
            "network": [2, 32, 32, 1],
            "viscosity_range": list(FAMILY.viscosity_range),
            "quick": args.quick,
        },
        "reference_zero_shot": REFERENCE,
        "runs": runs,
        "summary": {name: _summary(rows) for name, rows in runs.items()},
        "train_seconds": {name: float(np.median(v)) for name, v in seconds.items()},
    }
    write_outputs(
        results, args.output_dir, NAME, render=_render, plot=None if args.no_plot else _plot
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
