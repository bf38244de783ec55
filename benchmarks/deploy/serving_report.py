"""The serving benchmark's targets, printed tables and plot, from its results dict."""

from pathlib import Path
from typing import Any

import numpy as np
from bench_common import print_tables

LM, QP, OSQP = "lm-fit", "qp-box-eq", "qp-osqp"


def find(
    rows: list[dict[str, Any]], solver: str, server: str, c: int, client: str = "raw"
) -> dict[str, Any] | None:
    """The load row of ``solver`` on ``server`` at concurrency ``c``, if it was run."""
    key = (solver, server, c, client)
    return next(
        (r for r in rows if (r["solver"], r["server"], r["concurrency"], r["client"]) == key),
        None,
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets evaluated on the load rows (``None``: the rows were not run)."""
    rows = results["load"]
    batched, unbatched = find(rows, LM, "batched", 32), find(rows, LM, "unbatched", 32)
    ratio = p99_ok = None
    if batched and unbatched:
        ratio = _ratio(batched["throughput_per_s"], unbatched["throughput_per_s"])
        p99_ok = (
            batched["p99_s"] is not None
            and unbatched["p99_s"] is not None
            and (batched["p99_s"] <= unbatched["p99_s"])
        )
    lm_batched = [
        r for r in rows if (r["solver"], r["server"], r["client"]) == (LM, "batched", "raw")
    ]
    peak = max(lm_batched, key=lambda r: r["throughput_per_s"] or 0.0, default=None)
    qp, osqp = find(rows, QP, "batched", 32), find(rows, OSQP, "unbatched", 32)
    return {
        "lm_fit_c32_throughput_ratio": ratio,
        "lm_fit_c32_throughput_at_least_3x": None if ratio is None else ratio >= 3.0,
        "lm_fit_c32_p99_batched_not_worse": p99_ok,
        "lm_fit_peak_concurrency": peak["concurrency"] if peak else None,
        "lm_fit_peak_p99_s": peak["p99_s"] if peak else None,
        "lm_fit_p99_under_100ms_at_peak": (
            None if not peak or peak["p99_s"] is None else peak["p99_s"] < 0.1
        ),
        "no_errors": all(r["errors"] == 0 for r in rows),
        "no_wrong_answers": all(r["wrong"] == 0 for r in rows),
        "every_request_sent": all(r["not_sent"] == 0 for r in rows),
        "qp_c32_throughput_ratio_vs_osqp": (
            _ratio(qp["throughput_per_s"], osqp["throughput_per_s"]) if qp and osqp else None
        ),
        "qp_c32_p99_ratio_vs_osqp": _ratio(qp["p99_s"], osqp["p99_s"]) if qp and osqp else None,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1e3 * value:.3g}"


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else f"{value:{fmt}}"


def render_tables(results: dict[str, Any], stream: Any) -> None:
    """Print the load, compile and agreement tables and the targets."""
    load_columns = [
        "solver", "server", "client", "concurrency", "ok / requests", "errors", "wrong",
        "throughput /s", "p50 ms", "p99 ms", "mean batch", "client CPU", "server CPU",
    ]  # fmt: skip
    load = [
        [r["solver"], r["server"], r["client"], str(r["concurrency"]),
         f"{r['ok']} / {r['requests']}", str(r["errors"]), str(r["wrong"]),
         _num(r["throughput_per_s"], ".0f"), _ms(r["p50_s"]),
         _ms(r["p99_s"]), _num(r["mean_batch"], ".1f"), _num(r["client_cpu_fraction"], ".2f"),
         _num(r["server_cpu_fraction"], ".2f")]
        for r in results["load"]
    ]  # fmt: skip
    compile_rows = [
        [name, str(m["batch_size"]), _ms(m["first_call_s"]), _ms(m["compile_s"]),
         _ms(m["median_s"]), _ms(m["p99_s"]), _num(m["throughput_per_s"], ".0f")]
        for name, report in results["platform"].items()
        for m in report["measurements"]
    ]  # fmt: skip
    servers = [
        [label, str(s["max_batch_size"]), str(s["batching"]), _num(s["ready_s"], ".1f")]
        for label, s in results["servers"].items()
    ]
    sections = [
        ("Load test (loopback; client and server share the cores)", load_columns, load),
        ("In process: first call (compile) vs steady, per batch",
         ["solver", "batch", "first call ms", "compile ms", "median ms", "p99 ms", "examples/s"],
         compile_rows),
        ("Servers", ["server", "max batch", "batching", "start to ready s"], servers),
    ]  # fmt: skip
    osqp, agree = results["osqp_in_process"], results["qp_agreement"]
    plans = [
        "{}: batch {max_batch_size} ({mode}, {device})".format(name, **report["plan"])
        for name, report in results["platform"].items()
    ]
    lines = [
        "plans: " + ", ".join(plans),
        f"OSQP in process: {osqp['solves']} solves, median {_ms(osqp['median_s'])} ms, p99 "
        f"{_ms(osqp['p99_s'])} ms, {osqp['per_s']:.0f} solves/s",
        f"QP agreement over {agree['instances']} instances: objective gap (rel) "
        f"{agree['max_objective_gap_rel']:.2e}, violation opifex "
        f"{agree['max_violation_opifex']:.1e} / OSQP {agree['max_violation_osqp']:.1e}, "
        "not converged opifex "
        f"{agree['opifex_not_converged']} / OSQP {agree['osqp_not_solved']}",
        *(f"target {k}: {v}" for k, v in results["targets"].items()),
    ]  # fmt: skip
    print_tables(sections, lines, stream, left_columns=3)


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and p99 against concurrency; in-process time per example against batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    series = [
        (LM, "batched", "lm-fit, batched", "C0", "-"),
        (LM, "unbatched", "lm-fit, one call per request", "C0", "--"),
        (QP, "batched", "QP (opifex), batched", "C1", "-"),
        (QP, "unbatched", "QP (opifex), one call per request", "C1", "--"),
        (OSQP, "unbatched", "QP (OSQP per request)", "C2", "--"),
    ]
    for solver, server, label, color, style in series:
        rows = sorted(
            (
                r
                for r in results["load"]
                if (r["solver"], r["server"], r["client"]) == (solver, server, "raw")
            ),
            key=lambda r: r["concurrency"],
        )
        if not rows:
            continue
        c = [r["concurrency"] for r in rows]
        axes[0].plot(c, [r["throughput_per_s"] or np.nan for r in rows], style, color=color,
                     marker="o", label=label)  # fmt: skip
        axes[1].plot(c, [1e3 * (r["p99_s"] or np.nan) for r in rows], style, color=color,
                     marker="o", label=label)  # fmt: skip
    levels = sorted({r["concurrency"] for r in results["load"]})
    for ax, ylabel in zip(axes[:2], ("requests / s", "p99 latency (ms)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[1].axhline(100, color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    for (name, report), color in zip(results["platform"].items(), ("C0", "C1"), strict=False):
        ms = report["measurements"]
        sizes = [m["batch_size"] for m in ms]
        axes[2].plot(sizes, [1e6 * m["median_s"] / m["batch_size"] for m in ms], "-o",
                     color=color, label=f"{name}: steady")  # fmt: skip
    osqp = results["osqp_in_process"]
    axes[2].axhline(1e6 * osqp["median_s"], color="C2", ls="--", label="OSQP: one solve")
    axes[2].set_xscale("log", base=2)
    sizes = sorted(
        {m["batch_size"] for r in results["platform"].values() for m in r["measurements"]}
    )
    axes[2].set_xticks(sizes, [str(b) for b in sizes])
    axes[2].set_yscale("log")
    axes[2].set_xlabel("batch size (in process, no HTTP)")
    axes[2].set_ylabel("µs per example (median call / batch)")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    meta = results["meta"]
    fig.suptitle(f"opifex.deploy serving on {meta['cpu']} ({meta['cpu_count']} cores, shared "
                 "by server and client), loopback")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
