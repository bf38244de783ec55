"""Argument checks shared by the learned optimisers (static: they also run on tracers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from opifex.core import check_same_structure, check_shape


def check_array(x: Any, shape: tuple[int | None, ...], name: str) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point array, ``ValueError`` on its shape."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not hasattr(x, "shape") or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array, got {type(x).__name__}"
            + (f" with dtype {dtype}" if dtype is not None else "")
        )
    check_shape(x, shape, name)


def check_keys(tree: Any, keys: Sequence[str], name: str) -> None:
    """Raise ``TypeError`` unless ``tree`` is a mapping with exactly the string ``keys``."""
    if not isinstance(tree, Mapping) or set(tree) != set(keys):
        found = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise TypeError(f"{name} must be a dict with keys {sorted(keys)}, got {found}")


def check_layers(layers: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``layers`` is a non-empty list or tuple."""
    if not isinstance(layers, list | tuple) or not layers:
        raise TypeError(f"{name} must be a non-empty list of layers, got {layers!r:.80}")


def check_decays(values: Any, name: str, *, allow_empty: bool = False) -> tuple[float, ...]:
    """Validate a sequence of decay rates in ``(0, 1)``; return it as a tuple of floats."""
    decays = _floats(values, name, allow_empty=allow_empty)
    for i, beta in enumerate(decays):
        if not 0.0 < beta < 1.0:
            raise ValueError(f"{name}[{i}] must lie in (0, 1), got {beta!r}")
    return decays


def check_timescales(values: Any, name: str) -> tuple[float, ...]:
    """Validate a (possibly empty) sequence of finite numbers > 0; return it as a tuple."""
    scales = _floats(values, name, allow_empty=True)
    for i, scale in enumerate(scales):
        if not (scale > 0.0 and np.isfinite(scale)):
            raise ValueError(f"{name}[{i}] must be a finite number > 0, got {scale!r}")
    return scales


def _floats(values: Any, name: str, *, allow_empty: bool) -> tuple[float, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise TypeError(f"{name}[{i}] must be a number, got {type(v).__name__}")
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(float(v) for v in values)


def check_update_args(updates: Any, params: Any, who: str, *, needs_params: bool) -> None:
    """Check the arguments of an ``update`` call (structure and shapes only)."""
    if params is None:
        if needs_params:
            raise ValueError(f"{who} needs params: pass them as the third argument")
        return
    check_same_structure(updates, params, "updates", "params")
