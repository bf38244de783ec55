"""What XLA's backend optimisations cost and buy on CPU: the test suite's setting against JAX's.

The test suite turns XLA's backend optimisations off (``conftest.py``): it compiles hundreds
of programs and runs few of them for long. This benchmark measures that trade on programs the
suite compiles: for each setting, several fresh processes (XLA reads ``XLA_FLAGS`` once per
process; the persistent compilation cache is off) each time the first call of every program
(tracing + compilation + one run) and the median of its next calls (steady state).

Usage:
    uv run python benchmarks/suite/bench_compile_time.py [--repeats 3] [--output-dir DIR]

Writes ``benchmarks/results/compile_time.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import cpu_model, print_tables, timed_calls, versions, write_outputs

SETTINGS = {
    "JAX's default": "",
    "the test suite's": "--xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true",
}
PROGRAMS = (
    "L-BFGS, Rosenbrock n=10",
    "d/d lambda through L-BFGS (implicit)",
    "Levenberg-Marquardt, NIST Misra1a",
    "RHF SCF, H2O / STO-3G",
)


def _programs() -> list[tuple[str, Any]]:
    """The timed programs: (name, a function returning a JAX array to wait for)."""
    import jax
    import jax.numpy as jnp

    from opifex.quantum import molecule_from_name, run_scf
    from opifex.second_order import get_nist_problem, least_squares, minimize

    def rosenbrock(x):
        return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def objective(x, lam):
        return jnp.sum((x - lam) ** 2) + jnp.sum(x**4)

    implicit_grad = jax.jit(jax.grad(lambda lam: minimize(objective, jnp.zeros(3), lam).params[0]))

    misra = get_nist_problem("Misra1a")
    water = molecule_from_name("H2O")
    return list(
        zip(
            PROGRAMS,
            (
                lambda: minimize(rosenbrock, jnp.zeros(10)).params,
                lambda: implicit_grad(1.0),
                lambda: least_squares(misra.residual_fn, misra.initial_params(1)).params,
                lambda: run_scf(water, "sto-3g").params,
            ),
            strict=True,
        )
    )


def _child() -> None:
    """Time every program in this process; print one JSON line."""
    import jax

    jax.config.update("jax_enable_x64", True)
    out = {}
    for name, program in _programs():
        start = time.perf_counter()
        jax.block_until_ready(program())
        first = time.perf_counter() - start
        steady, _ = timed_calls(program, repeats=5, budget_s=math.inf)
        out[name] = {"first_call_s": first, "steady_s": statistics.median(steady)}
    print(json.dumps(out))


def _run_child(flags: str) -> dict[str, Any]:
    env = {**os.environ, "XLA_FLAGS": flags, "OPIFEX_JAX_CACHE": "0"}
    done = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write and return its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting")
    parser.add_argument(
        "--output-dir", type=Path, default=Path(__file__).resolve().parents[1] / "results"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child()
        return {}
    runs: dict[str, list[dict[str, Any]]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.repeats):  # alternate the settings, so that drift hits both alike
        for setting, flags in SETTINGS.items():
            runs[setting].append(_run_child(flags))
    rows = []
    for name in PROGRAMS:
        row: dict[str, Any] = {"program": name}
        for setting in SETTINGS:
            for key in ("first_call_s", "steady_s"):
                row[f"{setting}: {key}"] = statistics.median(r[name][key] for r in runs[setting])
        rows.append(row)
    results = {
        "benchmark": "compile_time",
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "versions": versions(["jax", "jaxlib"]),
            "config": {"repeats": args.repeats, "settings": SETTINGS},
        },
        "rows": rows,
        "runs": runs,
    }

    def render(results: dict[str, Any]) -> None:
        columns = ["program"]
        for setting in SETTINGS:
            columns += [f"{setting}: first call (s)", f"{setting}: steady (ms)"]
        table = []
        for row in results["rows"]:
            cells = [row["program"]]
            for setting in SETTINGS:
                cells += [
                    f"{row[f'{setting}: first_call_s']:.2f}",
                    f"{1e3 * row[f'{setting}: steady_s']:.2f}",
                ]
            table.append(cells)
        title = f"Median of {args.repeats} fresh processes, {cpu_model()}"
        print_tables([(title, columns, table)], [], sys.stdout)

    write_outputs(results, args.output_dir, "compile_time", render=render, plot=None)
    return results


if __name__ == "__main__":
    main()
