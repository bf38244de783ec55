"""The opifex-deploy benchmarks' tables for the docs (``benchmark_tables.RENDERERS``).

``render_deploy_serving`` turns ``benchmarks/results/deploy_serving.json`` into Markdown; every
number comes from the JSON.
"""

from __future__ import annotations

from typing import Any

from table_format import met, seconds, table


def _meta(data: dict[str, Any]) -> str:
    meta, quick = data["meta"], data["config"]["quick"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if k != "python")
    load = ", ".join(f"{v:.2f}" for v in meta["load_average_before"])
    size = "quick (smoke-sized)" if quick else "full"
    return (
        f"Recorded {meta['date']} on {meta['device']} ({meta['cpu']}, {meta['cpu_count']} "
        f"cores shared by the server and the client; load average before the run {load}), "
        f"{versions}; {size} run, {meta['elapsed_s']:.0f} s. Client: {meta['client']}."
    )


def _verdict(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return met(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _fraction(value: float | None, fmt: str = ".2f") -> str:
    return "—" if value is None else f"{value:{fmt}}"


def render_deploy_serving(data: dict[str, Any]) -> str:
    """Targets, the load runs, compile vs steady per batch size, servers, QP agreement."""
    targets = "\n".join(f"- {k}: {_verdict(v)}" for k, v in data["targets"].items())
    load = table(
        ["solver", "server", "client", "concurrency", "ok / requests", "errors", "wrong",
         "throughput (req/s)", "p50", "p99", "mean batch", "client CPU (cores)",
         "server CPU (cores)", "client CPU per request", "server CPU per request"],
        [
            [r["solver"], r["server"], r["client"], r["concurrency"],
             f"{r['ok']} / {r['requests']}", r["errors"], r["wrong"],
             f"{r['throughput_per_s']:.0f}", seconds(r["p50_s"]), seconds(r["p99_s"]),
             _fraction(r["mean_batch"], ".1f"), _fraction(r["client_cpu_fraction"]),
             _fraction(r["server_cpu_fraction"]), seconds(r["client_cpu_per_request_s"]),
             seconds(r["server_cpu_per_request_s"])]
            for r in data["load"]
        ],
    )  # fmt: skip
    steady = table(
        ["solver", "batch", "first call", "compile", "steady median", "steady p99",
         "examples/s"],
        [
            [name, m["batch_size"], seconds(m["first_call_s"]), seconds(m["compile_s"]),
             seconds(m["median_s"]), seconds(m["p99_s"]), f"{m['throughput_per_s']:.0f}"]
            for name, report in data["platform"].items()
            for m in report["measurements"]
        ],
    )  # fmt: skip
    plans = table(
        ["solver", "chosen batch", "mode", "device", "call p99", "within bound", "export"],
        [
            [name, r["plan"]["max_batch_size"], r["plan"]["mode"], r["plan"]["device"],
             seconds(r["plan"]["latency_s"]), r["plan"]["meets_latency_bound"],
             seconds(data["export"][name]["export_s"])]
            for name, r in data["platform"].items()
        ],
    )  # fmt: skip
    servers = table(
        ["server", "batching", "max batch", "max delay", "start to ready"],
        [
            [label, s["batching"], s["max_batch_size"], f"{s['max_delay_ms']:g} ms",
             seconds(s["ready_s"])]
            for label, s in data["servers"].items()
        ],
    )  # fmt: skip
    osqp, agree = data["osqp_in_process"], data["qp_agreement"]
    qp = (
        f"OSQP in this process, no HTTP: {osqp['solves']} solves, median "
        f"{seconds(osqp['median_s'])}, p99 {seconds(osqp['p99_s'])} "
        f"({osqp['per_s']:.0f} solves/s). Over {agree['instances']} instances, opifex's and "
        f"OSQP's objectives differ by at most {agree['max_objective_gap_rel']:.1e} (relative), "
        f"the largest constraint violation is {agree['max_violation_opifex']:.1e} (opifex) and "
        f"{agree['max_violation_osqp']:.1e} (OSQP); not converged: "
        f"{agree['opifex_not_converged']} (opifex), {agree['osqp_not_solved']} (OSQP)."
    )
    note = data["platform"][next(iter(data["platform"]))]["device_note"]
    return "\n\n".join(
        [_meta(data), "**Targets**\n\n" + targets, "**Load runs**\n\n" + load,
         "**In process: first call vs steady state, per batch size** (" + note + ")\n\n" + steady,
         "**Plans of `HybridPerformancePlatform`**\n\n" + plans, "**Servers**\n\n" + servers,
         "**QP answers**\n\n" + qp]
    )  # fmt: skip


DEPLOY_RENDERERS = {"deploy_serving": render_deploy_serving}
DEPLOY_SCRIPTS = {"deploy_serving": "benchmarks/deploy/bench_serving.py"}
