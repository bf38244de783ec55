"""Field checks shared by the family dataclasses (run once, in ``__post_init__``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from opifex.core._checks import check_int_at_least


def check_real(value: Any, name: str) -> None:
    """Raise ``TypeError`` / ``ValueError`` unless ``value`` is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_interval(
    value: Any, name: str, *, lower: float | None = None, strict: bool = False
) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair with ``low <= high`` (and ``low > lower`` if given).

    Returns the pair as a tuple of floats (so the owning dataclass stays hashable).
    """
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    check_real(low, f"{name}[0]")
    check_real(high, f"{name}[1]")
    if low > high:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    if lower is not None and (low <= lower if strict else low < lower):
        bound = f"> {lower}" if strict else f">= {lower}"
        raise ValueError(f"{name} must lie in values {bound}, got {value!r}")
    return (float(low), float(high))


def check_sizes(value: Any, name: str, *, min_length: int) -> tuple[int, ...]:
    """Validate a sequence of layer sizes (ints >= 1); return it as a tuple."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    sizes = tuple(value)
    if len(sizes) < min_length:
        raise ValueError(f"{name} must have at least {min_length} entries, got {value!r}")
    for i, size in enumerate(sizes):
        check_int_at_least(size, 1, f"{name}[{i}]")
    return tuple(int(s) for s in sizes)


def set_field(obj: Any, name: str, value: Any) -> None:
    """Normalise a field of a frozen dataclass inside ``__post_init__``."""
    object.__setattr__(obj, name, value)
