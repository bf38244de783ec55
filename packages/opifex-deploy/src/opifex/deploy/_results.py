"""Benchmark result files summarised for the dashboard, whatever their shape.

Every benchmark writes ``benchmarks/results/<name>.json``: an object with a ``"benchmark"``
name, a ``"meta"`` object (date, device, versions, ...) and results of its own shape. The
dashboard shows each file as its name, date and device, a line per top-level entry, and one
table: the first of ``"rows"``, ``"summary"``, any other list of objects, or an object of
objects (a row per key), cut to a few rows and columns. A file that is not JSON, or not an
object, is listed with its error.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

MAX_ROWS = 12
MAX_COLUMNS = 8
MAX_TEXT = 48
MAX_FILE_BYTES = 32 * 2**20
_TABLE_KEYS = ("rows", "summary")


def _text(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def format_cell(value: Any) -> str:
    """A short text for one value: numbers to 4 significant digits, nested values sized.

    Example:
        >>> [format_cell(v) for v in (0.000123456, 12345678.9, 3, True, None, [1, 2], {"a": 1})]
        ['0.0001235', '1.235e+07', '3', 'true', '—', '[2 items]', '{1 key}']
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".4g") if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return f"[{len(value)} item{'s' * (len(value) != 1)}]"
    if isinstance(value, dict):
        return f"{{{len(value)} key{'s' * (len(value) != 1)}}}"
    return _text(repr(value))


def _describe(value: Any) -> str:
    """One line about a top-level entry."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"table of {len(value)} row{'s' * (len(value) != 1)}"
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:6])
        more = ", …" if len(value) > 6 else ""
        return _text(f"{len(value)} entries: {keys}{more}", 96) if value else "{}"
    return format_cell(value)


def _table(key: str, value: Any) -> dict[str, Any] | None:
    """``value`` as a table ``{"key", "columns", "rows", "num_rows"}``, if it is one."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        records = value
        columns: list[str] = []
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        records = [{"": name, **row} for name, row in value.items()]
        columns = [""]
    else:
        return None
    for record in records:
        for column in record:
            if column not in columns:
                columns.append(str(column))
    columns = columns[:MAX_COLUMNS]
    rows = [[format_cell(record.get(c)) for c in columns] for record in records[:MAX_ROWS]]
    return {"key": key, "columns": columns, "rows": rows, "num_rows": len(records)}


def _first_table(data: dict[str, Any]) -> dict[str, Any] | None:
    keys = [k for k in _TABLE_KEYS if k in data]
    keys += [k for k in data if k not in _TABLE_KEYS and k not in ("benchmark", "meta")]
    for key in keys:
        table = _table(key, data[key])
        if table is not None:
            return table
    return None


def _meta_field(meta: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = meta.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return _text(str(value), 64)
    return None


def summarise(path: str | os.PathLike, data: Any) -> dict[str, Any]:
    """The dashboard's summary of one results file already parsed to ``data``.

    Returns:
        ``{"file", "name", "date", "device", "entries", "table", "error"}``: ``entries`` a list
        of ``{"key", "summary"}``, ``table`` as described in the module doc (or ``None``).

    Example:
        >>> data = {"benchmark": "demo", "meta": {"date": "2026-12-07", "device": "cpu:0"},
        ...         "rows": [{"solver": "lbfgs", "time_s": 0.0123456}], "passed": True}
        >>> summary = summarise("demo.json", data)
        >>> summary["name"], summary["date"], summary["device"]
        ('demo', '2026-12-07', 'cpu:0')
        >>> [(entry["key"], entry["summary"]) for entry in summary["entries"]]
        [('rows', 'table of 1 row'), ('passed', 'true')]
        >>> summary["table"]["columns"], summary["table"]["rows"]
        (['solver', 'time_s'], [['lbfgs', '0.01235']])
    """
    path = Path(path)
    summary: dict[str, Any] = {
        "file": path.name,
        "name": path.stem,
        "date": None,
        "device": None,
        "entries": [],
        "table": None,
        "error": None,
    }
    if not isinstance(data, dict):
        summary["error"] = f"not a JSON object but {type(data).__name__}"
        return summary
    if isinstance(data.get("benchmark"), str):
        summary["name"] = _text(data["benchmark"], 96)
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    summary["date"] = _meta_field(meta, "date", "time", "timestamp", "created")
    summary["device"] = _meta_field(meta, "device", "jax_backend", "cpu", "platform")
    summary["entries"] = [
        {"key": _text(str(key)), "summary": _describe(value)}
        for key, value in data.items()
        if key not in ("benchmark", "meta")
    ]
    summary["table"] = _first_table(data)
    return summary


class ResultsReader:
    """Summaries of the ``*.json`` files of a directory, re-read only when a file changes.

    Args:
        directory: the results directory (``benchmarks/results``); it need not exist.

    Example:
        >>> import json, tempfile
        >>> directory = Path(tempfile.mkdtemp())
        >>> _ = (directory / "a.json").write_text(json.dumps({"benchmark": "a", "rows": []}))
        >>> _ = (directory / "broken.json").write_text("{")
        >>> [(s["name"], s["error"] is None) for s in ResultsReader(directory).read()]
        [('a', True), ('broken', False)]
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def read(self) -> list[dict[str, Any]]:
        """One summary per ``*.json`` file, sorted by file name (``[]`` without the directory)."""
        try:
            paths = sorted(p for p in self.directory.glob("*.json") if p.is_file())
        except OSError:
            return []
        summaries = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue  # removed meanwhile
            key = (stat.st_mtime_ns, stat.st_size)
            with self._lock:
                cached = self._cache.get(path.name)
            if cached is None or cached[0] != key:
                cached = (key, self._summarise(path, stat))
                with self._lock:
                    self._cache[path.name] = cached
            summaries.append(cached[1])
        with self._lock:  # forget files that are gone
            for name in set(self._cache) - {p.name for p in paths}:
                del self._cache[name]
        return summaries

    @staticmethod
    def _summarise(path: Path, stat: os.stat_result) -> dict[str, Any]:
        modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.UTC)
        if stat.st_size > MAX_FILE_BYTES:
            summary = summarise(path, None)
            summary["error"] = f"{stat.st_size} bytes: over the {MAX_FILE_BYTES} bytes shown"
        else:
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError, RecursionError) as error:
                summary = summarise(path, None)
                summary["error"] = _text(f"unreadable: {type(error).__name__}: {error}", 160)
            else:
                summary = summarise(path, data)
        summary["date"] = summary["date"] or modified.isoformat(timespec="seconds")
        return summary
