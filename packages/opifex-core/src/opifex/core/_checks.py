"""Boundary checks: clear ``ValueError`` / ``TypeError`` outside ``jit``, no-ops on tracers.

Every public entry point of an opifex package validates its pytree arguments with these
helpers. Structure and shape checks work under ``jit`` too (shapes are static); value checks
(finiteness) only run on concrete arrays, since a traced value cannot be inspected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_nonempty_pytree(tree: Any, name: str) -> None:
    """Raise ``ValueError`` when ``tree`` has no array leaves.

    Example:
        >>> check_nonempty_pytree({"w": jnp.zeros(2)}, "params")
    """
    if not jax.tree_util.tree_leaves(tree):
        raise ValueError(f"{name} is an empty pytree: expected at least one array leaf")


def check_float_pytree(tree: Any, name: str) -> None:
    """Raise ``TypeError`` unless every leaf of ``tree`` is a floating-point array.

    Example:
        >>> check_float_pytree({"w": jnp.zeros(2)}, "params")
    """
    check_nonempty_pytree(tree, name)
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and isinstance(leaf, float):
            continue
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "(root)"
            raise TypeError(
                f"{name}{where} must be a floating-point array, got {type(leaf).__name__}"
                f" with dtype {dtype}"
            )


def check_finite(tree: Any, name: str) -> None:
    """Raise ``ValueError`` if any concrete leaf of ``tree`` holds NaN or inf.

    Traced leaves are skipped (their values are unknown at trace time).

    Example:
        >>> check_finite(jnp.ones(3), "x0")
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if _is_concrete(leaf) and _has_nonfinite(leaf):
            where = jax.tree_util.keystr(path) or ""
            raise ValueError(f"{name}{where} contains NaN or inf")


def _has_nonfinite(leaf: Any) -> bool:
    # Only inexact leaves can hold NaN / inf; integer, bool and PRNG-key leaves (which numpy
    # cannot even convert) are finite by construction.
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        dtype = np.asarray(leaf).dtype
    if not jnp.issubdtype(dtype, jnp.inexact):
        return False
    return not bool(np.all(np.isfinite(np.asarray(leaf))))


def check_same_structure(tree: Any, reference: Any, name: str, reference_name: str) -> None:
    """Raise ``ValueError`` unless the two pytrees share structure and leaf shapes.

    Example:
        >>> check_same_structure({"a": jnp.zeros(2)}, {"a": jnp.ones(2)}, "grad", "params")
    """
    try:
        chex.assert_trees_all_equal_structs(tree, reference)
        chex.assert_trees_all_equal_shapes(tree, reference)
    except AssertionError as error:
        raise ValueError(
            f"{name} must have the same pytree structure and leaf shapes as {reference_name}: "
            f"{error}"
        ) from None


def check_shape(x: Any, shape: tuple[int | None, ...], name: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``shape`` (``None`` matches any size).

    Example:
        >>> check_shape(jnp.zeros((3, 2)), (None, 2), "points")
    """
    actual = tuple(np.shape(x))
    if len(actual) != len(shape) or any(
        want is not None and want != got for want, got in zip(shape, actual, strict=True)
    ):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {actual}")


def check_scalar_output(value: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a 0-d array (a scalar objective value).

    Example:
        >>> check_scalar_output(jnp.float32(1.0), "fun(x0)")
    """
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must return a scalar, got shape {np.shape(value)}")


def check_choice(value: Any, choices: Iterable[Any], name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``.

    Example:
        >>> check_choice("zoom", ("zoom", "backtracking"), "line_search")
    """
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (or >= 0).

    Example:
        >>> check_positive(1e-3, "tolerance")
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    bad = value < 0 if allow_zero else value <= 0
    if bad or not np.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_int_at_least(value: Any, minimum: int, name: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is an int >= ``minimum``.

    Example:
        >>> check_int_at_least(10, 1, "max_iterations")
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_unknown_options(options: dict[str, Any], known: Iterable[str], name: str) -> None:
    """Raise ``ValueError`` naming any key of ``options`` that is not in ``known``.

    Example:
        >>> check_unknown_options({"tol": 1e-6}, ("tol", "maxiter"), "options")
    """
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {name}: {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
        )
