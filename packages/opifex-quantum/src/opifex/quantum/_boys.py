"""The Boys function ``F_n(T) = int_0^1 t^(2n) exp(-T t^2) dt`` for all orders at once.

Below ``T = 30`` every order comes from a Taylor expansion around the nearest point of a table
(spacing 0.05, seven terms, using ``dF_n/dT = -F_(n+1)``). From ``T = 30`` on,
``F_0 = sqrt(pi / T) / 2`` (``erf(sqrt(T))`` differs from 1 by 1e-14 at most there) and the
upward recursion ``F_(n+1) = ((2n + 1) F_n - exp(-T)) / (2T)``, stable there, give the rest
(unrolled into a small matrix product). The table is built once in numpy from
the everywhere-positive series ``F_n(T) = exp(-T) sum_k (2T)^k / ((2n+1)(2n+3)...(2n+2k+1))``.
A ``custom_jvp`` gives the exact derivative ``dF_n/dT = -F_(n+1)`` (finite at ``T = 0``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

MAX_ORDER = 24
_SPACING = 0.05
_SWITCH = 30.0
_TAYLOR_TERMS = 7
_SERIES_TERMS = 240


@functools.cache
def _table() -> np.ndarray:
    """``F_n(T_i)`` on the grid ``T_i = i * _SPACING`` for every order the Taylor step reads."""
    t = np.arange(round(_SWITCH / _SPACING) + 2) * _SPACING
    n = np.arange(MAX_ORDER + _TAYLOR_TERMS + 8, dtype=np.float64)
    k = np.arange(_SERIES_TERMS, dtype=np.float64)
    # term_k / term_(k-1) = 2T / (2n + 2k + 1); all terms are positive, so the sum is accurate
    ratios = 2 * t[:, None, None] / (2 * n[None, :, None] + 2 * k[None, None, 1:] + 1)
    terms = np.concatenate([np.ones((t.size, n.size, 1)), np.cumprod(ratios, axis=-1)], axis=-1) / (
        2 * n[None, :, None] + 1
    )
    return np.exp(-t)[:, None] * terms.sum(-1)


@functools.cache
def _taylor_table(n_max: int) -> np.ndarray:
    """``(grid, terms, n_max + 1)``: ``F_(n+k)(T_i) / k!``, Taylor coefficients of every order."""
    k = np.arange(_TAYLOR_TERMS)
    factorials = np.array([math.factorial(j) for j in k], dtype=np.float64)
    return _table()[:, k[:, None] + np.arange(n_max + 1)] / factorials[:, None]


@functools.cache
def _upward_coefficients(n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The upward recursion unrolled, with ``x = 1 / (2T)``.

    ``F_n = (2n-1)!! x^n F_0 - exp(-T) sum_(m=1..n) (2n-1)!! / (2n-2m+1)!! x^m``.

    Returns ``(2n-1)!!`` per order and the ``(n_max + 1, n_max + 1)`` matrix of the sum's
    coefficients over ``m`` (rows) and ``n`` (columns).
    """
    double_factorial = np.ones(n_max + 2)  # double_factorial[n] = (2n - 1)!!
    for n in range(1, n_max + 2):
        double_factorial[n] = double_factorial[n - 1] * (2 * n - 1)
    coefficients = np.zeros((n_max + 1, n_max + 1))
    for n in range(n_max + 1):
        for m in range(1, n + 1):
            coefficients[m, n] = double_factorial[n] / double_factorial[n - m + 1]
    return double_factorial[: n_max + 1], coefficients


def _boys_values(n_max: int, t: jax.Array) -> jax.Array:
    """``t.shape + (n_max + 1,)``; no chain between orders, so XLA fuses without recomputing."""
    # below the switch: Taylor step around the nearest grid point, every order at once (Horner)
    table = _taylor_table(n_max)
    index = jnp.clip(jnp.round(t / _SPACING).astype(jnp.int32), 0, table.shape[0] - 1)
    delta = (index * _SPACING - t)[..., None]
    coefficients = jnp.asarray(table)[index]
    small = coefficients[..., _TAYLOR_TERMS - 1, :]
    for k in range(_TAYLOR_TERMS - 2, -1, -1):
        small = small * delta + coefficients[..., k, :]
    # from the switch on: F_0 from erf and the upward recursion, unrolled
    safe = jnp.maximum(t, _SWITCH)
    x = 0.5 / safe
    f0 = (0.5 * jnp.sqrt(jnp.pi / safe))[..., None]  # erf(sqrt(T)) = 1 - 1e-14 from T = 30
    exp_t = jnp.exp(-safe)[..., None]
    double_factorial, coefficients = _upward_coefficients(n_max)
    diagonal = np.diag(double_factorial)
    # Horner in x over the powers m, every order n at once
    large = f0 * diagonal[n_max] - exp_t * coefficients[n_max]
    for m in range(n_max - 1, -1, -1):
        large = large * x[..., None] + (f0 * diagonal[m] - exp_t * coefficients[m])
    return jnp.where((t < _SWITCH)[..., None], small, large)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _boys(n_max: int, t: jax.Array) -> jax.Array:
    return _boys_values(n_max, t)


@_boys.defjvp
def _boys_jvp(n_max: int, primals: tuple, tangents: tuple) -> tuple:
    (t,), (t_dot,) = primals, tangents
    extended = _boys(n_max + 1, t)
    return extended[..., :-1], -extended[..., 1:] * t_dot[..., None]


def boys(n_max: int, t: jax.Array) -> jax.Array:
    """The Boys functions ``F_0(T), ..., F_(n_max)(T)``, elementwise over ``T >= 0``.

    Accurate to about 1e-14 relative in float64 for every ``n <= MAX_ORDER`` over ``T`` in
    ``[0, 1e4]`` and beyond; differentiable to any order, with ``dF_n/dT = -F_(n+1)`` exactly.

    Args:
        n_max: the highest order (a static int, ``0 <= n_max <= MAX_ORDER``).
        t: the argument ``T >= 0``, any shape.

    Returns:
        An array of shape ``t.shape + (n_max + 1,)``.

    Raises:
        ValueError: if ``n_max`` is not an int in ``[0, MAX_ORDER]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     f = boys(2, jnp.array([0.0, 1.0]))
        >>> [round(float(x), 10) for x in f[0]], round(float(f[1, 0]), 10)
        ([1.0, 0.3333333333, 0.2], 0.7468241328)
    """
    if isinstance(n_max, bool) or not isinstance(n_max, int) or not 0 <= n_max <= MAX_ORDER:
        raise ValueError(f"n_max must be an int in [0, {MAX_ORDER}], got {n_max!r}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(float)
    return _boys(n_max, t)
