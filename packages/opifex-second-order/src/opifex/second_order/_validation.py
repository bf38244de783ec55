"""Argument checks shared by the public entry points (run outside ``jit``; no-ops on tracers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import (
    check_finite,
    check_float_pytree,
    check_scalar_output,
    replace_config,
)

ConfigT = TypeVar("ConfigT")


def resolve_config(
    config_class: type[ConfigT], config: ConfigT | None, overrides: dict[str, Any]
) -> ConfigT:
    """``config`` (or the default config) with ``overrides`` applied and validated.

    Deprecated field spellings are accepted with a warning (``opifex.core.replace_config``).
    """
    if config is None:
        config = config_class()
    elif not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    return replace_config(config, overrides)


def check_params(x0: Any, name: str = "x0") -> Any:
    """Check that ``x0`` is a non-empty pytree of finite floating arrays; return it as arrays."""
    check_float_pytree(x0, name)
    check_finite(x0, name)
    return jax.tree.map(jnp.asarray, x0)


def check_callable(fun: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``fun`` is callable."""
    if not callable(fun):
        raise TypeError(f"{name} must be callable, got {type(fun).__name__}")


def _check_one_dtype(x0: Any, out_leaves: list, what: str) -> None:
    """Raise ``TypeError`` unless every leaf of ``x0`` and of the output has one float dtype.

    The solvers keep their state in that dtype inside ``lax`` loops: a mix (float32
    parameters, a float64 objective) would otherwise fail deep inside a loop.
    """
    dtypes = {jnp.result_type(leaf) for leaf in jax.tree.leaves(x0)}
    dtypes |= {leaf.dtype for leaf in out_leaves}
    if len(dtypes) > 1:
        names = sorted(str(dtype) for dtype in dtypes)
        raise TypeError(
            f"x0 and {what} must share one floating-point dtype, got {names}; cast x0 (e.g."
            " jax.tree.map(lambda a: a.astype(jnp.float64), x0)) or the output"
        )


def check_objective(fun: Callable[..., Any], x0: Any, args: tuple, name: str = "fun") -> None:
    """Check (abstractly, without running it) that ``fun(x0, *args)`` is a float scalar."""
    check_callable(fun, name)
    out = jax.eval_shape(fun, x0, *args)
    if not hasattr(out, "shape") or isinstance(out, tuple | list | dict):
        raise ValueError(f"{name}(x0, *args) must return a scalar array, got {out!r}")
    check_scalar_output(out, f"{name}(x0, *args)")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name}(x0, *args) must return a floating-point scalar, got {out.dtype}")
    _check_one_dtype(x0, [out], f"{name}(x0, *args)")


def check_residual(
    residual_fn: Callable[..., Any], x0: Any, args: tuple, name: str = "residual_fn"
) -> None:
    """Check (abstractly) that ``residual_fn(x0, *args)`` is a non-empty pytree of float arrays."""
    check_callable(residual_fn, name)
    out = jax.eval_shape(residual_fn, x0, *args)
    leaves = jax.tree.leaves(out)
    if not leaves or sum(int(np.prod(leaf.shape)) for leaf in leaves) == 0:
        raise ValueError(
            f"{name}(x0, *args) must return at least one residual, got shape(s)"
            f" {[leaf.shape for leaf in leaves]}"
        )
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name}(x0, *args) must return floating-point residuals, got {leaf.dtype}"
            )
    _check_one_dtype(x0, leaves, f"{name}(x0, *args)")
