"""Differentiable MPC: iLQR (box-DDP) swing-ups beside CasADi + IPOPT and trajax, closed loop.

Problems (``problems.py``): the cart-pole swing-up (``|u| <= 10`` N, ``dt = 0.05``, ``T = 50``)
and the torque-limited pendulum swing-up (``|u| <= 5`` N m, ``dt = 0.08``, ``T = 50``), both
from hanging at rest, one RK4 step per period. Sections:

* **Cold solves** from ``U = 0``: opifex ``ILQR`` (float64 and float32; compile time and the
  median of ``--repeats`` compiled calls, iterations to ``SUCCESS`` and to a relative gap of
  1e-4 / 1e-6 / 1e-8 to the best cost any solver found) beside CasADi + IPOPT (exact-Hessian
  multiple and single shooting) and trajax's iLQR (unbounded; bounds by ``tanh`` squashing)
  when they import (``baselines.py``). Every cost is opifex's ``total_cost`` of the returned
  controls.
* **Closed loop** (target 1): MPC against a finer plant (RK4 with 8 substeps per period) for
  12 s from hanging, budgets of 1, 3 and 10 iterations per period from the cold plan, and 10
  from a zero plan; "held" means ``|angle| < 0.05`` from some time to the end of the episode.
* **Model mismatch**: the same closed loop (zero plan, budget 10) with the planner's mass (the
  pendulum's, the cart-pole's pole) scaled by 0.8 to 1.2 against the true plant, for the
  feedback warm start (the shifted plan rolled out through the solution's gains) and the
  open-loop shift.
* **Warm-started step**: ``MPCController.step`` called from Python per period along the swing-up
  (dispatch included), median / p90 / max wall time, beside the baselines' warm re-solves.
* **Control rate per built-in system**: the steady ``MPCController.step`` time at budgets 1 and
  10 (horizon 50) on pendulum, cart-pole, double integrator (2-D), planar quadrotor and adaptive
  cruise control; the reachable rate is its inverse.
* **Integrator**: time per iLQR iteration with the hand-written RK4 step vs diffrax's Tsit5
  (one step per period, ``DirectAdjoint``, whose forward mode gives the Jacobians iLQR needs).
* **Gradients**: d(w . U*) / d(x0, dynamics parameters, cost weights) by implicit
  differentiation vs unrolled differentiation vs central finite differences of re-solves; and
  trajax's gradients (``trajax_gradient_check``) where it imports.

Run ``python benchmarks/control/bench_mpc.py [--quick]``; output: tables on stdout,
``benchmarks/results/control_mpc.json`` and ``control_mpc.png``. CasADi is optional
(``uv pip install casadi``); trajax is read from the source tree in ``TRAJAX_PATH``.
"""

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import baselines
import mpc_sections
from bench_common import print_progress, print_tables, run_metadata, write_outputs
from problems import PROBLEMS

NAME = "control_mpc"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
DISTRIBUTIONS = ("jax", "jaxlib", "diffrax", "opifex-core", "opifex-control", "casadi")


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def _render(results: dict[str, Any]) -> None:
    cold_rows = []
    for name, entry in results["cold"].items():
        for row in entry["rows"]:
            gaps = row.get("iterations_to_gap", {})
            cold_rows.append(
                [
                    name,
                    row["solver"],
                    row["status"],
                    str(row["iterations"]),
                    _fmt(gaps.get("1e-08")),
                    _fmt(row.get("iterations_to_rtol_1e-8")),
                    _fmt(row.get("compile_seconds"), ".2f"),
                    _fmt(row["cold_seconds"] * 1e3, ".1f"),
                    _fmt(row["cost"], ".4f"),
                    _fmt(row["theta_T"], ".3f"),
                ]
            )
    loop_rows = [
        [
            name,
            run["label"],
            "yes" if run["held"] else "NO",
            _fmt(run["held_from_seconds"], ".2f"),
            _fmt(run["final_abs_angle"], ".1e"),
            str(run["fallbacks"]),
            str(run["max_iterations"]),
        ]
        for name, runs in results["closed_loop"].items()
        for run in runs
    ]
    mismatch_rows = []
    for name, entry in results["mismatch"].items():
        for warm_start in ("feedback", "shift"):
            cells = [
                _fmt(row["held_from_seconds"], ".2f") if row["held"] else "NO"
                for row in entry["rows"]
                if row["warm_start"] == warm_start
            ]
            mismatch_rows.append([f"{name} ({entry['parameter']})", warm_start, *cells])
    factors = [f"x{f:g}" for f in results["config"]["mismatch_factors"]]
    step_rows = [
        [
            name,
            row["solver"],
            _fmt(row["median_ms"], ".2f"),
            _fmt(row.get("p90_ms"), ".2f"),
            _fmt(row.get("median_iterations"), ".1f"),
        ]
        for name, rows in results["warm_steps"].items()
        for row in rows
    ]
    rate_rows = [
        [
            row["system"],
            str(row["budget"]),
            _fmt(row["median_ms"], ".2f"),
            _fmt(row["rate_hz"], ".0f"),
            _fmt(row["period_ms"], ".0f"),
        ]
        for row in results["control_rate"]
    ]
    integ = results["integrator"]
    integ_rows = [
        [
            row["method"],
            _fmt(row["compile_seconds"], ".2f"),
            str(row["iterations"]),
            _fmt(row["ms_per_iteration"], ".3f"),
            _fmt(row["cost"], ".6f"),
        ]
        for row in integ["rows"]
    ]
    grad_rows = [
        [
            name,
            row["method"],
            " / ".join(_fmt(v, ".1e") for v in row["rel_error_vs_fd"].values()),
            _fmt(row.get("rel_error_vs_implicit"), ".1e"),
            _fmt(row["seconds"] * 1e3, ".1f"),
        ]
        for name, entry in results["gradients"].items()
        for row in entry["rows"]
    ]
    print_tables(
        [
            (
                "Cold solves from U = 0",
                [
                    "problem",
                    "solver",
                    "status",
                    "iter",
                    "iter to 1e-8",
                    "iter to rtol 1e-8",
                    "compile s",
                    "solve ms",
                    "cost",
                    "theta_T",
                ],
                cold_rows,
            ),
            (
                "Closed-loop swing-up (12 s, finer plant)",
                ["problem", "run", "held", "held from s", "|angle| end", "fallbacks", "max iter"],
                loop_rows,
            ),
            (
                "Planner's model off the plant's: held from (s), or NO",
                ["problem", "warm start", *factors],
                mismatch_rows,
            ),
            (
                "Warm-started MPC step",
                ["problem", "solver", "median ms", "p90 ms", "iterations"],
                step_rows,
            ),
            (
                "Control rate (horizon 50)",
                ["system", "budget", "median ms", "rate Hz", "period ms"],
                rate_rows,
            ),
            (
                f"Integrator inside iLQR ({integ['problem']})",
                ["step", "compile s", "iter", "ms / iter", "cost"],
                integ_rows,
            ),
            (
                "Gradients of w . U* (float64)",
                ["problem", "method", "vs FD (h 1e-3/1e-4/1e-5)", "vs implicit", "ms"],
                grad_rows,
            ),
        ],
        [f"total {results['total_seconds']:.0f} s"],
        sys.stdout,
        left_columns=2,
    )


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.getLogger(__name__).warning("matplotlib missing: no plot")
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (name, runs) in zip(axes[0], results["closed_loop"].items(), strict=False):
        for run in runs:
            t = np.arange(len(run["angle"])) * run["dt"]
            ax.plot(t, run["angle"], label=run["label"], lw=1.2)
        ax.axhspan(-0.05, 0.05, color="0.85")
        ax.set(title=f"{name}: closed loop", xlabel="time (s)", ylabel="angle from upright (rad)")
        ax.legend(fontsize=7)
    labels, values = [], []
    for name, entry in results["cold"].items():
        for row in entry["rows"]:
            labels.append(f"{name.split('_')[0]}\n{row['solver']}")
            values.append(row["cold_seconds"] * 1e3)
    axes[1, 0].barh(range(len(values)), values)
    axes[1, 0].set_yticks(range(len(values)), labels, fontsize=6)
    axes[1, 0].set(xscale="log", xlabel="cold solve (ms, after compilation)")
    rates = results["control_rate"]
    names = [f"{r['system']} ({r['budget']})" for r in rates]
    axes[1, 1].barh(range(len(rates)), [r["rate_hz"] for r in rates])
    axes[1, 1].set_yticks(range(len(rates)), names, fontsize=7)
    axes[1, 1].set(xscale="log", xlabel="reachable control rate (Hz; budget in brackets)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None, progress: Callable | None = None) -> int:
    """Run the benchmark; write ``control_mpc.json`` / ``.png`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no baselines")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.no_baselines = 3, True
    jax.config.update("jax_enable_x64", True)  # float64 unless a section says float32
    progress = progress or print_progress
    problems = list(PROBLEMS)
    total = 4 * len(problems) + 2
    done = [0]

    def tick(label: str) -> None:
        done[0] += 1
        progress(done[0], total, label)

    start = time.perf_counter()
    cold, closed, mismatch, warm, gradients = {}, {}, {}, {}, {}
    for name in problems:
        cold[name] = mpc_sections.cold_solves(
            name, args.repeats, baselines_on=not args.no_baselines
        )
        tick(f"{name}: cold solves")
        plan = cold[name]["rows"][0]["plan"]  # opifex float64
        closed[name] = mpc_sections.closed_loop_runs(name, plan)
        mismatch[name] = mpc_sections.mismatch_runs(name)
        tick(f"{name}: closed loop")
        warm[name] = mpc_sections.warm_steps(name, cold[name])
        tick(f"{name}: warm steps")
        gradients[name] = mpc_sections.gradient_check(name, trajax=not args.no_baselines)
        tick(f"{name}: gradients")
    rate = mpc_sections.control_rates()
    tick("control rate per system")
    integrator = mpc_sections.integrator_cost("pendulum_swingup", args.repeats)
    tick("RK4 vs diffrax inside iLQR")
    results = {
        "benchmark": NAME,
        "meta": run_metadata(DISTRIBUTIONS),
        "config": {
            "quick": args.quick,
            "repeats": args.repeats,
            "baselines": {
                "casadi": (not args.no_baselines) and baselines.casadi_available(),
                "trajax": (not args.no_baselines) and baselines.trajax_available(),
            },
            "problems": {name: PROBLEMS[name]().data.to_dict() for name in problems},
            **mpc_sections.CONFIG,
        },
        "cold": cold,
        "closed_loop": closed,
        "mismatch": mismatch,
        "warm_steps": warm,
        "control_rate": rate,
        "integrator": integrator,
        "gradients": gradients,
        "total_seconds": time.perf_counter() - start,
    }
    results["targets"] = mpc_sections.targets(results)
    write_outputs(
        results, args.output_dir, NAME, render=_render, plot=None if args.no_plot else _plot
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
