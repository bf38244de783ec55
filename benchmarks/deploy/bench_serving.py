"""Serving load test: micro-batched vs one-call-per-request, and a served QP vs OSQP per request.

Everything runs on this machine, on loopback (127.0.0.1) only; every request loop is bounded
in count and in time. A server is a real ``uvicorn`` process (``serving_server.py``) serving
``opifex.deploy.create_app`` with the artifacts of a temporary ``Registry``; the client is one
``httpx.AsyncClient`` in this process (``load_client.py``), closed-loop at a fixed concurrency,
one example per request (``{"instance": ...}``), each request with its own inputs and the
result cache off, so that every request reaches a solver. **Server and client share the same
cores** (the JSON records how many, the load average before the run, and the CPU time each
used during every run: a client CPU fraction near 1.0 means one client process was the
bottleneck).

Parts:

1. **Micro-batching pays** — ``lm-fit`` (``opifex deploy export lm-fit``: Levenberg-Marquardt,
   ``opifex.second_order.least_squares``, fit of ``y = a exp(-b t) + c`` to 16 points,
   float64) served with batching on (``max_batch_size`` chosen by
   ``HybridPerformancePlatform``, ``max_delay_ms = 2``) and off (``batching=False``, one
   solver call per request, ``max_batch_size = 1``), at concurrency 1, 8, 32, 64 with a fixed
   number of requests: throughput, p50 / p99 latency, errors and wrong answers (every answer
   is checked against the artifact called directly in this process). The issue's targets: at
   concurrency 32, at least 3x the throughput of the unbatched server at no worse p99, and
   p99 under 100 ms at the measured peak.
2. **Parametric QP** — ``qp_family.py``: ``min 1/2 x' diag(w) x + q' x`` s.t. two equalities
   and ``-1 <= x <= 1``, n = 10, ``q`` per request; opifex's ``filter_qp`` exported and served
   (batched and unbatched) against OSQP per request behind the same service (the unbatched
   server, an OSQP-backed servable: one ``update(q) + solve()`` per request). Also, in this
   process without HTTP: OSQP in a loop (per solve) and the exported QP per batch. Answers
   are checked: opifex's against its direct call, OSQP's by objective (relative 1e-6) and
   constraint violation (1e-6) against opifex's; and opifex's against OSQP's over the whole
   input pool.
3. **Compile vs steady** — ``HybridPerformancePlatform`` times each exported solver in this
   process at every bucket size: the first call (compile + one run) apart from the median and
   p99 of the steady calls; plus each server's time from start to ready (its warm-up runs every
   bucket). This process and the servers share one persistent compilation cache: a fresh one
   when this process has none (a script run), so the first calls here compile for real and
   the servers read the programs from it; the process's own when it has one (``opifex
   bench``, the test suite), and then the first calls may be cache reads (``meta``
   ``compilation_cache.fresh`` is False).

Run ``python benchmarks/deploy/bench_serving.py [--quick]`` (quick: under a minute). Output:
tables on stdout, ``benchmarks/results/deploy_serving.json`` and ``.png``.
"""

# No ``from __future__ import annotations`` (the CLI loads benchmark files by path).
import argparse
import dataclasses
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench_common
sys.path.insert(0, str(HERE))  # qp_family, load_client, serving_report
import load_client  # noqa: E402
import qp_family  # noqa: E402
import serving_report  # noqa: E402
from bench_common import print_progress, run_metadata, write_outputs  # noqa: E402

LOG = logging.getLogger("opifex.benchmarks.deploy")
RESULTS_DIR = HERE.parent / "results"
NAME = "deploy_serving"
SERVER = HERE / "serving_server.py"
LM, QP, OSQP = "lm-fit", qp_family.NAME, qp_family.OSQP_NAME
LM_POINTS = 16
Progress = Callable[[int, int, str], None]
DISTRIBUTIONS = (
    "jax", "jaxlib", "numpy", "opifex-deploy", "opifex-second-order", "opifex-control",
    "starlette", "uvicorn", "httptools", "uvloop", "httpx", "osqp",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what is run (recorded in the JSON)."""

    quick: bool = False
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    qp_concurrency: tuple[int, ...] = (1, 8, 32, 64)
    requests: int = 3000  # per run at concurrency > 1
    client: str = "raw"  # the load generator of every run but the httpx ones (load_client.py)
    httpx_concurrency: tuple[int, ...] = (32,)  # lm-fit runs with httpx.AsyncClient as well
    httpx_requests: int = 1000
    serial_requests: int = 300  # at concurrency 1
    max_seconds: float = 30.0  # a run stops sending after this long
    max_batch_size: int = 64  # the largest batch the platform tries
    max_latency_ms: float = 50.0  # the platform's bound on one call's p99
    max_delay_ms: float = 2.0
    repeats: int = 20
    osqp_solves: int = 2000  # in-process OSQP loop
    ready_timeout_s: float = 300.0
    seed: int = 0
    lm_rtol: float = 1e-6  # served vs direct answers
    qp_objective_rtol: float = 1e-6
    qp_violation_atol: float = 1e-6


def quick_config() -> BenchConfig:
    """``--quick``: concurrency 1 and 32, fewer requests, batches up to 8."""
    return BenchConfig(
        quick=True, concurrency=(1, 32), qp_concurrency=(32,), requests=400,
        serial_requests=40, max_seconds=10.0, max_batch_size=8, repeats=5, osqp_solves=200,
        httpx_requests=200,
    )  # fmt: skip


# ----------------------------------------------------------------------------- inputs


def lm_inputs(seed: int, count: int) -> dict[str, np.ndarray]:
    """``count`` noisy samples of ``a exp(-b t) + c`` on 16 points in [0, 4]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 4.0, LM_POINTS)
    a, b, c = rng.uniform(1, 3, count), rng.uniform(0.3, 1.5, count), rng.uniform(-1, 1, count)
    y = a[:, None] * np.exp(-b[:, None] * t) + c[:, None]
    y += 0.01 * rng.standard_normal(y.shape)
    return {"t": np.tile(t, (count, 1)), "y": y}


def instance_bodies(inputs: dict[str, np.ndarray]) -> list[bytes]:
    """One ``{"instance": ...}`` JSON body per example."""
    count = len(next(iter(inputs.values())))
    return [
        json.dumps({"instance": {k: v[i].tolist() for k, v in inputs.items()}}).encode()
        for i in range(count)
    ]


def direct_outputs(exported: Any, inputs: dict[str, np.ndarray], buckets: tuple) -> dict:
    """The artifact called directly in this process (the reference answers).

    In chunks of the largest bucket, the last one padded to a bucket, so that only the batch
    sizes measured already are called (nothing new to compile).
    """
    from opifex.deploy._batching import run_padded

    return run_padded(exported, inputs, buckets)


# ----------------------------------------------------------------------------- answer checks


def lm_wrong(
    outputs: dict[str, Any], reference: dict[str, np.ndarray], i: int, rtol: float
) -> bool:
    """An lm-fit answer differs from the direct call's."""
    return not (
        np.allclose(outputs["params"], reference["params"][i], rtol=rtol, atol=1e-9)
        and np.isclose(outputs["residual_norm"], reference["residual_norm"][i], rtol=rtol,
                       atol=1e-12)
        and bool(outputs["converged"]) == bool(reference["converged"][i])
    )  # fmt: skip


def qp_wrong(
    outputs: dict[str, Any], reference: dict[str, np.ndarray], q: np.ndarray, i: int,
    cfg: BenchConfig, family: qp_family.QPFamily,
) -> bool:  # fmt: skip
    """A QP answer is not the optimum: objective or feasibility off, or not converged."""
    x = np.asarray(outputs["x"], np.float64)
    objective = family.objective(x, q[i])
    best = reference["objective"][i]
    return not (
        bool(outputs["converged"])
        and abs(objective - best) <= cfg.qp_objective_rtol * max(1.0, abs(best))
        and family.violation(x) <= cfg.qp_violation_atol
    )


# ----------------------------------------------------------------------------- servers


class Server:
    """A ``serving_server.py`` subprocess on loopback; a context manager that always stops it."""

    def __init__(
        self, registry: Path, *, batching: bool, max_batch_size: int, max_delay_ms: float,
        osqp: bool, cache_dir: Path, log_path: Path,
    ) -> None:  # fmt: skip
        self.args = [
            sys.executable, str(SERVER), "--registry", str(registry),
            "--batching", "on" if batching else "off", "--max-batch-size", str(max_batch_size),
            "--max-delay-ms", str(max_delay_ms), *(["--osqp"] if osqp else []),
        ]  # fmt: skip
        self.env = {**os.environ, "OPIFEX_JAX_CACHE": str(cache_dir)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.ready_s: float | None = None

    def start(self, timeout_s: float) -> "Server":
        import httpx

        start = time.perf_counter()
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._log, env=self.env, text=True
        )
        deadline = start + timeout_s
        line = ""
        while not line.startswith("PORT ") and time.perf_counter() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if not line and self.proc.poll() is not None:
                    break
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server did not start; see {self.log_path}")
        self.port = int(line.split()[1])
        while time.perf_counter() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5.0).status_code == 200:
                    self.ready_s = time.perf_counter() - start
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready in {timeout_s:g} s; see {self.log_path}")

    @property
    def base(self) -> str:
        return f"http://{load_client.LOOPBACK}:{self.port}"

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server process so far (``None`` without psutil)."""
        try:
            import psutil
        except ImportError:
            return None
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def batch_stats(self, solver: str) -> tuple[float, float]:
        """``(calls, examples)`` of ``solver`` so far, from ``GET /metrics``."""
        import httpx

        text = httpx.get(f"{self.base}/metrics", timeout=10.0).text
        total = {"sum": 0.0, "count": 0.0}
        pattern = re.compile(r"^opifex_batch_size_(sum|count)\{([^}]*)\} (\S+)$", re.M)
        for kind, labels, value in pattern.findall(text):
            if f'solver="{solver}"' in labels:
                total[kind] += float(value)
        return total["count"], total["sum"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- load runs


def load_row(
    server: Server, label: str, solver: str, concurrency: int, bodies: list[bytes],
    check: Callable[[dict[str, Any], int], bool], cfg: BenchConfig, client: str,
) -> dict[str, Any]:  # fmt: skip
    """One load run against ``solver`` on ``server``, summarised and every answer checked."""
    url = f"{server.base}/v1/solvers/{solver}/predict"
    calls0, examples0 = server.batch_stats(solver)
    cpu0 = server.cpu_s()
    run = load_client.run_load(url, bodies, concurrency, cfg.max_seconds, client=client)
    cpu1 = server.cpu_s()
    calls1, examples1 = server.batch_stats(solver)
    ok = [i for i, s in enumerate(run.statuses) if s == 200]
    wrong = sum(check(json.loads(run.bodies[i])["outputs"], i) for i in ok)
    latencies = np.asarray([run.latencies_s[i] for i in ok])
    calls = calls1 - calls0
    return {
        "solver": solver,
        "server": label,
        "client": client,
        "concurrency": concurrency,
        "requests": len(bodies),
        "sent": run.sent,
        "not_sent": len(bodies) - run.sent,
        "ok": len(ok),
        "errors": run.sent - len(ok),
        "statuses": sorted({s for s in run.statuses if s not in (None, 200)}),
        "failures": run.failures[:5],
        "wrong": int(wrong),
        "wall_s": run.wall_s,
        "throughput_per_s": len(ok) / run.wall_s if run.wall_s > 0 else None,
        "p50_s": float(np.percentile(latencies, 50)) if len(ok) else None,
        "p99_s": float(np.percentile(latencies, 99)) if len(ok) else None,
        "mean_s": float(latencies.mean()) if len(ok) else None,
        "max_s": float(latencies.max()) if len(ok) else None,
        "solver_calls": calls,
        "mean_batch": (examples1 - examples0) / calls if calls else None,
        "client_cpu_fraction": run.client_cpu_s / run.wall_s if run.wall_s > 0 else None,
        "client_cpu_per_request_s": run.client_cpu_s / run.sent if run.sent else None,
        "server_cpu_per_request_s": (cpu1 - cpu0) / run.sent
        if cpu0 is not None and run.sent
        else None,
        "server_cpu_fraction": (cpu1 - cpu0) / run.wall_s if cpu0 is not None else None,
    }


def osqp_in_process(family: qp_family.QPFamily, qs: np.ndarray) -> tuple[dict, np.ndarray, list]:
    """OSQP solved in a loop here: per-solve times, the solutions and the solved flags."""
    servable = qp_family.OSQPServable(family)
    servable.solve_one(qs[0])  # setup (the KKT factorisation) outside the timing
    times, xs, solved = [], [], []
    for q in qs:
        start = time.perf_counter()
        x, ok = servable.solve_one(q)
        times.append(time.perf_counter() - start)
        xs.append(x)
        solved.append(ok)
    stats = {
        "solves": len(qs),
        "median_s": float(np.median(times)),
        "p99_s": float(np.percentile(times, 99)),
        "per_s": len(qs) / float(np.sum(times)),
        "settings": qp_family.OSQP_SETTINGS,
    }
    return stats, np.stack(xs), solved


# ----------------------------------------------------------------------------- the benchmark


def _compilation_cache() -> tuple[str, bool]:
    """The persistent compilation cache this process and the servers share: ``(dir, fresh)``.

    A process without one (a script run) gets a fresh, empty one, so that its first calls
    compile for real and the servers read what it compiled; a process with one (the CLI, the
    test suite) keeps it, and its first calls may be read from it (``fresh`` is then False).
    """
    import jax

    current = getattr(jax.config, "jax_compilation_cache_dir", None)
    if current:
        return str(current), False
    path = tempfile.mkdtemp(prefix="opifex-serving-cache-")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path, True


def run_benchmark(cfg: BenchConfig, progress: Progress | None) -> dict[str, Any]:
    """Export, plan, load-test; returns the results dict."""

    from opifex.cli._exportables import EXPORTABLES
    from opifex.deploy import Registry, export_function
    from opifex.deploy._platform import HybridPerformancePlatform

    runs = 2 * len(cfg.concurrency) + 2 * len(cfg.httpx_concurrency) + 3 * len(cfg.qp_concurrency)
    total, done = 7 + runs, 0  # 2 exports, 2 plans, OSQP, 2 servers, the load runs

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        LOG.info("%s", label)
        if progress is not None:
            progress(done, total, label)

    started = time.perf_counter()
    cache_dir, fresh_cache = _compilation_cache()
    meta = run_metadata(DISTRIBUTIONS)
    meta.update(
        cpu_count=os.cpu_count(),
        load_average_before=list(os.getloadavg()),
        compilation_cache={"dir": cache_dir, "fresh": fresh_cache},
        client="one client process (asyncio, closed loop, one keep-alive connection per "
        "concurrent request) on the same cores as the server: a minimal HTTP/1.1 client on "
        "asyncio streams, and httpx.AsyncClient for the rows marked httpx",
        server="one uvicorn process per server, the same stack for batched and unbatched: "
        "uvloop, httptools with each answer's head and body in one write "
        "(opifex.deploy._http.http_protocol), the predict endpoint outside Starlette's "
        "middleware",
    )
    family = qp_family.make_family()
    exports: dict[str, Any] = {}
    artifacts = {}
    lm_spec = EXPORTABLES[LM]
    for name, fn, signature in (
        (LM, lm_spec.fn, lm_spec.signature),
        (QP, qp_family.opifex_solver(family), qp_family.signature()),
    ):
        start = time.perf_counter()
        artifacts[name] = export_function(fn, signature, name=name)
        exports[name] = {
            "export_s": time.perf_counter() - start,
            "sha256": artifacts[name].sha256,
            "size": artifacts[name].metadata["size"],
        }
        tick(f"exported {name}")

    platform = HybridPerformancePlatform(
        max_batch_size=cfg.max_batch_size, max_latency_ms=cfg.max_latency_ms, repeats=cfg.repeats
    )
    reports, plans = {}, {}
    samples = {LM: lm_inputs(cfg.seed + 1, 64), QP: {"q": qp_family.sample_q(cfg.seed + 1, 64)}}
    for name in (LM, QP):
        plans[name], reports[name] = platform.plan(artifacts[name], samples[name])
        tick(f"measured {name} in process (plan: batch {plans[name].max_batch_size})")

    pool = max(cfg.requests, cfg.serial_requests)
    lm_pool = lm_inputs(cfg.seed + 2, pool)
    q_pool = qp_family.sample_q(cfg.seed + 3, pool)
    references = {
        LM: direct_outputs(artifacts[LM], lm_pool, platform.buckets),
        QP: direct_outputs(artifacts[QP], {"q": q_pool}, platform.buckets),
    }
    bodies = {LM: instance_bodies(lm_pool), QP: instance_bodies({"q": q_pool})}
    bodies[OSQP] = bodies[QP]
    checks = {
        LM: lambda out, i: lm_wrong(out, references[LM], i, cfg.lm_rtol),
        QP: lambda out, i: qp_wrong(out, references[QP], q_pool, i, cfg, family),
    }
    checks[OSQP] = checks[QP]
    osqp_stats, osqp_x, osqp_solved = osqp_in_process(family, q_pool[: cfg.osqp_solves])
    ours = references[QP]
    n = len(osqp_x)
    gap = np.abs(family.objective(osqp_x, q_pool[:n]) - ours["objective"][:n])
    agreement = {
        "instances": n,
        "max_objective_gap_rel": float(
            np.max(gap / np.maximum(1.0, np.abs(ours["objective"][:n])))
        ),
        "max_violation_opifex": float(np.max(family.violation(ours["x"]))),
        "max_violation_osqp": float(np.max(family.violation(osqp_x))),
        "opifex_not_converged": int(np.sum(~ours["converged"])),
        "osqp_not_solved": int(n - np.sum(osqp_solved)),
        "max_x_difference": float(np.max(np.abs(osqp_x - ours["x"][:n]))),
    }
    tick("OSQP in process")

    batched_size = plans[LM].max_batch_size
    servers: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="opifex-serving-") as tmp:
        registry = Registry(Path(tmp) / "registry")
        for name in (LM, QP):
            registry.promote(name, registry.publish(name, artifacts[name]))
        layouts = (
            ("batched", True, batched_size, False, (LM, QP)),
            ("unbatched", False, 1, True, (LM, QP, OSQP)),
        )
        for label, batching, size, osqp, solvers in layouts:
            server = Server(
                Path(tmp) / "registry", batching=batching, max_batch_size=size,
                max_delay_ms=cfg.max_delay_ms, osqp=osqp, cache_dir=Path(cache_dir),
                log_path=Path(tmp) / f"{label}.log",
            )  # fmt: skip
            with server:
                server.start(cfg.ready_timeout_s)
                servers[label] = {
                    "batching": batching, "max_batch_size": size,
                    "max_delay_ms": cfg.max_delay_ms, "ready_s": server.ready_s,
                    "solvers": list(solvers),
                }  # fmt: skip
                tick(f"{label} server ready in {server.ready_s:.1f} s")
                for solver in solvers:
                    levels = cfg.concurrency if solver == LM else cfg.qp_concurrency
                    plan = [(c, cfg.client) for c in levels]
                    if solver == LM:
                        plan += [(c, "httpx") for c in cfg.httpx_concurrency]
                    for c, client in plan:
                        count = cfg.serial_requests if c == 1 else cfg.requests
                        if client == "httpx":
                            count = cfg.httpx_requests
                        row = load_row(
                            server, label, solver, c, bodies[solver][:count], checks[solver], cfg,
                            client,
                        )  # fmt: skip
                        rows.append(row)
                        tick(
                            f"{solver} {label} c={c} ({client}): {row['throughput_per_s']:.0f}/s, "
                            f"p99 {1e3 * (row['p99_s'] or float('nan')):.1f} ms"
                        )
    if fresh_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["load_average_after"] = list(os.getloadavg())
    results = {
        "benchmark": NAME,
        "meta": meta,
        "config": dataclasses.asdict(cfg),
        "export": exports,
        "platform": reports,
        "servers": servers,
        "load": rows,
        "osqp_in_process": osqp_stats,
        "qp_agreement": agreement,
    }
    results["targets"] = serving_report.targets(results)
    return results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_serving",
        description="opifex.deploy served over HTTP on loopback: micro-batching vs one call "
        "per request, a served parametric QP vs OSQP per request.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke-sized (under a minute)")
    parser.add_argument("--requests", type=int, default=None, help="requests per run (c > 1)")
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="where the JSON and PNG go"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark, print the tables, write JSON + PNG; returns an exit code (0).

    Args:
        argv: command-line options (``["--quick"]`` ...); ``None`` means no options.
        progress: optional ``callback(done, total, label)`` called after every step.
    """
    args = parse_args([] if argv is None else list(argv))
    cfg = quick_config() if args.quick else BenchConfig()
    if args.requests is not None:
        cfg = dataclasses.replace(cfg, requests=args.requests)
    results = run_benchmark(cfg, progress)
    plot = None if args.no_plot else serving_report.write_plot
    write_outputs(
        results, args.output_dir, NAME,
        render=lambda r: serving_report.render_tables(r, sys.stdout), plot=plot,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:], progress=print_progress))
