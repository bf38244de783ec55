"""The opifex-control benchmarks' tables for the docs (``benchmark_tables.RENDERERS``).

Each ``render_*`` turns one ``benchmarks/results/control_*.json`` into Markdown; every number
comes from the JSON.
"""

from __future__ import annotations

from typing import Any

from table_format import met, seconds, table


def _spread(stats: dict[str, Any] | None, fmt: str = ".2g") -> str:
    """``median [min, max]`` of a ``{"median", "min", "max"}`` summary."""
    if stats is None or stats.get("median") is None:
        return "—"
    return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def _meta(data: dict[str, Any]) -> str:
    meta, quick = data["meta"], data["config"].get("quick")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "python")
    size = "quick (smoke-sized)" if quick else "full"
    return f"Recorded {meta['date']} on {meta['device']} ({meta['cpu']}), {versions}; {size} run."


def _verdict(value: Any) -> str:
    """``met`` / ``**not met**`` / ``not evaluated`` for a verdict, else the value itself."""
    if value is None or isinstance(value, bool):
        return met(value)
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _targets(targets: dict[str, Any]) -> str:
    lines = []
    for key, value in targets.items():
        if isinstance(value, dict):
            lines += [f"- {key}: " + "; ".join(f"{k} {_verdict(v)}" for k, v in value.items())]
        else:
            lines.append(f"- {key}: {_verdict(value)}")
    return "\n".join(lines)


def render_control_mpc(data: dict[str, Any]) -> str:
    """Cold solves beside the baselines, closed loops, mismatch, step times, gradients."""
    cold = table(
        ["problem", "solver", "status", "iterations", "to 1e-8 of best cost",
         "to gradient rtol 1e-8", "compile", "solve", "cost", "bound violation"],
        [
            [name, row["solver"], row["status"], row["iterations"],
             row.get("iterations_to_gap", {}).get("1e-08"), row.get("iterations_to_rtol_1e-8"),
             seconds(row.get("compile_seconds")), seconds(row["cold_seconds"]), row["cost"],
             row["max_bound_violation"]]
            for name, entry in data["cold"].items()
            for row in entry["rows"]
        ],
    )  # fmt: skip
    loops = table(
        ["problem", "start, budget", "held upright", "from (s)", "final angle", "fallbacks"],
        [
            [name, run["label"], run["held"], run["held_from_seconds"], run["final_abs_angle"],
             run["fallbacks"]]
            for name, runs in data["closed_loop"].items()
            for run in runs
        ],
    )  # fmt: skip
    factors = data["config"]["mismatch_factors"]
    mismatch = table(
        ["problem (scaled parameter)", "warm start", *[f"×{f:g}" for f in factors]],
        [
            [f"{name} ({entry['parameter']})", warm,
             *[row["held_from_seconds"] if row["held"] else "no"
               for row in entry["rows"] if row["warm_start"] == warm]]
            for name, entry in data["mismatch"].items()
            for warm in ("feedback", "shift")
        ],
    )  # fmt: skip
    steps = table(
        ["problem", "controller", "median ms", "p90 ms", "iterations (median)", "periods"],
        [
            [name, row["solver"], row["median_ms"], row.get("p90_ms"),
             row.get("median_iterations"), row.get("periods")]
            for name, rows in data["warm_steps"].items()
            for row in rows
        ],
    )  # fmt: skip
    rates = table(
        ["system", "budget", "median ms", "rate (Hz)", "control period (ms)"],
        [[r["system"], r["budget"], r["median_ms"], r["rate_hz"], r["period_ms"]]
         for r in data["control_rate"]],
    )  # fmt: skip
    integrator = table(
        ["step inside iLQR", "compile", "iterations", "ms per iteration", "cost"],
        [[r["method"], seconds(r["compile_seconds"]), r["iterations"], r["ms_per_iteration"],
          r["cost"]] for r in data["integrator"]["rows"]],
    )  # fmt: skip
    fd_steps = list(next(iter(data["gradients"].values()))["rows"][0]["rel_error_vs_fd"])
    gradients = table(
        ["problem", "method", *[f"rel. error vs FD, h = {h}" for h in fd_steps],
         "rel. error vs implicit", "time"],
        [[name, r["method"], *r["rel_error_vs_fd"].values(), r["rel_error_vs_implicit"],
          seconds(r["seconds"])]
         for name, entry in data["gradients"].items() for r in entry["rows"]],
    )  # fmt: skip
    trajax = []
    for name, entry in data["gradients"].items():
        for method, check in entry.get("trajax", {}).items():
            if isinstance(check, dict) and "rel_error_x0" in check:
                trajax.append([name, method, check["rel_error_x0"], check["rel_error_params"]])
    parts = [
        _meta(data),
        "**Targets**\n\n" + _targets(data["targets"]),
        "**Cold solves from U = 0** (opifex's cost of every solver's controls)\n\n" + cold,
        "**Closed-loop swing-ups** (12 s against a plant integrated 8x finer)\n\n" + loops,
        "**Planner's model off the plant's** (held upright from, s; zero plan, budget 10)\n\n"
        + mismatch,
        "**Warm-started MPC step** (wall time per call, dispatch included)\n\n" + steps,
        "**Reachable control rate** (horizon 50)\n\n" + rates,
        f"**Integrator inside iLQR** ({data['integrator']['problem']})\n\n" + integrator,
        "**Gradients of w · U\\*** with respect to x0, dynamics parameters and log cost "
        "weights\n\n" + gradients,
    ]
    if trajax:
        parts.append(
            "**trajax's gradients** (relative error against finite differences)\n\n"
            + table(["problem", "vjp method", "x0", "dynamics parameters"], trajax)
        )
    return "\n\n".join(parts)


def render_control_cbf(data: dict[str, Any]) -> str:
    """Violations over random episodes per case, and the per-step time beside the baselines."""
    studies = table(
        ["case", "episodes", "violating episodes", "min h", "infeasible steps",
         "goal reached"],
        [[name, s["episodes"], s["violating_episodes"], s["min_h"], s["infeasible_steps"],
          s.get("goal_reached_fraction")] for name, s in data["studies"].items()],
    )  # fmt: skip
    timing = table(
        ["filter", "status", "compile", "median ms", "p90 ms"],
        [[name, t.get("status", "ok"), seconds(t.get("compile_seconds")), t.get("median_ms"),
          t.get("p90_ms")] for name, t in data["timing"].items()],
    )  # fmt: skip
    notes = "\n".join(f"- *{k}*: {v}" for k, v in data.get("notes", {}).items())
    return "\n\n".join(
        [_meta(data), "**Targets**\n\n" + _targets(data["targets"]),
         "**Episodes** (a violation: h < -1e-3 on the fine plant)\n\n" + studies,
         "**Time per filter call** (jitted, single calls)\n\n" + timing, notes]
    )  # fmt: skip


def render_control_sysid(data: dict[str, Any]) -> str:
    """SINDy per noise level, parametric fits (single vs multiple shooting), neural ODEs."""
    sindy = table(
        ["noise", "derivatives", "runs", "exact support", "max coefficient error"],
        [[s["noise"], s["derivative"], s["runs"], s["support_recovered"],
          _spread(s["max_coefficient_error"])] for s in data["sindy"]["summary"]],
    )  # fmt: skip
    fits = data["parametric"]["summary"]
    parametric = table(
        ["shooting", "runs", "recovered (5 %)", "converged", "max rel. error",
         "held-out RMSE", "iterations", "first call", "steady"],
        [[k, f["runs"], f["recovered"], f["converged"], _spread(f["max_relative_error"]),
          _spread(f["held_out_rmse"]), _spread(f["num_steps"], "g"),
          seconds(f["first_call_seconds"]), seconds(f["steady_state_seconds"])]
         for k, f in fits.items()],
    )  # fmt: skip
    nodes = data["neural_ode"]["summary"]
    node = table(
        ["shooting", "train RMSE", "extrapolation RMSE", "seconds"],
        [[k, _spread(n["train_rmse"]), _spread(n["extrapolation_rmse"]),
          _spread(n["seconds"], ".3g")] for k, n in nodes.items()],
    )  # fmt: skip
    return "\n\n".join(
        [_meta(data), "**SINDy on Lotka-Volterra** (median [min, max] over noise draws)\n\n"
         + sindy, "**Pendulum parameters by Levenberg-Marquardt**\n\n" + parametric,
         "**Neural ODE on the pendulum** (median [min, max] over seeds)\n\n" + node]
    )  # fmt: skip


def render_control_imitation(data: dict[str, Any]) -> str:
    """Parameter recovery through the MPC solver per problem, and the gradient check."""
    rows = []
    for name, problem in data["problems"].items():
        summary = problem["summary"]
        seeds = len(problem["rows"])
        rows.append([name, "start", _spread(summary["start_max_relative_error"]), "—", "—"])
        for method in ("adam", "lm"):
            found = summary[method]
            rows.append(
                [name, method, _spread(found["max_relative_error"]),
                 f"{found['recovered']} / {seeds}", _spread(found["held_out_control_rmse"])]
            )  # fmt: skip
    recovery = table(
        ["problem", "parameters", "largest rel. error", "recovered (all < 5 %)",
         "held-out control RMSE"],
        rows,
    )  # fmt: skip
    check = data["gradient_check"]
    gradient = table(
        ["adjoint", "compile", "per call", "temporary memory (MiB)"],
        [[k, seconds(check[k]["compile_seconds"]), seconds(check[k]["steady_seconds"]),
          check[k]["temp_bytes"] / 2**20] for k in ("implicit", "unrolled")],
    )  # fmt: skip
    return "\n\n".join(
        [_meta(data), "**Parameters recovered through the solver** (median [min, max] over "
         "seeds)\n\n" + recovery, "**The imitation loss's gradient**\n\n" + gradient]
    )  # fmt: skip


RENDERERS = {
    "control_mpc": render_control_mpc,
    "control_cbf": render_control_cbf,
    "control_sysid": render_control_sysid,
    "control_imitation": render_control_imitation,
}
SCRIPTS = {
    "control_mpc": "benchmarks/control/bench_mpc.py",
    "control_cbf": "benchmarks/control/bench_cbf.py",
    "control_sysid": "benchmarks/control/bench_sysid.py",
    "control_imitation": "benchmarks/control/bench_imitation.py",
}
