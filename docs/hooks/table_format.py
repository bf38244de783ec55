"""How every benchmark number in the docs is written (shared by the table renderers)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def cell(value: Any) -> str:
    """One table cell: ``None`` as a dash, floats to 4 significant digits, ``|`` escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def seconds(value: float | None) -> str:
    """A duration in ms below one second, else in s; a dash when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def met(value: bool | None) -> str:
    """A target's verdict."""
    return {True: "met", False: "**not met**", None: "not evaluated"}[value]


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    r"""A Markdown table; cells go through the same formatting as every benchmark number.

    Example:
        >>> print(table(["solver", "f"], [["a|b", 1.23456e-9], ["c", None]]))
        | solver | f |
        |---|---|
        | a\|b | 1.235e-09 |
        | c | — |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
