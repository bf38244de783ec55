"""The Moré, Garbow & Hillstrom (1981) nonlinear least-squares test problems in JAX.

Moré, J. J., Garbow, B. S. & Hillstrom, K. E. (1981), "Testing unconstrained optimization
software", ACM Transactions on Mathematical Software 7(1):17-41 (MGH below) defines 35
problems as residual vectors ``r(x)`` of length ``m`` in ``n`` unknowns; the objective is the
plain sum of squares ``f(x) = sum_i r_i(x)**2`` (no factor 1/2, unlike
``scipy.optimize.least_squares``' ``cost``). This module gives all 35, each as a
``LeastSquaresProblem`` with the standard starting point, the published optimal value(s) and,
where it is known, a minimiser.

Problem sizes follow MGH where the paper fixes them. Where ``n`` or ``m`` is variable we use the
sizes for which MGH (or the MINPACK-1 test runs of the same authors) publish the optimum: Watson
with ``n = 6`` and ``n = 9``, Penalty I / II and the ``n``-dimensional systems with ``n = 10``,
Chebyquad with ``n = 8``, the linear functions with ``n = 10, m = 20``.

Several problems have more than one local minimum (or infimum) reachable from the standard
start; we list them in ``local_optimum_values`` (all from MGH except the trigonometric one):

* Freudenstein & Roth: ``f = 0`` at ``(5, 4)``; local ``f = 48.9842...`` at
  ``(11.41..., -0.8968...)``, where most local methods end.
* Bard: ``f = 8.21487e-3``; ``f = 17.4286...`` as ``x2, x3 -> -inf``.
* Kowalik & Osborne: ``f = 3.07505e-4``; ``f = 1.02734e-3`` as ``x1 -> inf``, ``x3, x4 -> -inf``.
* Biggs EXP6 (``m = 13``): ``f = 0`` at ``(1, 10, 1, 5, 4, 3)``; local ``f = 5.65565e-3``.
* Brown almost-linear: ``f = 0``; local ``f = 1`` at ``(0, ..., 0, n + 1)``.
* Trigonometric (``n = 10``): ``f = 0`` (MGH); from the standard start MINPACK's lm
  (``scipy.optimize.least_squares(method="lm")``) ends at a local minimum
  ``f = 2.79506e-5``, which we computed (it is not printed in MGH).

Every residual function is pure JAX, works for any floating dtype (the computation follows the
dtype of ``x``; use float64 to reproduce the published digits) and under ``jit``, ``vmap`` and
``jax.jacfwd``. A wrong input shape raises ``ValueError`` (shapes are static, so also under jit).

Example:
    >>> import jax
    >>> from opifex.second_order._mgh import get_mgh_problem
    >>> with jax.enable_x64(True):
    ...     problem = get_mgh_problem("rosenbrock")
    ...     round(float(problem.value(problem.initial_params())), 10)
    24.2
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

_MGH = "Moré, Garbow & Hillstrom (1981), ACM TOMS 7(1):17-41"


@dataclasses.dataclass(frozen=True)
class LeastSquaresProblem:
    """One nonlinear least-squares test problem: minimise ``sum(residual_fn(x) ** 2)``.

    A static, hashable description (arrays are stored as tuples of Python floats), so a problem
    can be a ``jit`` static argument. ``residual_fn`` maps an ``(n,)`` array to an ``(m,)``
    array in the dtype of its input.

    Attributes:
        name: short identifier, e.g. ``"rosenbrock"``; ``get_mgh_problem(name)`` returns it.
        residual_fn: ``x (n,) -> r (m,)``, pure JAX.
        x0: the standard starting point (length ``n``).
        num_residuals: ``m``.
        optimum_value: the published optimal ``f = sum r**2`` (the global minimum where known).
        optimum_x: a point where ``f == optimum_value`` (``None`` if no finite minimiser is
            known, e.g. when the infimum is reached only at infinity).
        source: where the definition and the optimal values come from.
        local_optimum_values: published values of other local minima (or infima) that a local
            method can end at from ``x0``.
        initial_value: the published ``f(x0)`` (``None`` if not published).
        mgh_number: the problem's number in MGH (1-35).
        notes: anything a user comparing solvers should know.
    """

    name: str
    residual_fn: Callable[[jax.Array], jax.Array]
    x0: tuple[float, ...]
    num_residuals: int
    optimum_value: float
    optimum_x: tuple[float, ...] | None = None
    source: str = _MGH
    local_optimum_values: tuple[float, ...] = ()
    initial_value: float | None = None
    mgh_number: int = 0
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.x0:
            raise ValueError(f"LeastSquaresProblem {self.name!r}: x0 is empty")
        if self.num_residuals < len(self.x0):
            raise ValueError(
                f"LeastSquaresProblem {self.name!r}: num_residuals={self.num_residuals} must be"
                f" >= n={len(self.x0)}"
            )
        if self.optimum_x is not None and len(self.optimum_x) != len(self.x0):
            raise ValueError(
                f"LeastSquaresProblem {self.name!r}: optimum_x has length {len(self.optimum_x)},"
                f" expected n={len(self.x0)}"
            )

    @property
    def num_params(self) -> int:
        """``n``, the number of unknowns."""
        return len(self.x0)

    @property
    def optimum_values(self) -> tuple[float, ...]:
        """``optimum_value`` followed by ``local_optimum_values``."""
        return (self.optimum_value, *self.local_optimum_values)

    def initial_params(self, dtype: jnp.dtype | None = None) -> jax.Array:
        """``x0`` as a JAX array (float64 when x64 is enabled, unless ``dtype`` is given)."""
        return jnp.asarray(self.x0, dtype=dtype if dtype is not None else float)

    def value(self, x: jax.Array) -> jax.Array:
        """``f(x) = sum(residual_fn(x) ** 2)`` (0-d array)."""
        r = self.residual_fn(x)
        return jnp.sum(r * r)


# --------------------------------------------------------------------------- helpers


def _check_x(x: jax.Array, name: str, n: int | None = None, *, even: int = 1) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name}: x must be a 1-D array, got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name}: x must have shape ({n},), got {x.shape}")
    if x.shape[0] == 0 or x.shape[0] % even:
        raise ValueError(
            f"{name}: the length of x must be a positive multiple of {even}, got {x.shape[0]}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(float)
    return x


def _c(values: np.ndarray | float, x: jax.Array) -> jax.Array:
    """A float64 numpy constant in the dtype of ``x``."""
    return jnp.asarray(values, dtype=x.dtype)


# --------------------------------------------------------------------------- 1-19: fixed n


def _rosenbrock(x: jax.Array) -> jax.Array:
    x = _check_x(x, "rosenbrock", 2)
    return jnp.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def _freudenstein_roth(x: jax.Array) -> jax.Array:
    x = _check_x(x, "freudenstein_roth", 2)
    x1, x2 = x[0], x[1]
    return jnp.stack(
        [
            -13.0 + x1 + ((5.0 - x2) * x2 - 2.0) * x2,
            -29.0 + x1 + ((x2 + 1.0) * x2 - 14.0) * x2,
        ]
    )


def _powell_badly_scaled(x: jax.Array) -> jax.Array:
    x = _check_x(x, "powell_badly_scaled", 2)
    return jnp.stack([1e4 * x[0] * x[1] - 1.0, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])


def _brown_badly_scaled(x: jax.Array) -> jax.Array:
    x = _check_x(x, "brown_badly_scaled", 2)
    return jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0])


_BEALE_Y = np.array([1.5, 2.25, 2.625])


def _beale(x: jax.Array) -> jax.Array:
    x = _check_x(x, "beale", 2)
    i = _c(np.arange(1.0, 4.0), x)
    return _c(_BEALE_Y, x) - x[0] * (1.0 - x[1] ** i)


def _jennrich_sampson(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "jennrich_sampson", 2)
    i = _c(np.arange(1.0, m + 1.0), x)
    return 2.0 + 2.0 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1]))


def _helical_valley(x: jax.Array) -> jax.Array:
    x = _check_x(x, "helical_valley", 3)
    x1, x2, x3 = x[0], x[1], x[2]
    # MGH: theta = atan(x2/x1)/(2 pi) for x1 > 0 and atan(x2/x1)/(2 pi) + 1/2 for x1 < 0, i.e.
    # atan2 / (2 pi) taken in (-1/4, 3/4].
    theta = jnp.arctan2(x2, x1) / (2.0 * math.pi)
    theta = jnp.where(theta < -0.25, theta + 1.0, theta)
    return jnp.stack([10.0 * (x3 - 10.0 * theta), 10.0 * (jnp.sqrt(x1**2 + x2**2) - 1.0), x3])


_BARD_Y = np.array(
    [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]
)


def _bard(x: jax.Array) -> jax.Array:
    x = _check_x(x, "bard", 3)
    u = np.arange(1.0, 16.0)
    v = 16.0 - u
    w = np.minimum(u, v)
    return _c(_BARD_Y, x) - (x[0] + _c(u, x) / (_c(v, x) * x[1] + _c(w, x) * x[2]))


_GAUSSIAN_Y = np.array(
    [
        0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
        0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009,
    ]
)  # fmt: skip


def _gaussian(x: jax.Array) -> jax.Array:
    x = _check_x(x, "gaussian", 3)
    t = _c((8.0 - np.arange(1.0, 16.0)) / 2.0, x)
    return x[0] * jnp.exp(-0.5 * x[1] * (t - x[2]) ** 2) - _c(_GAUSSIAN_Y, x)


_MEYER_Y = np.array(
    [
        34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0,
        8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0,
    ]
)  # fmt: skip


def _meyer(x: jax.Array) -> jax.Array:
    x = _check_x(x, "meyer", 3)
    t = _c(45.0 + 5.0 * np.arange(1.0, 17.0), x)
    return x[0] * jnp.exp(x[1] / (t + x[2])) - _c(_MEYER_Y, x)


def _gulf(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "gulf", 3)
    t_np = np.arange(1.0, m + 1.0) / 100.0
    y = _c(25.0 + (-50.0 * np.log(t_np)) ** (2.0 / 3.0), x)
    # MGH print "|y_i m i x_2|"; Algorithm 566 (the authors' code) has |y_i - x_2|.
    return jnp.exp(-(jnp.abs(y - x[1]) ** x[2]) / x[0]) - _c(t_np, x)


def _box_3d(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "box_3d", 3)
    t_np = 0.1 * np.arange(1.0, m + 1.0)
    t = _c(t_np, x)
    c = _c(np.exp(-t_np) - np.exp(-10.0 * t_np), x)
    return jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * c


def _powell_singular(x: jax.Array) -> jax.Array:
    x = _check_x(x, "powell_singular", 4)
    return _powell_blocks(x.reshape(1, 4))


def _powell_blocks(b: jax.Array) -> jax.Array:
    x1, x2, x3, x4 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    r = jnp.stack(
        [
            x1 + 10.0 * x2,
            math.sqrt(5.0) * (x3 - x4),
            (x2 - 2.0 * x3) ** 2,
            math.sqrt(10.0) * (x1 - x4) ** 2,
        ],
        axis=1,
    )
    return r.reshape(-1)


def _wood(x: jax.Array) -> jax.Array:
    x = _check_x(x, "wood", 4)
    x1, x2, x3, x4 = x[0], x[1], x[2], x[3]
    return jnp.stack(
        [
            10.0 * (x2 - x1**2),
            1.0 - x1,
            math.sqrt(90.0) * (x4 - x3**2),
            1.0 - x3,
            math.sqrt(10.0) * (x2 + x4 - 2.0),
            (x2 - x4) / math.sqrt(10.0),
        ]
    )


_KOWALIK_Y = np.array(
    [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
)
_KOWALIK_U = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def _kowalik_osborne(x: jax.Array) -> jax.Array:
    x = _check_x(x, "kowalik_osborne", 4)
    u = _c(_KOWALIK_U, x)
    return _c(_KOWALIK_Y, x) - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def _brown_dennis(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "brown_dennis", 4)
    t_np = np.arange(1.0, m + 1.0) / 5.0
    t = _c(t_np, x)
    a = x[0] + t * x[1] - _c(np.exp(t_np), x)
    b = x[2] + x[3] * _c(np.sin(t_np), x) - _c(np.cos(t_np), x)
    return a**2 + b**2


_OSBORNE1_Y = np.array(
    [
        0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
        0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
        0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406,
    ]
)  # fmt: skip


def _osborne1(x: jax.Array) -> jax.Array:
    x = _check_x(x, "osborne1", 5)
    t = _c(10.0 * np.arange(33.0), x)
    model = x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4])
    return _c(_OSBORNE1_Y, x) - model


def _biggs_exp6(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "biggs_exp6", 6)
    t_np = 0.1 * np.arange(1.0, m + 1.0)
    y = _c(np.exp(-t_np) - 5.0 * np.exp(-10.0 * t_np) + 3.0 * np.exp(-4.0 * t_np), x)
    t = _c(t_np, x)
    return x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1]) + x[5] * jnp.exp(-t * x[4]) - y


_OSBORNE2_Y = np.array(
    [
        1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746,
        0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649,
        0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395,
        0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653,
        0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739,
        0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054,
    ]
)  # fmt: skip


def _osborne2(x: jax.Array) -> jax.Array:
    x = _check_x(x, "osborne2", 11)
    t = _c(np.arange(65.0) / 10.0, x)
    model = (
        x[0] * jnp.exp(-t * x[4])
        + x[1] * jnp.exp(-((t - x[8]) ** 2) * x[5])
        + x[2] * jnp.exp(-((t - x[9]) ** 2) * x[6])
        + x[3] * jnp.exp(-((t - x[10]) ** 2) * x[7])
    )
    return _c(_OSBORNE2_Y, x) - model


# --------------------------------------------------------------------------- 20-35: variable n


def _watson(x: jax.Array) -> jax.Array:
    x = _check_x(x, "watson")
    n = x.shape[0]
    t = np.arange(1.0, 30.0) / 29.0
    j = np.arange(1.0, n + 1.0)
    powers = t[:, None] ** (j[None, :] - 1.0)  # t_i^(j-1), (29, n)
    dpowers = np.zeros_like(powers)  # (j-1) t_i^(j-2)
    dpowers[:, 1:] = (j[None, 1:] - 1.0) * t[:, None] ** (j[None, 1:] - 2.0)
    s1 = _c(dpowers, x) @ x
    s2 = _c(powers, x) @ x
    return jnp.concatenate([s1 - s2**2 - 1.0, jnp.stack([x[0], x[1] - x[0] ** 2 - 1.0])])


def _extended_rosenbrock(x: jax.Array) -> jax.Array:
    x = _check_x(x, "extended_rosenbrock", even=2)
    odd, even = x[0::2], x[1::2]
    return jnp.stack([10.0 * (even - odd**2), 1.0 - odd], axis=1).reshape(-1)


def _extended_powell_singular(x: jax.Array) -> jax.Array:
    x = _check_x(x, "extended_powell_singular", even=4)
    return _powell_blocks(x.reshape(-1, 4))


def _penalty1(x: jax.Array) -> jax.Array:
    x = _check_x(x, "penalty1")
    return jnp.concatenate([math.sqrt(1e-5) * (x - 1.0), jnp.sum(x**2)[None] - 0.25])


def _penalty2(x: jax.Array) -> jax.Array:
    x = _check_x(x, "penalty2")
    n = x.shape[0]
    sa = math.sqrt(1e-5)
    i = np.arange(2.0, n + 1.0)
    y = _c(np.exp(i / 10.0) + np.exp((i - 1.0) / 10.0), x)
    e = jnp.exp(x / 10.0)
    weights = _c(np.arange(n, 0.0, -1.0), x)  # n - j + 1
    return jnp.concatenate(
        [
            (x[0] - 0.2)[None],
            sa * (e[1:] + e[:-1] - y),
            sa * (e[1:] - math.exp(-0.1)),
            (jnp.sum(weights * x**2) - 1.0)[None],
        ]
    )


def _variably_dimensioned(x: jax.Array) -> jax.Array:
    x = _check_x(x, "variably_dimensioned")
    s = jnp.sum(_c(np.arange(1.0, x.shape[0] + 1.0), x) * (x - 1.0))
    return jnp.concatenate([x - 1.0, jnp.stack([s, s**2])])


def _trigonometric(x: jax.Array) -> jax.Array:
    x = _check_x(x, "trigonometric")
    n = x.shape[0]
    i = _c(np.arange(1.0, n + 1.0), x)
    cx = jnp.cos(x)
    return n - jnp.sum(cx) + i * (1.0 - cx) - jnp.sin(x)


def _brown_almost_linear(x: jax.Array) -> jax.Array:
    x = _check_x(x, "brown_almost_linear")
    n = x.shape[0]
    linear = x[:-1] + jnp.sum(x) - (n + 1.0)
    return jnp.concatenate([linear, (jnp.prod(x) - 1.0)[None]])


def _grid(n: int) -> tuple[float, np.ndarray]:
    h = 1.0 / (n + 1.0)
    return h, h * np.arange(1.0, n + 1.0)


def _discrete_boundary_value(x: jax.Array) -> jax.Array:
    x = _check_x(x, "discrete_boundary_value")
    h, t_np = _grid(x.shape[0])
    padded = jnp.pad(x, 1)  # x_0 = x_{n+1} = 0
    return 2.0 * x - padded[:-2] - padded[2:] + 0.5 * h**2 * (x + _c(t_np, x) + 1.0) ** 3


def _discrete_integral_equation(x: jax.Array) -> jax.Array:
    x = _check_x(x, "discrete_integral_equation")
    h, t_np = _grid(x.shape[0])
    t = _c(t_np, x)
    q = (x + t + 1.0) ** 3
    lower = jnp.cumsum(t * q)  # sum_{j <= i} t_j q_j
    upper_all = jnp.cumsum(((1.0 - t) * q)[::-1])[::-1]  # sum_{j >= i} (1 - t_j) q_j
    upper = jnp.concatenate([upper_all[1:], jnp.zeros((1,), x.dtype)])  # sum_{j > i}
    return x + 0.5 * h * ((1.0 - t) * lower + t * upper)


def _broyden_tridiagonal(x: jax.Array) -> jax.Array:
    x = _check_x(x, "broyden_tridiagonal")
    padded = jnp.pad(x, 1)
    return (3.0 - 2.0 * x) * x - padded[:-2] - 2.0 * padded[2:] + 1.0


@functools.cache
def _broyden_band_mask(n: int) -> np.ndarray:
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    return ((j >= i - 5) & (j <= i + 1) & (j != i)).astype(np.float64)


def _broyden_banded(x: jax.Array) -> jax.Array:
    x = _check_x(x, "broyden_banded")
    band = _c(_broyden_band_mask(x.shape[0]), x)
    return x * (2.0 + 5.0 * x**2) + 1.0 - band @ (x * (1.0 + x))


def _linear_full_rank(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "linear_full_rank")
    n = x.shape[0]
    c = 2.0 / m * jnp.sum(x) + 1.0
    return jnp.concatenate([x - c, jnp.broadcast_to(-c, (m - n,))])


def _linear_rank1(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "linear_rank1")
    s = jnp.sum(_c(np.arange(1.0, x.shape[0] + 1.0), x) * x)
    return _c(np.arange(1.0, m + 1.0), x) * s - 1.0


def _linear_rank1_zero(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "linear_rank1_zero")
    n = x.shape[0]
    s = jnp.sum(_c(np.arange(2.0, n), x) * x[1:-1])
    middle = _c(np.arange(1.0, m - 1.0), x) * s - 1.0  # (i - 1) s - 1 for i = 2..m-1
    minus_one = -jnp.ones((1,), x.dtype)
    return jnp.concatenate([minus_one, middle, minus_one])


def _chebyquad(x: jax.Array, m: int) -> jax.Array:
    x = _check_x(x, "chebyquad")
    y = 2.0 * x - 1.0
    t_prev, t_cur = jnp.ones_like(y), y
    rows = [jnp.mean(t_cur)]
    for _ in range(2, m + 1):
        t_prev, t_cur = t_cur, 2.0 * y * t_cur - t_prev
        rows.append(jnp.mean(t_cur))
    i = np.arange(1.0, m + 1.0)
    # integral of T_i(2u - 1) over [0, 1]: 0 for odd i, -1 / (i^2 - 1) for even i
    integral = np.zeros(m)
    integral[1::2] = -1.0 / (i[1::2] ** 2 - 1.0)
    return jnp.stack(rows) - _c(integral, x)


# --------------------------------------------------------------------------- the catalogue


def _ref(number: int, extra: str = "") -> str:
    return f"{_MGH}, problem {number}" + (f"; {extra}" if extra else "")


def _sq(norm: float) -> float:
    """A published residual norm ``||r(x0)||`` as ``f(x0)``."""
    return norm * norm


# Where the paper gives only f*, optimum_x is a minimiser computed here in float64 (scipy
# least_squares, method="lm", tolerances 1e-15); it agrees with the solutions printed by the
# MINPACK-1 test runs to their 8 digits.
_COMPUTED_X = "optimum_x computed in float64 (see module source)"
_MINPACK_X0 = (
    "f(x0) agrees with the initial residual norm printed by the MINPACK-1 test runs of the"
    " same authors (Moré, Garbow & Hillstrom 1980, ANL-80-74)"
)


def _build() -> tuple[LeastSquaresProblem, ...]:
    p = functools.partial
    _, t10 = _grid(10)
    x0_grid = tuple(float(t * (t - 1.0)) for t in t10)
    problems = [
        LeastSquaresProblem(
            "rosenbrock",
            _rosenbrock,
            (-1.2, 1.0),
            2,
            0.0,
            (1.0, 1.0),
            _ref(1, _MINPACK_X0),
            initial_value=24.2,
            mgh_number=1,
        ),
        LeastSquaresProblem(
            "freudenstein_roth",
            _freudenstein_roth,
            (0.5, -2.0),
            2,
            0.0,
            (5.0, 4.0),
            _ref(2, _MINPACK_X0),
            local_optimum_values=(48.9842,),
            initial_value=400.5,
            mgh_number=2,
            notes="local minimum f = 48.9842... at (11.41..., -0.8968...), where local"
            " methods usually stop",
        ),
        LeastSquaresProblem(
            "powell_badly_scaled",
            _powell_badly_scaled,
            (0.0, 1.0),
            2,
            0.0,
            (1.0981593296997757e-05, 9.10614673986687),
            _ref(3, f"{_COMPUTED_X}; {_MINPACK_X0} (hybrd)"),
            initial_value=_sq(1.0654866),
            mgh_number=3,
        ),
        LeastSquaresProblem(
            "brown_badly_scaled",
            _brown_badly_scaled,
            (1.0, 1.0),
            3,
            0.0,
            (1e6, 2e-6),
            _ref(4, "f(x0) = (1 - 1e6)^2 + (1 - 2e-6)^2 + 1"),
            initial_value=(1.0 - 1e6) ** 2 + (1.0 - 2e-6) ** 2 + 1.0,
            mgh_number=4,
            notes="x* spans 12 orders of magnitude",
        ),
        LeastSquaresProblem(
            "beale",
            _beale,
            (1.0, 1.0),
            3,
            0.0,
            (3.0, 0.5),
            _ref(5, "f(x0) = 1.5^2 + 2.25^2 + 2.625^2"),
            initial_value=14.203125,
            mgh_number=5,
        ),
        LeastSquaresProblem(
            "jennrich_sampson",
            p(_jennrich_sampson, m=10),
            (0.3, 0.4),
            10,
            124.362,
            (0.25782521199194974, 0.2578252152219578),
            _ref(6, f"m = 10; {_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=_sq(64.585650),
            mgh_number=6,
            notes="the minimiser has x1 = x2 = 0.2578...; the valley along x1 = x2 is flat",
        ),
        LeastSquaresProblem(
            "helical_valley",
            _helical_valley,
            (-1.0, 0.0, 0.0),
            3,
            0.0,
            (1.0, 0.0, 0.0),
            _ref(7, _MINPACK_X0),
            initial_value=2500.0,
            mgh_number=7,
        ),
        LeastSquaresProblem(
            "bard",
            _bard,
            (1.0, 1.0, 1.0),
            15,
            8.21487e-3,
            (0.08241055975623580, 1.133036092245175, 2.343695178435405),
            _ref(8, f"optimum_x from the GSL multifit tests; {_MINPACK_X0}"),
            local_optimum_values=(17.4286,),
            initial_value=_sq(6.4561363),
            mgh_number=8,
            notes="f = 17.4286... is an infimum as x2, x3 -> -inf (x1 = 0.8406...)",
        ),
        LeastSquaresProblem(
            "gaussian",
            _gaussian,
            (0.4, 1.0, 0.0),
            15,
            1.12793e-8,
            (0.39895613783875655, 1.000019084487804, 0.0),
            _ref(9, _COMPUTED_X),
            mgh_number=9,
        ),
        LeastSquaresProblem(
            "meyer",
            _meyer,
            (0.02, 4000.0, 250.0),
            16,
            87.9458,
            (5.609636471049458e-03, 6.181346346283188e03, 3.452236346240292e02),
            _ref(10, f"optimum_x from the GSL multifit tests; {_MINPACK_X0}"),
            initial_value=_sq(4.1153467e4),
            mgh_number=10,
            notes="badly scaled: x1* ~ 5.6e-3, x2* ~ 6.2e3",
        ),
        LeastSquaresProblem(
            "gulf",
            p(_gulf, m=99),
            (5.0, 2.5, 0.15),
            99,
            0.0,
            (50.0, 25.0, 1.5),
            _ref(11, "m = 99 as in the authors' Algorithm 566 code"),
            mgh_number=11,
        ),
        LeastSquaresProblem(
            "box_3d",
            p(_box_3d, m=10),
            (0.0, 10.0, 20.0),
            10,
            0.0,
            (1.0, 10.0, 1.0),
            _ref(12, f"m = 10; {_MINPACK_X0}"),
            initial_value=_sq(32.111584),
            mgh_number=12,
            notes="f = 0 also at (10, 1, -1) and wherever x1 = x2, x3 = 0",
        ),
        LeastSquaresProblem(
            "powell_singular",
            _powell_singular,
            (3.0, -1.0, 0.0, 1.0),
            4,
            0.0,
            (0.0,) * 4,
            _ref(13, _MINPACK_X0),
            initial_value=215.0,
            mgh_number=13,
            notes="singular Jacobian at the solution: convergence is only linear",
        ),
        LeastSquaresProblem(
            "wood",
            _wood,
            (-3.0, -1.0, -3.0, -1.0),
            6,
            0.0,
            (1.0,) * 4,
            _ref(14, "f(x0) = 100^2 + 4^2 + 90*10^2 + 4^2 + 10*4^2"),
            initial_value=19192.0,
            mgh_number=14,
        ),
        LeastSquaresProblem(
            "kowalik_osborne",
            _kowalik_osborne,
            (0.25, 0.39, 0.415, 0.39),
            11,
            3.07505e-4,
            (0.1928069345723978, 0.1912823290344599, 0.1230565070690708, 0.1360623308065148),
            _ref(15, f"optimum_x from the GSL multifit tests; {_MINPACK_X0}"),
            local_optimum_values=(1.02734e-3,),
            initial_value=_sq(7.2891510e-2),
            mgh_number=15,
            notes="f = 1.02734e-3 is an infimum as x1 -> inf, x3, x4 -> -inf (x2 = -14.07...)",
        ),
        LeastSquaresProblem(
            "brown_dennis",
            p(_brown_dennis, m=20),
            (25.0, 5.0, -5.0, -1.0),
            20,
            85822.2,
            (-11.594439114773524, 13.203629768478692, -0.40343947057966756, 0.2367788112013745),
            _ref(16, f"m = 20; {_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=_sq(2815.4384),
            mgh_number=16,
        ),
        LeastSquaresProblem(
            "osborne1",
            _osborne1,
            (0.5, 1.5, -1.0, 0.01, 0.02),
            33,
            5.46489e-5,
            (
                0.3754100520228082,
                1.9358469020815805,
                -1.464687125925617,
                0.012867534618858333,
                0.02212269970542,
            ),
            _ref(17, f"{_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=_sq(0.93756402),
            mgh_number=17,
        ),
        LeastSquaresProblem(
            "biggs_exp6",
            p(_biggs_exp6, m=13),
            (1.0, 2.0, 1.0, 1.0, 1.0, 1.0),
            13,
            0.0,
            (1.0, 10.0, 1.0, 5.0, 4.0, 3.0),
            _ref(18, "m = 13"),
            local_optimum_values=(5.65565e-3,),
            mgh_number=18,
            notes="f = 0 also at (4, 10, 3, 5, 1, 1) (the exponentials swapped); local minimum"
            " f = 5.65565e-3 for m = 13",
        ),
        LeastSquaresProblem(
            "osborne2",
            _osborne2,
            (1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5),
            65,
            4.01377e-2,
            (
                1.3099771545704453,
                0.431553794468403,
                0.6336616989115136,
                0.5994305346907575,
                0.7541832259560298,
                0.9042885809749844,
                1.3658118347387456,
                4.823698817596892,
                2.39868486620393,
                4.568874597633732,
                5.675341470596446,
            ),
            _ref(19, f"{_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=_sq(1.4468654),
            mgh_number=19,
        ),
        LeastSquaresProblem(
            "watson6",
            _watson,
            (0.0,) * 6,
            31,
            2.28767e-3,
            (
                -0.015725084395594887,
                1.0124348695695007,
                -0.232991627529971,
                1.2604301026896503,
                -1.51372894519843,
                0.9929964459906605,
            ),
            _ref(20, f"n = 6; {_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=30.0,
            mgh_number=20,
        ),
        LeastSquaresProblem(
            "watson9",
            _watson,
            (0.0,) * 9,
            31,
            1.39976e-6,
            (
                -1.5307036521393065e-05,
                0.999789703931948,
                0.014763963693575109,
                0.14634232829917035,
                1.000821103005594,
                -2.6177311405211148,
                4.104403164481531,
                -3.1436122785581806,
                1.0526264080106194,
            ),
            _ref(20, f"n = 9; {_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=30.0,
            mgh_number=20,
        ),
        LeastSquaresProblem(
            "extended_rosenbrock",
            _extended_rosenbrock,
            (-1.2, 1.0) * 5,
            10,
            0.0,
            (1.0,) * 10,
            _ref(21, "n = 10; f(x0) = 5 * 24.2"),
            initial_value=121.0,
            mgh_number=21,
        ),
        LeastSquaresProblem(
            "extended_powell_singular",
            _extended_powell_singular,
            (3.0, -1.0, 0.0, 1.0) * 3,
            12,
            0.0,
            (0.0,) * 12,
            _ref(22, "n = 12; f(x0) = 3 * 215"),
            initial_value=645.0,
            mgh_number=22,
            notes="singular Jacobian at the solution: convergence is only linear",
        ),
        LeastSquaresProblem(
            "penalty1",
            _penalty1,
            tuple(float(j) for j in range(1, 11)),
            11,
            7.08765e-5,
            (
                0.15812230108613815,
                0.15812230111119277,
                0.1581223011023453,
                0.15812230110009515,
                0.15812230109787165,
                0.15812230109467884,
                0.15812230108911904,
                0.1581223010764681,
                0.1581223010420475,
                0.15812230133121263,
            ),
            _ref(23, f"n = 10; {_COMPUTED_X}; f(x0) = 1e-5 * 285 + (385 - 1/4)^2"),
            initial_value=1e-5 * 285.0 + 384.75**2,
            mgh_number=23,
        ),
        LeastSquaresProblem(
            "penalty2",
            _penalty2,
            (0.5,) * 10,
            20,
            2.93660e-4,
            (
                0.19998360519759067,
                0.010350669262786508,
                0.01960493507927989,
                0.03208906709894424,
                0.04993267726873079,
                0.07651399524915649,
                0.118624074396621,
                0.19214488217902256,
                0.34732057789192916,
                0.36916436843744393,
            ),
            _ref(24, f"n = 10; {_COMPUTED_X}"),
            mgh_number=24,
        ),
        LeastSquaresProblem(
            "variably_dimensioned",
            _variably_dimensioned,
            tuple(1.0 - j / 10.0 for j in range(1, 11)),
            12,
            0.0,
            (1.0,) * 10,
            _ref(25, "n = 10; f(x0) = 3.85 + 38.5^2 + 38.5^4"),
            initial_value=3.85 + 38.5**2 + 38.5**4,
            mgh_number=25,
        ),
        LeastSquaresProblem(
            "trigonometric",
            _trigonometric,
            (0.1,) * 10,
            10,
            0.0,
            None,
            _ref(
                26,
                f"n = 10; local value 2.79506e-5 computed here, not in MGH; {_MINPACK_X0} (hybrd)",
            ),
            local_optimum_values=(2.79506e-5,),
            initial_value=_sq(8.4117534e-2),
            mgh_number=26,
            notes="from the standard start local methods usually stop at f = 2.79506e-5",
        ),
        LeastSquaresProblem(
            "brown_almost_linear",
            _brown_almost_linear,
            (0.5,) * 10,
            10,
            0.0,
            (1.0,) * 10,
            _ref(27, f"n = 10; {_MINPACK_X0}"),
            local_optimum_values=(1.0,),
            initial_value=_sq(16.530216),
            mgh_number=27,
            notes="f = 0 at (a, ..., a, a^(1-n)) for every root a of n a^n - (n+1) a^(n-1) + 1"
            " (a = 1 among them); local minimum f = 1 at (0, ..., 0, n + 1)",
        ),
        LeastSquaresProblem(
            "discrete_boundary_value",
            _discrete_boundary_value,
            x0_grid,
            10,
            0.0,
            (
                -0.043164982518764876,
                -0.08157715653538689,
                -0.11448571438052929,
                -0.14097357686259668,
                -0.1599086961819831,
                -0.16987720231277492,
                -0.16908998378120835,
                -0.15524953522183182,
                -0.125355891678935,
                -0.07541653368589209,
            ),
            _ref(28, f"n = 10; {_COMPUTED_X}; {_MINPACK_X0} (hybrd)"),
            initial_value=_sq(2.8080582e-2),
            mgh_number=28,
        ),
        LeastSquaresProblem(
            "discrete_integral_equation",
            _discrete_integral_equation,
            x0_grid,
            10,
            0.0,
            (
                -0.04316498251876487,
                -0.08157715653538687,
                -0.11448571438052926,
                -0.14097357686259665,
                -0.1599086961819831,
                -0.1698772023127749,
                -0.16908998378120832,
                -0.1552495352218318,
                -0.12535589167893496,
                -0.07541653368589205,
            ),
            _ref(29, f"n = 10; {_COMPUTED_X}; {_MINPACK_X0} (hybrd)"),
            initial_value=_sq(2.5182701e-1),
            mgh_number=29,
        ),
        LeastSquaresProblem(
            "broyden_tridiagonal",
            _broyden_tridiagonal,
            (-1.0,) * 10,
            10,
            0.0,
            (
                -0.5707221320112248,
                -0.6818069499842752,
                -0.7022100760176601,
                -0.7055106298950804,
                -0.7049061557287436,
                -0.7014966070298512,
                -0.6918893223547983,
                -0.6657965144058537,
                -0.5960351090263657,
                -0.4164122575286934,
            ),
            _ref(30, f"n = 10; {_COMPUTED_X}; {_MINPACK_X0} (hybrd)"),
            initial_value=21.0,
            mgh_number=30,
        ),
        LeastSquaresProblem(
            "broyden_banded",
            _broyden_banded,
            (-1.0,) * 10,
            10,
            0.0,
            (
                -0.4283028635872503,
                -0.47659642435629024,
                -0.5196524636468617,
                -0.5580993248321809,
                -0.5925061568294574,
                -0.624503682199468,
                -0.6232394714405911,
                -0.6213938417965735,
                -0.6204535966590873,
                -0.5864692707204351,
            ),
            _ref(31, f"n = 10; {_COMPUTED_X}; {_MINPACK_X0} (hybrd)"),
            initial_value=360.0,
            mgh_number=31,
        ),
        LeastSquaresProblem(
            "linear_full_rank",
            p(_linear_full_rank, m=20),
            (1.0,) * 10,
            20,
            10.0,
            (-1.0,) * 10,
            _ref(32, "n = 10, m = 20: f* = m - n; f(x0) = 10 * 1 + 10 * 4"),
            initial_value=50.0,
            mgh_number=32,
        ),
        LeastSquaresProblem(
            "linear_rank1",
            p(_linear_rank1, m=20),
            (1.0,) * 10,
            20,
            190.0 / 41.0,
            (3.0 / (41.0 * 55.0),) * 10,
            _ref(33, "n = 10, m = 20: f* = m(m-1) / (2(2m+1)) where sum_j j x_j = 3/(2m+1)"),
            initial_value=3025.0 * 2870.0 - 110.0 * 210.0 + 20.0,  # sum_i (55 i - 1)^2
            mgh_number=33,
            notes="rank-deficient: the minimisers form a hyperplane",
        ),
        LeastSquaresProblem(
            "linear_rank1_zero",
            p(_linear_rank1_zero, m=20),
            (1.0,) * 10,
            20,
            227.0 / 37.0,
            (1.0,) + (3.0 / (37.0 * 44.0),) * 8 + (1.0,),
            _ref(
                34,
                "n = 10, m = 20: f* = (m^2 + 3m - 6) / (2(2m - 3)) where"
                " sum_{j=2}^{n-1} j x_j = 3/(2m - 3)",
            ),
            initial_value=2.0 + 1936.0 * 2109.0 - 88.0 * 171.0 + 18.0,  # 2 + sum_k (44 k - 1)^2
            mgh_number=34,
            notes="rank-deficient; x1 and xn do not enter the residuals",
        ),
        LeastSquaresProblem(
            "chebyquad",
            p(_chebyquad, m=8),
            tuple(j / 9.0 for j in range(1, 9)),
            8,
            3.51687e-3,
            (
                0.0431527603224207,
                0.19309084054379874,
                0.26632870686535337,
                0.49999999993452915,
                0.5000000000654709,
                0.7336712931346466,
                0.8069091594562012,
                0.9568472396775792,
            ),
            _ref(35, f"n = m = 8; {_COMPUTED_X}; {_MINPACK_X0}"),
            initial_value=_sq(0.19651386),
            mgh_number=35,
        ),
    ]
    return tuple(problems)


@functools.cache
def mgh_problems() -> tuple[LeastSquaresProblem, ...]:
    """All the MGH least-squares problems, in MGH order (the same objects on every call).

    Returns:
        A tuple of ``LeastSquaresProblem``: the 35 MGH problems, Watson twice (``n = 6, 9``).

    Example:
        >>> from opifex.second_order._mgh import mgh_problems
        >>> [p.name for p in mgh_problems()][:3]
        ['rosenbrock', 'freudenstein_roth', 'powell_badly_scaled']
    """
    return _build()


def get_mgh_problem(name: str) -> LeastSquaresProblem:
    """The MGH problem called ``name`` (see ``[p.name for p in mgh_problems()]``).

    Raises:
        ValueError: if no problem has that name (the message lists the names).

    Example:
        >>> from opifex.second_order._mgh import get_mgh_problem
        >>> get_mgh_problem("meyer").num_residuals
        16
    """
    for problem in mgh_problems():
        if problem.name == name:
            return problem
    names = ", ".join(p.name for p in mgh_problems())
    raise ValueError(f"unknown MGH problem {name!r}; expected one of: {names}")
