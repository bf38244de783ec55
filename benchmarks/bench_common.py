"""What the second-order and quantum benchmark scripts share: the run environment, timed calls,
the printed tables, the JSON / PNG outputs and the progress line of a script run.

Each script imports this module from ``benchmarks/`` (the CLI loads the scripts by path).
"""

import importlib.metadata
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LOG = logging.getLogger("opifex.benchmarks")
Section = tuple[str, Sequence[str], Sequence[Sequence[str]]]  # (title, columns, rows)


def versions(distributions: Sequence[str]) -> dict[str, str]:
    """Python's version and each distribution's ("not installed" when missing)."""
    out = {"python": platform.python_version()}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def timed_calls(call: Callable[[], Any], repeats: int, budget_s: float) -> tuple[list[float], Any]:
    """Wall times of up to ``repeats`` calls (fewer once ``budget_s`` is spent); the last output.

    Each call is waited for with ``jax.block_until_ready``.
    """
    import jax

    times, out = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return times, out


def run_metadata(distributions: Sequence[str]) -> dict[str, Any]:
    """The date, device, CPU model and versions of a run (the ``meta`` of a results file)."""
    import datetime

    import jax

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": str(jax.devices()[0]),
        "cpu": cpu_model(),
        "versions": versions(distributions),
    }


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_tables(
    sections: Sequence[Section], lines: Sequence[str], stream: Any, left_columns: int = 1
) -> None:
    """Print tables (rich if available, else plain text), then ``lines``.

    Args:
        sections: ``(title, columns, rows)`` per table; cells are strings.
        lines: printed after the tables, verbatim.
        stream: where to print.
        left_columns: how many leading columns are left-aligned (the rest right-aligned).
    """
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for title, columns, rows in sections:
            widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
            print(f"\n{title}", file=stream)
            for line in (columns, *rows):
                print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)), file=stream)
        for line in lines:
            print(line, file=stream)
        return
    console = Console(file=stream, width=140)
    for title, columns, rows in sections:
        table = Table(title=title)
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i < left_columns else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for line in lines:
        console.print(line, markup=False)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN / inf).

    Example:
        >>> json_safe({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_outputs(
    results: dict[str, Any],
    output_dir: Path,
    name: str,
    *,
    render: Callable[[dict[str, Any]], None],
    plot: Callable[[dict[str, Any], Path], None] | None,
) -> None:
    """Make ``results`` ``json_safe``; write ``<name>.json``, print it, plot ``<name>.png``."""
    results = json_safe(results)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=1, default=_default) + "\n")
    render(results)
    if plot is not None:
        plot(results, output_dir / f"{name}.png")
    LOG.info("wrote %s", json_path)


def print_progress(done: int, total: int, label: str) -> None:
    """The progress line of a script run from the shell (the CLI draws a bar instead)."""
    print(f"[{done:3d}/{total}] {label}", file=sys.stderr, flush=True)
