"""Few-shot sinusoid regression: MAML, FOMAML, Reptile and Meta-SGD, side by side in one process.

The setup of Finn et al. (2017), section 5.1: tasks ``y = A sin(x - phase)`` with
``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]``, ``x ~ U[-5, 5]``; a 1-40-40-1 ReLU network; K = 10
support and 10 query points per training task; meta-batches of 25 tasks; inner SGD steps of
0.01; Adam 1e-3 on the meta-parameters; 70 000 meta-iterations. Every method runs at the
defaults of its ``opifex.meta`` config, with the problem's settings (inner learning rate,
meta-batch, inner steps) given as above:

* **MAML** (``MAMLOptimizer``, one inner step, exact meta-gradient) and **FOMAML** (the same,
  ``second_order=False``);
* **Reptile** (``ReptileOptimizer`` at its defaults: 10 inner SGD steps of 0.01 on the support
  set, outer SGD step 0.1 towards the adapted parameters, the direction clipped to norm 1);
* **Meta-SGD** (``GradientBasedMetaLearner``: one step with learned per-parameter rates,
  starting at 0.01);
* **joint training**: one network fitted to all tasks at once (Adam 1e-3 on the mean support
  loss of 25 tasks per step), then adapted like MAML's start (the baseline of Finn et al.);
* **hand-written MAML**: a minimal ``jax.jit`` + ``jax.vmap`` MAML loop (about 20 lines, below),
  run on the same tasks: the reference for throughput and for accuracy.

Evaluation: 600 held-out tasks (a key never used in training), each adapted by SGD 0.01 on its
10 support points (Meta-SGD: its learned rates), scored by the MSE on 100 query points after 0,
1 and 10 steps: mean with a 95 % interval (1.96 standard errors over the tasks). Also after 10
steps on shifted tasks, outside training: amplitudes ``U[5, 10]``, and phases
``U[pi, 2 pi]`` (waves of the opposite sign). Each method is trained
with ``--seeds`` seeds (default 3): the tables give the median over seeds with the range.

Throughput: meta-iterations per second of ``MAMLOptimizer.meta_train_family`` (everything a
user calls: validations, history, progress bookkeeping) and of the hand-written loop,
measured in alternating segments of ``--segment`` iterations after compilation, in this
process; the library's overhead is ``1 - library / hand-written`` of the medians. Compile time
(the first call: a 1-iteration run) is reported separately.

Targets (issue 12): MAML <= 0.40 after 1 step and <= 0.20 after 10; no lower throughput than
770 it/s nor than the hand-written loop beyond 10 % overhead; Meta-SGD below MAML after 1 step.

Run ``python benchmarks/meta/bench_sinusoid.py [--quick]``; ``opifex bench meta`` calls
``main(argv, progress)``. Output: tables on stdout, ``benchmarks/results/meta_sinusoid.json``
and ``benchmarks/results/meta_sinusoid.png``.
"""

import argparse
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
from bench_common import print_progress, print_tables, run_metadata, write_outputs

from opifex.core.families import SinusoidFamily
from opifex.core.metatrain import LearnedInit
from opifex.meta import (
    FewShotFamily,
    GradientBasedMetaLearner,
    MAMLConfig,
    MAMLOptimizer,
    MetaSGDConfig,
    ReptileConfig,
    ReptileOptimizer,
    evaluate_adaptation,
)

LOG = logging.getLogger("opifex.benchmarks.meta")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "meta_sinusoid"
DISTRIBUTIONS = ("jax", "jaxlib", "optax", "opifex-core", "opifex-meta")

INNER_LR, OUTER_LR, BATCH, SHOTS = 0.01, 1e-3, 25, 10
NETWORK = SinusoidFamily(num_points=SHOTS, hidden_sizes=(40, 40))
TRAIN_FAMILY = FewShotFamily(NETWORK, num_support=SHOTS, num_query=SHOTS)
TEST_FAMILY = FewShotFamily(NETWORK, num_support=SHOTS, num_query=100)
SHIFTED = {  # outside training: larger amplitudes; phases that flip the sign of the wave
    "amplitude": SinusoidFamily(
        num_points=SHOTS, hidden_sizes=(40, 40), amplitude_range=(5.0, 10.0)
    ),
    "phase": SinusoidFamily(
        num_points=SHOTS, hidden_sizes=(40, 40), phase_range=(math.pi, 2 * math.pi)
    ),
}
STEPS = (0, 1, 10)
TEST_KEY, SHIFTED_KEY = 10_001, 10_002  # never used in training

Progress = Callable[[int, int, str], None]


def learners() -> dict[str, Any]:
    """The ``opifex.meta`` methods, at their defaults but for the problem's settings."""
    return {
        "MAML": MAMLOptimizer(MAMLConfig(INNER_LR, OUTER_LR, inner_steps=1, meta_batch_size=BATCH)),
        "FOMAML": MAMLOptimizer(
            MAMLConfig(INNER_LR, OUTER_LR, inner_steps=1, meta_batch_size=BATCH, second_order=False)
        ),
        "Reptile": ReptileOptimizer(
            ReptileConfig(inner_learning_rate=INNER_LR, meta_batch_size=BATCH)
        ),
        "Meta-SGD": GradientBasedMetaLearner(
            MetaSGDConfig(INNER_LR, OUTER_LR, trajectory_length=1, meta_batch_size=BATCH)
        ),
    }


# -- the hand-written references ------------------------------------------------------------


def _task_batch(key: jax.Array) -> tuple[jax.Array, ...]:
    """``(x_s, y_s, x_q, y_q)`` of ``BATCH`` training tasks, each ``(BATCH, SHOTS, 1)``."""
    tasks = jax.vmap(TRAIN_FAMILY.sample)(jax.random.split(key, BATCH))
    return (*tasks.support, *tasks.query)


def _hand_written_maml_step() -> Callable[..., tuple]:
    """A minimal MAML step: one SGD step per task, ``vmap`` over the batch, Adam outside."""
    adam = optax.adam(OUTER_LR)

    def query_loss(phi, x_s, y_s, x_q, y_q):
        grads = jax.grad(NETWORK.mse)(phi, x_s, y_s)
        adapted = jax.tree.map(lambda p, g: p - INNER_LR * g, phi, grads)
        return NETWORK.mse(adapted, x_q, y_q)

    def meta_loss(phi, batch):
        return jnp.mean(jax.vmap(query_loss, (None, 0, 0, 0, 0))(phi, *batch))

    @jax.jit
    def step(phi, state, key):
        loss, grad = jax.value_and_grad(meta_loss)(phi, _task_batch(key))
        updates, state = adam.update(grad, state, phi)
        return optax.apply_updates(phi, updates), state, loss

    return step, adam


def _joint_training_step() -> Callable[..., tuple]:
    """Joint training: Adam on the mean support loss of a batch of tasks, no adaptation."""
    adam = optax.adam(OUTER_LR)

    def loss(phi, batch):
        x_s, y_s, _, _ = batch
        return jnp.mean(jax.vmap(NETWORK.mse, (None, 0, 0))(phi, x_s, y_s))

    @jax.jit
    def step(phi, state, key):
        value, grad = jax.value_and_grad(loss)(phi, _task_batch(key))
        updates, state = adam.update(grad, state, phi)
        return optax.apply_updates(phi, updates), state, value

    return step, adam


def _run_loop(step: Callable, adam: Any, phi: Any, seed: int, iterations: int) -> tuple:
    """``iterations`` calls of a jitted ``step`` in a Python loop; ``(phi, seconds)``."""
    state, key = adam.init(phi), jax.random.key(seed)
    start = time.perf_counter()
    for i in range(iterations):
        phi, state, _ = step(phi, state, jax.random.fold_in(key, i))
    jax.block_until_ready(phi)
    return phi, time.perf_counter() - start


# -- the runs -----------------------------------------------------------------------------


def _initial(seed: int) -> Any:
    return NETWORK.init(jax.random.key(seed), None)


def _evaluate(phi: Any, inner_of: Callable[[Any], Any], num_tasks: int) -> dict[str, Any]:
    curve = evaluate_adaptation(
        jax.random.key(TEST_KEY), phi, inner_of(TEST_FAMILY), num_tasks=num_tasks, steps=STEPS
    )
    out = {
        "mse": {str(s): float(m) for s, m in zip(STEPS, curve.mean, strict=True)},
        "ci95": {str(s): float(c) for s, c in zip(STEPS, curve.ci95, strict=True)},
    }
    for name, network in SHIFTED.items():
        family = FewShotFamily(network, num_support=SHOTS, num_query=100)
        shifted = evaluate_adaptation(
            jax.random.key(SHIFTED_KEY), phi, inner_of(family), num_tasks=num_tasks, steps=(10,)
        )
        out[f"{name}_shifted_mse_10"] = float(shifted.mean[0])
        out[f"{name}_shifted_ci95_10"] = float(shifted.ci95[0])
    return out


def _run_learner(learner: Any, seed: int, iterations: int, num_tasks: int) -> dict[str, Any]:
    options = {"key": jax.random.key(seed), "progress": False}
    start = time.perf_counter()
    learner.meta_train_family(TRAIN_FAMILY, _initial(seed), 1, **options)  # compiles
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    result = learner.meta_train_family(TRAIN_FAMILY, _initial(seed), iterations, **options)
    jax.block_until_ready(result.phi)
    seconds = time.perf_counter() - start
    row = {"seed": seed, "train_seconds": seconds, "first_call_seconds": first_call}
    row["iterations_per_second"] = iterations / seconds
    row["final_meta_loss"] = float(np.mean(result.history.meta_loss[-100:]))
    return {**row, **_evaluate(result.phi, learner.inner_loop, num_tasks)}


def _sgd_inner(family: Any) -> LearnedInit:
    return LearnedInit(family, optax.sgd(INNER_LR))


def _run_reference(build: Callable, seed: int, iterations: int, num_tasks: int) -> dict:
    step, adam = build()
    start = time.perf_counter()
    jax.block_until_ready(step(_initial(seed), adam.init(_initial(seed)), jax.random.key(0)))
    first_call = time.perf_counter() - start
    phi, seconds = _run_loop(step, adam, _initial(seed), seed, iterations)
    row = {"seed": seed, "train_seconds": seconds, "first_call_seconds": first_call}
    row["iterations_per_second"] = iterations / seconds
    return {**row, **_evaluate(phi, _sgd_inner, num_tasks)}


def _throughput(segment: int, repeats: int) -> dict[str, Any]:
    """Alternating timed segments of the library's MAML and the hand-written loop."""
    maml = learners()["MAML"]
    step, adam = _hand_written_maml_step()
    options = {"key": jax.random.key(0), "progress": False, "validation_every": segment}
    maml.meta_train_family(TRAIN_FAMILY, _initial(0), 1, **options)  # compiled before timing
    _run_loop(step, adam, _initial(0), 0, 10)
    library, hand = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = maml.meta_train_family(TRAIN_FAMILY, _initial(0), segment, **options)
        jax.block_until_ready(result.phi)
        library.append(segment / (time.perf_counter() - start))
        hand.append(segment / _run_loop(step, adam, _initial(0), 0, segment)[1])
    overhead = 1 - statistics.median(library) / statistics.median(hand)
    return {
        "segment_iterations": segment,
        "library_iterations_per_second": library,
        "hand_written_iterations_per_second": hand,
        "library_overhead": overhead,
    }


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over seeds of each number."""

    def stats(values: list[float]) -> dict[str, float]:
        # a diverged run (NaN) counts as the worst: +inf, written as null in the JSON
        values = [v if np.isfinite(v) else np.inf for v in values]
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    out = {f"mse_{s}": stats([r["mse"][str(s)] for r in rows]) for s in STEPS}
    shifted = [f"{name}_shifted_mse_10" for name in SHIFTED]
    for name in (*shifted, "iterations_per_second", "train_seconds"):
        out[name] = stats([r[name] for r in rows])
    # the first seed's first call compiles; later seeds reuse the compiled programs
    out["compile_seconds"] = rows[0]["first_call_seconds"]
    return out


def _targets(summary: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    maml, meta_sgd = summary["MAML"], summary["Meta-SGD"]
    library = statistics.median(throughput["library_iterations_per_second"])
    return {
        "maml_1_step_at_most_0.40": maml["mse_1"]["median"] <= 0.40,
        "maml_10_steps_at_most_0.20": maml["mse_10"]["median"] <= 0.20,
        "maml_at_least_770_iterations_per_second": library >= 770,
        "library_overhead_under_10_percent": throughput["library_overhead"] < 0.10,
        "meta_sgd_beats_maml_after_1_step": meta_sgd["mse_1"]["median"] < maml["mse_1"]["median"],
    }


def _render(results: dict[str, Any]) -> None:
    def cell(stats: dict[str, float], digits: int = 3) -> str:
        if stats["median"] is None:  # inf: diverged (JSON has no inf)
            return "diverged"
        if stats["max"] is None:
            return f"{stats['median']:.{digits}f} [{stats['min']:.{digits}f}, diverged]"
        if stats["min"] == stats["max"]:
            return f"{stats['median']:.{digits}f}"
        return (
            f"{stats['median']:.{digits}f} [{stats['min']:.{digits}f}, {stats['max']:.{digits}f}]"
        )

    rows = []
    for method, stats in results["summary"].items():
        rows.append(
            [
                method,
                *(cell(stats[f"mse_{s}"]) for s in STEPS),
                *(cell(stats[f"{name}_shifted_mse_10"]) for name in SHIFTED),
                cell(stats["iterations_per_second"], 0),
                f"{stats['compile_seconds']:.1f}",
            ]
        )
    columns = [
        "method",
        "MSE 0 steps",
        "MSE 1 step",
        "MSE 10 steps",
        "amplitude-shifted, 10",
        "phase-shifted, 10",
        "it/s",
        "compile s",
    ]
    seeds = len(results["config"]["seeds"])
    title = f"sinusoid, 600 held-out tasks: median over {seeds} seed(s) [min, max]"
    t = results["throughput"]
    lines = [
        f"throughput ({t['segment_iterations']}-iteration segments): library "
        f"{statistics.median(t['library_iterations_per_second']):.0f} it/s, hand-written "
        f"{statistics.median(t['hand_written_iterations_per_second']):.0f} it/s, overhead "
        f"{100 * t['library_overhead']:.1f} %",
        *(f"target {k}: {'met' if v else 'NOT met'}" for k, v in results["targets"].items()),
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
    figure, axes = plt.subplots(figsize=(7, 4))
    methods = list(results["summary"])
    width = 0.8 / len(STEPS)
    for i, s in enumerate(STEPS):
        stats = [results["summary"][m][f"mse_{s}"] for m in methods]
        # null (diverged) drawn at the top of the axis
        value = [
            [np.inf if x[k] is None else x[k] for x in stats] for k in ("median", "min", "max")
        ]
        median, low, high = (np.minimum(np.array(v), 1e3) for v in value)
        x = np.arange(len(methods)) + (i - 1) * width
        axes.bar(
            x, median, width, yerr=[median - low, high - median], capsize=2, label=f"{s} step(s)"
        )
    axes.set_xticks(np.arange(len(methods)), methods, rotation=15)
    axes.set_yscale("log")
    axes.set_ylabel("held-out query MSE")
    axes.set_title(
        "few-shot sinusoid (K = 10): median over seeds, range as bars; diverged at 1e3", fontsize=9
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark (see the module docstring); 0 when it ran (targets met or not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke-sized run (~1 min)")
    parser.add_argument("--iterations", type=int, default=70_000, help="meta-iterations")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per method")
    parser.add_argument("--segment", type=int, default=5000, help="iterations per timed segment")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("opifex.core.metatrain").setLevel(logging.WARNING)  # its validations
    if args.quick:
        args.iterations, args.seeds, args.segment = 300, 1, 300
    num_tasks = 100 if args.quick else 600
    progress = progress or print_progress
    seeds = list(range(args.seeds))
    methods = learners()
    references = {
        "joint training": _joint_training_step,
        "hand-written MAML": _hand_written_maml_step,
    }
    total, done = (len(methods) + len(references)) * len(seeds) + 1, 0
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        for name, learner in methods.items():
            runs.setdefault(name, []).append(
                _run_learner(learner, seed, args.iterations, num_tasks)
            )
            done += 1
            progress(done, total, f"{name}, seed {seed}")
        for name, build in references.items():
            runs.setdefault(name, []).append(
                _run_reference(build, seed, args.iterations, num_tasks)
            )
            done += 1
            progress(done, total, f"{name}, seed {seed}")
    throughput = _throughput(args.segment, repeats=5)
    progress(total, total, "throughput")
    summary = {name: _summary(rows) for name, rows in runs.items()}
    results = {
        "benchmark": NAME,
        "meta": run_metadata(DISTRIBUTIONS),
        "config": {
            "iterations": args.iterations,
            "seeds": seeds,
            "held_out_tasks": num_tasks,
            "steps": list(STEPS),
            "inner_learning_rate": INNER_LR,
            "outer_learning_rate": OUTER_LR,
            "meta_batch_size": BATCH,
            "shots": SHOTS,
            "query_points_in_evaluation": 100,
            "shifted": {"amplitude_range": [5.0, 10.0], "phase_range": [math.pi, 2 * math.pi]},
            "quick": args.quick,
        },
        "runs": runs,
        "summary": summary,
        "throughput": throughput,
        "targets": _targets(summary, throughput),
    }
    write_outputs(
        results, args.output_dir, NAME, render=_render, plot=None if args.no_plot else _plot
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
