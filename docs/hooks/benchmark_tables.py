"""MkDocs hook: benchmark result tables rendered from ``benchmarks/results/*.json`` at build time.

A page writes a marker such as ``<!-- benchmark-table: second_order -->``; the hook replaces it
with Markdown tables built from ``benchmarks/results/second_order.json``, so every number on
the page comes from the recorded run. It also publishes each ``benchmarks/results/*.png`` as
``assets/benchmarks/<name>.png`` (the plot is never copied into ``docs/`` by hand, so it
cannot drift from the JSON). A missing or malformed results file stops the build with a
``PluginError`` that says how to regenerate it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
from control_tables import RENDERERS as CONTROL_RENDERERS
from control_tables import SCRIPTS as CONTROL_SCRIPTS
from deploy_tables import DEPLOY_RENDERERS, DEPLOY_SCRIPTS
from table_format import cell as _cell
from table_format import met as _met
from table_format import seconds as _seconds
from table_format import table

RESULTS_DIR = Path("benchmarks") / "results"
ASSETS_DIR = "assets/benchmarks"
MARKER = re.compile(r"<!--\s*benchmark-table:\s*([A-Za-z0-9_-]+)\s*-->")

# --------------------------------------------------------------------------------------------
# second_order


def _run_info(meta: dict[str, Any]) -> str:
    config = meta["config"]
    size = "quick (smoke-sized)" if config["quick"] else "full"
    info = (
        f"Recorded {meta['date']} on {meta['device']} ({meta['cpu_count']} CPU cores), "
        f"jax {meta['jax_version']}, x64 {'on' if meta['x64'] else 'off'}; {size} run, "
        f"median of {config['repeats']} timed repeats after a jit warm-up; "
        f"{meta['elapsed_s']:.0f} s in total. Stopping rules: L-BFGS at gradient norm "
        f"{config['gtol']:g} (at most {config['max_iter']} iterations), Levenberg-Marquardt "
        f"at MINPACK's ftol = xtol = gtol = {config['lm_tol']:g} (at most "
        f"{config['lm_max_iter']} iterations)."
    )
    if meta.get("interrupted"):
        info += "\n\n!!! warning\n    This run was interrupted: the tables are incomplete."
    return info


def _targets(targets: dict[str, Any], unconstrained: list[dict[str, Any]]) -> str:
    evals = targets["rosenbrock_fun_evals_le_scipy"]
    mgh = targets["mgh_lm_iterations_le_scipy_same_optimum"]
    nist = targets["nist_defaults_certified_digits"]
    fraction = mgh["fraction"]
    counted = mgh["num_problems"]
    mgh_result = _met(mgh["met"])
    if fraction is not None:
        wins = counted - len(mgh["losses"])
        mgh_result += f" ({wins} / {counted} = {100 * fraction:.1f} %)"
    summary = table(
        ["target", "result"],
        [
            [
                "1. Rosenbrock, every size: opifex L-BFGS needs no more function evaluations "
                "than scipy L-BFGS-B",
                _met(evals["met"]),
            ],
            [
                f"2. MGH: opifex LM needs no more iterations than scipy `lm` and ends at the "
                f"same optimum on at least {100 * mgh['threshold']:.0f} % of the problems",
                mgh_result,
            ],
            [
                f"3. NIST StRD, default settings: opifex LM reports `SUCCESS` with at least "
                f"{nist['digits']:g} correct digits from every start",
                _met(nist["met"])
                + f" ({nist['ours']['reached_and_converged']} / {nist['ours']['runs']} starts)",
            ],
        ],
    )
    order = list(dict.fromkeys(row["problem"] for row in unconstrained))
    sizes = sorted(evals["per_size"], key=lambda p: order.index(p) if p in order else len(order))
    per_size = table(
        ["problem", "opifex f-evals", "scipy f-evals", "opifex ‖∇f‖", "scipy ‖∇f‖", "target"],
        [
            [
                p,
                e["ours_fun_evals"],
                e["scipy_fun_evals"],
                e["ours_grad_norm"],
                e["scipy_grad_norm"],
                _met(e["met"]) + (f" ({e['reason']})" if e.get("reason") else ""),
            ]
            for p, e in ((p, evals["per_size"][p]) for p in sizes)
        ],
    )
    parts = [summary, "**Target 1**, per problem size:", per_size]
    if mgh["losses"]:
        losses = table(
            ["problem", "opifex iterations", "scipy iterations", "opifex f", "scipy f", "same f"],
            [
                [
                    e["problem"],
                    e["ours_iterations"],
                    e["scipy_iterations"],
                    e["ours_f"],
                    e["scipy_f"],
                    e["same_optimum"],
                ]
                for e in mgh["losses"]
            ],
        )
        parts += ["**Target 2**, the problems where opifex LM did not meet it:", losses]
    if mgh["not_compared"]:
        parts.append("Not compared (a solver did not run): " + ", ".join(mgh["not_compared"]))
    return "\n\n".join(parts)


def _unconstrained(rows: list[dict[str, Any]]) -> str:
    def line(r: dict[str, Any]) -> list[Any]:
        if r["status"] != "ok":
            return [r["problem"], r["solver"], f"{r['status']}: {r['error']}", *[None] * 5]
        values = [r["iterations"], r["fun_evals"], r["final_f"], r["grad_norm"]]
        return [r["problem"], r["solver"], "ok", *values, _seconds(r["time_s"])]

    return table(
        ["problem", "solver", "status", "iterations", "f-evals", "final f", "‖∇f‖", "wall time"],
        [line(r) for r in rows],
    )


def _same_f(a: float | None, b: float, rtol: float, atol: float) -> bool:
    """The benchmark's criterion for two final values being the same optimum."""
    if a is None or not math.isfinite(a):
        return False
    return abs(a - b) <= max(atol, rtol * max(abs(a), abs(b)))


def _least_squares(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    by = {(r["problem"], r["solver"]): r for r in rows}
    body = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        runs = [by.get((problem, s)) for s in solvers]
        finals = [
            r["final_f"]
            for r in runs
            if r is not None
            and r["status"] == "ok"
            and r["final_f"] is not None
            and math.isfinite(r["final_f"])
        ]
        best = min(finals) if finals else None
        cells, missed = [], []
        for solver, r in zip(solvers, runs, strict=True):
            if r is None or r["status"] != "ok":
                cells.append("not run" if r is None else r["status"])
                missed.append(solver)
                continue
            counts = f"{r['iterations']} / {r['fun_evals']} / {r['deriv_evals']}"
            cells.append(counts + ("" if r["solver_converged"] else " †"))
            if best is None or not _same_f(
                r["final_f"], best, config["same_rtol"], config["same_atol"]
            ):
                missed.append(solver)
        first = next(r for r in runs if r is not None)
        body.append(
            [problem, first["n"], first["m"], *cells, best, ", ".join(missed) or "all reached it"]
        )
    return table(["problem", "n", "m", *solvers, "best f", "not at the best f"], body)


def _digits(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _certified(rows: list[dict[str, Any]], target: dict[str, Any]) -> str:
    """Ours beside scipy's ``lm`` per NIST problem and start, and who claims missing digits."""
    by = {(r["problem"], r["start"], r["solver"]): r for r in rows}
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    body = []
    for problem, start in dict.fromkeys((r["problem"], r["start"]) for r in rows):
        cells: list[Any] = [problem, start]
        for solver in solvers:
            r = by.get((problem, start, solver))
            if r is None or r["status"] != "ok":
                cells += ["—", "not run" if r is None else r["status"], "—"]
                continue
            counts = [r["fun_evals"], r["deriv_evals"]]
            if solver == solvers[0]:
                counts.insert(0, r["iterations"])
            cells += [_digits(r["digits"]), r["solver_status"], " / ".join(map(str, counts))]
        body.append(cells)
    header = ["problem", "start"]
    for i, solver in enumerate(solvers):
        counts = "iterations / f-evals / J-evals" if i == 0 else "f-evals / J-evals"
        header += [f"{solver} digits", f"{solver} status", f"{solver} {counts}"]
    sentences = []
    for key, name in (("ours", "opifex LM"), ("scipy", "scipy `lm`")):
        s = target[key]
        below = ", ".join(s["converged_below"]) or "none"
        sentences.append(
            f"{name}: {s['reached']} of {s['runs']} starts reach {target['digits']:g} digits; "
            f"reported converged with fewer: {below}."
        )
    return "\n\n".join([table(header, body), " ".join(sentences)])


def render_second_order(data: dict[str, Any]) -> str:
    """Markdown for the second-order benchmark: run info, targets, the result tables."""
    meta, config = data["meta"], data["meta"]["config"]
    return "\n\n".join(
        [
            _run_info(meta),
            "#### Targets",
            _targets(data["targets"], data["unconstrained"]),
            "#### Unconstrained: extended Rosenbrock",
            "Every evaluation returns `f` and its gradient. Wall time: median of the timed "
            "repeats.",
            _unconstrained(data["unconstrained"]),
            "#### Least squares: Moré-Garbow-Hillstrom problems",
            "Each solver cell is *iterations / residual evaluations / Jacobian evaluations* "
            "(MINPACK's `nfev` / `njev` convention); † marks a run whose own convergence flag "
            "is false. The last column names the solvers whose final "
            f"`f = sum r²` differs from the best any solver reached (relative "
            f"{config['same_rtol']:g}, absolute {config['same_atol']:g}).",
            _least_squares(data["least_squares"], config),
            "#### Certified problems: NIST StRD at default settings",
            "Every NIST StRD nonlinear regression problem from both of NIST's starts, each "
            "solver at its default settings (scipy: `ftol = xtol = gtol = 1e-8`, "
            "`max_nfev = 100 n`). *Digits*: the fewest correct significant digits of a "
            "parameter, `min -log10(|b - c| / |c|)` against NIST's certified `c` (at most 11, "
            "the digits NIST prints). Status: opifex's `SolveStatus`, scipy's `status` and its "
            "reason.",
            _certified(data["certified"], data["targets"]["nist_defaults_certified_digits"]),
        ]
    )


# --------------------------------------------------------------------------------------------
# l2o


def _training_sentence(training: dict[str, Any] | None) -> str:
    """How long the shipped weights took to meta-train, and at what throughput ('' if unknown)."""
    if not training:
        return ""
    return (
        f" Meta-training of the shipped weights: {training['wall_time_s']:.0f} s on "
        f"{training['device']}, {training['inner_steps_per_s_task_batch']:.0f} inner steps/s "
        f"across the task batch ({training['inner_steps_per_s_with_particles']:.0f} counting "
        "PES particles)."
    )


def _l2o_target(data: dict[str, Any]) -> str:
    target = data["targets"]["quadratic_2x_vs_tuned_adam"]
    checks = data["checks"]
    return table(
        ["target", "measured", "result"],
        [
            [
                "median speedup over tuned Adam >= 2 (held-out tasks, horizon 100)",
                f"{_cell(target['median_speedup_vs_tuned_adam'])} "
                f"(p10 {_cell(target['p10_speedup'])}, p90 {_cell(target['p90_speedup'])}, "
                f"{100 * target['fraction_at_least_2x']:.1f} % of tasks >= 2)",
                _met(target["median_speedup_vs_tuned_adam"] >= 2.0),
            ],
            [
                "no divergence over 200 steps",
                f"{checks['200_steps']['num_diverged']} of {checks['200_steps']['num_tasks']}",
                _met(checks["200_steps"]["num_diverged"] == 0),
            ],
            [
                "no divergence at dimension 20 (200 steps)",
                f"{checks['dimension_20']['num_diverged']} of "
                f"{checks['dimension_20']['num_tasks']}",
                _met(checks["dimension_20"]["num_diverged"] == 0),
            ],
        ],
    )


def _l2o_optimizers(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "optimiser",
            "kind",
            "learning rate",
            "median final loss",
            "median evaluations",
            "diverged",
            "wall time (all tasks)",
        ],
        [
            [
                r["optimizer"],
                r["kind"],
                "tuned: " + _cell(r["learning_rate"]) if r["learning_rate"] is not None else "—",
                _cell(r["final_loss_median"]),
                _cell(r["num_evaluations_median"]),
                f"{100 * r['fraction_diverged']:.1f} %",
                _seconds(r["wall_time_s"]),
            ]
            for r in rows
        ],
    )


def _l2o_comparisons(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "learned",
            "vs baseline",
            "median speedup (steps)",
            "median speedup (evaluations)",
            "median final-loss ratio",
        ],
        [
            [
                r["optimizer"],
                r["baseline"],
                _cell(r["speedup_median"]),
                _cell(r["evaluation_speedup_median"]),
                _cell(r["final_loss_ratio_median"]),
            ]
            for r in rows
        ],
    )


def _l2o_shifted(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "tasks (not trained on)",
            "Adam's tuned learning rate",
            "median speedup over Adam",
            "p10 / p90",
            "tasks >= 2x",
            "median final-loss ratio",
            "diverged",
        ],
        [
            [
                r["tasks"],
                _cell(r["adam_learning_rate"]),
                _cell(r["median_speedup_vs_tuned_adam"]),
                f"{_cell(r['p10_speedup'])} / {_cell(r['p90_speedup'])}",
                f"{100 * r['fraction_at_least_2x']:.0f} %",
                _cell(r["median_final_loss_ratio"]),
                f"{100 * r['fraction_diverged']:.1f} %",
            ]
            for r in rows
        ],
    )


def render_l2o(data: dict[str, Any]) -> str:
    """Markdown for the learned-optimiser benchmark: target, optimisers, comparisons."""
    meta, training = data["meta"], data["pretrained"].get("training")
    settings = meta["settings"]
    info = (
        f"Run on {meta['date']}, {meta['device']}, jax {meta['jax_version']}: "
        f"{settings['num_test_tasks']} held-out tasks, baselines tuned on "
        f"{settings['num_train_tasks']} training tasks."
    )
    info += _training_sentence(training)
    return "\n\n".join(
        [
            info,
            "#### Target",
            _l2o_target(data),
            "#### Optimisers",
            _l2o_optimizers(data["summary"]["optimizers"]),
            "#### Learned against each baseline",
            _l2o_comparisons(data["summary"]["comparisons"]),
            "#### Tasks it was not trained on (Adam re-tuned on each; speedup 0: "
            "Adam's final loss never reached)",
            _l2o_shifted(data["shifted"]),
        ]
    )


def render_l2o_lasso(data: dict[str, Any]) -> str:
    """Markdown for the LASSO learned-optimiser benchmark: target, relative losses, check."""
    meta, tasks, training = data["meta"], data["tasks"], data["pretrained"].get("training")
    target = data["targets"]["lasso_below_tuned_adam"]
    check = data["checks"]["2000_steps"]
    info = (
        f"Run on {meta['date']}, {meta['device']}, jax {meta['jax_version']}: "
        f"{data['family']}, {tasks['num_kept']} of {tasks['num_test_tasks']} held-out tasks "
        f"({tasks['num_degenerate']} degenerate, `f(x_0) = f*`, excluded); `f*` from "
        f"{tasks['reference_iterations']} FISTA iterations; Adam's learning rate "
        f"{_cell(data['tuning']['learning_rate'])}, tuned on "
        f"{meta['settings']['num_train_tasks']} training tasks at {data['horizon']} steps."
    )
    info += _training_sentence(training)
    horizon = data["horizon"]
    target_table = table(
        ["target", "learned", "tuned Adam", "result"],
        [
            [
                f"median relative loss after {horizon} iterations below tuned Adam's",
                target["median_learned"],
                target["median_adam"],
                _met(target["median_learned"] < target["median_adam"]),
            ],
            [
                f"90th percentile relative loss after {horizon} iterations below tuned Adam's",
                target["p90_learned"],
                target["p90_adam"],
                _met(target["p90_learned"] < target["p90_adam"]),
            ],
        ],
    )
    steps = [
        int(key.removeprefix("median_")) for key in data["summary"][0] if key.startswith("median_")
    ]
    rows = table(
        [
            "optimiser",
            *(f"median / p90 at {k}" for k in steps),
            "diverged",
            "wall time (all tasks)",
        ],
        [
            [
                r["optimizer"],
                *(f"{_cell(r[f'median_{k}'])} / {_cell(r[f'p90_{k}'])}" for k in steps),
                r["num_diverged"],
                _seconds(r["wall_time_s"]),
            ]
            for r in data["summary"]
        ],
    )
    return "\n\n".join(
        [
            info,
            "#### Target",
            target_table,
            f"The learned optimiser's relative loss is below tuned Adam's on "
            f"{100 * target['fraction_learned_below_adam']:.1f} % of the tasks. Run for "
            f"{check['num_steps']} iterations, twice its training horizon, it diverges on "
            f"{check['num_diverged']} of {check['num_tasks']} tasks (median relative loss "
            f"{_cell(check['median_relative_loss'])}).",
            "#### Relative loss `(f(x_k) - f*) / (f(x_0) - f*)`",
            rows,
        ]
    )


def render_l2o_mlp_regression(data: dict[str, Any]) -> str:
    """Markdown for the MLP-regression learned-optimiser benchmark: target, speedups, check."""
    meta, training = data["meta"], data["pretrained"].get("training")
    target = data["targets"]["mlp_regression_speedup"]
    check = data["checks"]["400_steps"]
    rates = data["tuning"]["learning_rates"]
    info = (
        f"Run on {meta['date']}, {meta['device']}, jax {meta['jax_version']}: "
        f"{data['family']}, {meta['settings']['num_test_tasks']} held-out tasks; learning rates "
        f"tuned on {meta['settings']['num_train_tasks']} training tasks at {data['horizon']} "
        f"steps: Adam {_cell(rates['adam'])}, SGD {_cell(rates['sgd'])}."
    )
    info += _training_sentence(training)
    speedup = target["median_speedup_vs_adam"]
    target_table = table(
        ["target", "learned", "baseline", "result"],
        [
            [
                "median speedup to 10 % of the initial loss against tuned Adam, at least "
                f"{_cell(target['speedup_threshold'])}",
                speedup,
                1,
                _met(speedup is not None and speedup >= target["speedup_threshold"]),
            ],
            *(
                [
                    f"median final loss below tuned {label}'s",
                    target["median_final_learned"],
                    target[f"median_final_{name}"],
                    _met(target["median_final_learned"] < target[f"median_final_{name}"]),
                ]
                for name, label in (("adam", "Adam"), ("sgd", "SGD"))
            ),
        ],
    )
    speedups = table(
        ["against", "median", "p10", "p90", "learned faster on"],
        [
            [
                f"tuned {name}",
                s["p50"],
                s["p10"],
                s["p90"],
                f"{100 * s['fraction_faster']:.1f} %",
            ]
            for name, s in data["speedups"].items()
        ],
    )
    rows = table(
        [
            "optimiser",
            "learning rate",
            "median steps to 10 %",
            "median final loss",
            "diverged",
            "wall time (all tasks)",
        ],
        [
            [
                r["optimizer"],
                r["learning_rate"],
                r["median_steps_to_target"],
                r["median_final_loss"],
                r["num_diverged"],
                _seconds(r["wall_time_s"]),
            ]
            for r in data["summary"]
        ],
    )
    below = data["fraction_final_below"]
    return "\n\n".join(
        [
            info,
            "#### Target",
            target_table,
            f"The learned optimiser's final loss is below tuned Adam's on "
            f"{100 * below['adam']:.1f} % of the tasks and below tuned SGD's on "
            f"{100 * below['sgd']:.1f} %. Run for {check['num_steps']} steps, twice the "
            f"evaluation horizon, it diverges on {check['num_diverged']} of "
            f"{check['num_tasks']} tasks (median final loss "
            f"{_cell(check['median_final_loss'])}).",
            "#### Speedup to 10 % of the initial loss",
            speedups,
            "#### Optimisers",
            rows,
        ]
    )


# --------------------------------------------------------------------------------------------
# quantum_scf


def _code(run: dict[str, Any], key: str, fmt: Callable[[Any], Any] = lambda v: v) -> Any:
    """One code's measured value (through ``fmt``), or its status if it did not run."""
    return fmt(run[key]) if run["status"] == "ok" else run["status"]


def _ratio(numerator: Any, denominator: Any) -> str:
    if not isinstance(numerator, float) or not isinstance(denominator, float) or not denominator:
        return "—"
    return f"{numerator / denominator:.3g}"


def render_quantum_scf(data: dict[str, Any]) -> str:
    """Markdown for the SCF benchmark: target 2, time per call, batch throughput, iterations."""
    meta, config, batch = data["meta"], data["meta"]["config"], data["batch"]
    target = data["targets"]["iterations_le_pyscf"]
    info = (
        f"Run on {meta['date']}, {meta['device']}, jax {meta['jax_version']}, PySCF "
        f"{meta['versions']['pyscf']} with {meta['threads']['pyscf_num_threads']} thread(s); "
        f"RHF to conv_tol {config['conv_tol']:g} Eh, median of up to {config['repeats']} timed "
        f"calls after an untimed first call; {meta['elapsed_s']:.0f} s in total."
    )
    target_table = table(
        ["target", "result"],
        [
            [
                "2. SCF iterations no more than PySCF's default on every molecule, at the same "
                f"energy (within {target['same_energy_atol']:g} Eh)",
                _met(target["met"]),
            ]
        ],
    )
    timings = table(
        ["system", "task", "opifex", "opifex compile", "PySCF", "PySCF / opifex", "max ‖ΔG‖"],
        [
            [
                f"{r['molecule']}/{r['basis']}",
                r["task"],
                _code(r["opifex"], "time_s", _seconds),
                _code(r["opifex"], "compile_s", _seconds),
                _code(r["pyscf"], "time_s", _seconds),
                _ratio(r["pyscf"]["time_s"], r["opifex"]["time_s"]),
                r["max_abs_gradient_diff"],
            ]
            for r in data["timings"]
        ],
    )
    throughput = table(
        ["code", "geometries / s", "wall time", "compile", "converged", "max ‖ΔE‖"],
        [
            [
                code,
                _code(batch[key], "geometries_per_s"),
                _code(batch[key], "time_s", _seconds),
                _seconds(batch[key]["compile_s"]),
                _code(batch[key], "num_converged", lambda n: f"{n} / {batch['size']}"),
                batch["max_abs_energy_diff"],
            ]
            for code, key in (
                ("opifex `jit(vmap(run_scf))`", "opifex"),
                ("opifex loop of `jit(run_scf)`", "opifex_loop"),
                ("PySCF loop", "pyscf"),
            )
            if key in batch
        ],
    )
    iterations = table(
        [
            "system",
            f"opifex iterations ({config['guess'].upper()} guess)",
            "opifex, SAD guess",
            "PySCF iterations (its MINAO guess)",
            "opifex energy (Eh)",
            "ΔE (Eh)",
        ],
        [
            [
                f"{r['molecule']}/{r['basis']}",
                _code(r["opifex"], "iterations"),
                _code(r["opifex_sad"], "iterations"),
                _code(r["pyscf"], "iterations"),
                _code(r["opifex"], "energy", "{:.10f}".format),
                r["energy_diff"],
            ]
            for r in data["iterations"]
        ],
    )
    return "\n\n".join(
        [
            info,
            "#### Target",
            target_table,
            "#### Time per call after compilation",
            timings,
            f"#### {batch['size']} displaced {batch['molecule']}/{batch['basis']} geometries",
            throughput,
            "Throughput, opifex / PySCF: "
            + _cell(data["targets"]["speed_vs_pyscf"]["batch_throughput"]["ratio"]),
            "#### SCF iterations",
            iterations,
        ]
    )


# --------------------------------------------------------------------------------------------
# meta_sinusoid, meta_burgers


def _over_seeds(stats: dict[str, Any], digits: int = 3) -> str:
    """``median [min, max]`` over training seeds; ``None`` (JSON for +inf) is "diverged"."""

    def number(value: Any) -> str:
        return "diverged" if value is None else f"{value:.{digits}f}"

    if stats["min"] == stats["max"]:
        return number(stats["median"])
    return f"{number(stats['median'])} [{number(stats['min'])}, {number(stats['max'])}]"


def _meta_info(data: dict[str, Any]) -> str:
    meta, config = data["meta"], data["config"]
    size = "quick (smoke-sized)" if config["quick"] else "full"
    return (
        f"Run on {meta['date']}, {meta['device']} ({meta['cpu']}), jax "
        f"{meta['versions']['jax']}; {size} run: {config['iterations']} meta-iterations, "
        f"{len(config['seeds'])} training seed(s) per method, {config['held_out_tasks']} "
        "held-out tasks. Cells: median over the seeds [min, max]."
    )


def render_meta_sinusoid(data: dict[str, Any]) -> str:
    """Markdown for the sinusoid benchmark: targets, accuracy per method, throughput."""
    steps = data["config"]["steps"]
    accuracy = table(
        [
            "method",
            *(f"MSE after {s} step{'s' * (s != 1)}" for s in steps),
            "amplitudes 5-10, 10 steps",
            "phases pi-2pi, 10 steps",
            "meta-iterations / s",
            "first call (compile)",
        ],
        [
            [
                method,
                *(_over_seeds(stats[f"mse_{s}"]) for s in steps),
                _over_seeds(stats["amplitude_shifted_mse_10"]),
                _over_seeds(stats["phase_shifted_mse_10"]),
                _over_seeds(stats["iterations_per_second"], 0),
                f"{stats['compile_seconds']:.1f} s",
            ]
            for method, stats in data["summary"].items()
        ],
    )
    t = data["throughput"]
    library = sorted(t["library_iterations_per_second"])
    hand = sorted(t["hand_written_iterations_per_second"])
    throughput = table(
        ["loop", "meta-iterations / s (median)", "all segments"],
        [
            [
                "`MAMLOptimizer.meta_train_family`",
                library[len(library) // 2],
                ", ".join(f"{v:.0f}" for v in t["library_iterations_per_second"]),
            ],
            [
                "hand-written `jit` + `vmap` MAML",
                hand[len(hand) // 2],
                ", ".join(f"{v:.0f}" for v in t["hand_written_iterations_per_second"]),
            ],
        ],
    )
    targets = table(
        ["target", "met"],
        [[name.replace("_", " "), _met(v)] for name, v in data["targets"].items()],
    )
    return "\n\n".join(
        [
            _meta_info(data),
            "#### Targets",
            targets,
            "#### Held-out query MSE",
            accuracy,
            f"#### Throughput ({t['segment_iterations']}-iteration segments, alternating)",
            throughput,
            f"Library overhead: {100 * t['library_overhead']:.1f} % "
            "(negative: the library was faster).",
        ]
    )


def render_meta_burgers(data: dict[str, Any]) -> str:
    """Markdown for the Burgers benchmark: PINN loss from each start after tuned Adam steps."""
    steps = data["config"]["steps"]
    reference = data["reference_zero_shot"]
    losses = table(
        [
            "start",
            *(f"Adam, {s} steps" if s else "zero-shot" for s in steps),
            "the issue's zero-shot figure",
            "Adam learning rates (tuned per run)",
        ],
        [
            [
                start,
                *(_over_seeds(stats[f"loss_{s}"], 4) for s in steps),
                reference.get(start),
                ", ".join(f"{r['adam_learning_rate']:g}" for r in data["runs"][start]),
            ]
            for start, stats in data["summary"].items()
        ],
    )
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in data["train_seconds"].items())
    return "\n\n".join(
        [_meta_info(data), losses, f"Meta-training time per run (median): {seconds}."]
    )


def render_quantum_scale(data: dict[str, Any]) -> str:
    """Markdown for ``quantum_scale``: RHF time and peak memory beside PySCF, per case."""
    rows = []
    for r in data["rows"]:
        ours, theirs = r["opifex"], r["pyscf"]
        case = f"{r['molecule']}/{r['basis']}"
        if r.get("auxbasis"):
            case += f" + RI ({r['auxbasis']})"
        if r.get("max_memory_mb") is not None and ours.get("eri_layout"):
            case += f", max_memory {r['max_memory_mb']:g} MB: {ours['eri_layout']}"
            case += " (PySCF direct)" if theirs.get("direct") else ""
        rows.append(
            [
                case,
                str(theirs.get("n_functions", "-")),
                _seconds(theirs.get("steady_s")),
                _seconds(ours.get("steady_s")),
                _seconds(ours.get("first_s")),
                _ratio(ours.get("steady_s"), theirs.get("steady_s")),
                f"{theirs['peak_rss_mb']:.0f}" if "peak_rss_mb" in theirs else "-",
                f"{ours['peak_rss_mb']:.0f}" if "peak_rss_mb" in ours else "-",
                r.get("energy_diff"),
                f"{ours.get('cycles', '-')} / {theirs.get('cycles', '-')}",
            ]
        )
    meta = data["meta"]
    return "\n\n".join(
        [
            f"Run {meta['date']} on {meta['device']} ({meta.get('cpu', '')}).",
            table(
                [
                    "case",
                    "functions",
                    "PySCF SCF",
                    "opifex SCF (steady)",
                    "opifex first call",
                    "opifex / PySCF",
                    "PySCF peak MB",
                    "opifex peak MB",
                    "ΔE (Eh)",
                    "cycles opifex / PySCF",
                ],
                rows,
            ),
        ]
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "quantum_scale": render_quantum_scale,
    "second_order": render_second_order,
    "l2o": render_l2o,
    "l2o_lasso": render_l2o_lasso,
    "l2o_mlp_regression": render_l2o_mlp_regression,
    "quantum_scf": render_quantum_scf,
    "meta_sinusoid": render_meta_sinusoid,
    "meta_burgers": render_meta_burgers,
    **CONTROL_RENDERERS,
    **DEPLOY_RENDERERS,
}

# results written by a script other than ``benchmarks/<name>/bench_<name>.py``
SCRIPTS = {
    "l2o_lasso": "benchmarks/l2o/bench_l2o_lasso.py",
    "l2o_mlp_regression": "benchmarks/l2o/bench_l2o_mlp_regression.py",
    "quantum_scf": "benchmarks/quantum/bench_scf.py",
    "quantum_scale": "benchmarks/quantum/bench_scale.py",
    "meta_sinusoid": "benchmarks/meta/bench_sinusoid.py",
    "meta_burgers": "benchmarks/meta/bench_burgers.py",
    **CONTROL_SCRIPTS,
    **DEPLOY_SCRIPTS,
}


# --------------------------------------------------------------------------------------------
# loading and substitution


def _regenerate_hint(name: str) -> str:
    script = SCRIPTS.get(name, f"benchmarks/{name}/bench_{name}.py")
    return f"generate it with `uv run python {script}`"


def render_benchmark(name: str, results_dir: Path) -> str:
    """Markdown tables for ``<results_dir>/<name>.json``.

    Raises:
        PluginError: no renderer for ``name``, or the JSON is missing, unreadable or lacks a
            field the tables need (the message names the file and how to regenerate it).
    """
    if name not in RENDERERS:
        known = ", ".join(sorted(RENDERERS))
        raise PluginError(f"unknown benchmark {name!r} in a benchmark-table marker; known: {known}")
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        raise PluginError(f"benchmark results {path} not found: {_regenerate_hint(name)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PluginError(f"cannot read benchmark results {path}: {error}") from error
    if not isinstance(data, dict) or data.get("benchmark") != name:
        found = data.get("benchmark") if isinstance(data, dict) else type(data).__name__
        raise PluginError(f"{path} is not the {name!r} benchmark's results (found {found!r})")
    try:
        return RENDERERS[name](data)
    except (KeyError, TypeError, ValueError) as error:
        raise PluginError(
            f"benchmark results {path} lack a field the docs need ({error!r}); "
            f"{_regenerate_hint(name)}"
        ) from error


def replace_markers(markdown: str, results_dir: Path) -> str:
    """Replace every ``<!-- benchmark-table: NAME -->`` in ``markdown`` with NAME's tables."""
    return MARKER.sub(lambda match: render_benchmark(match.group(1), results_dir), markdown)


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).parent


# --------------------------------------------------------------------------------------------
# mkdocs events


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Render the benchmark markers of ``page``."""
    return replace_markers(markdown, _root(config) / RESULTS_DIR)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Publish every ``benchmarks/results/*.png`` as ``assets/benchmarks/<name>.png``."""
    for png in sorted((_root(config) / RESULTS_DIR).glob("*.png")):
        files.append(File.generated(config, f"{ASSETS_DIR}/{png.name}", abs_src_path=str(png)))
    return files


def on_serve(server: LiveReloadServer, config: MkDocsConfig, builder: Callable) -> None:
    """Rebuild on ``mkdocs serve`` when a benchmark writes new results."""
    server.watch(str(_root(config) / RESULTS_DIR))
