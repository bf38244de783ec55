"""Control barrier functions: ``h(x) >= 0`` marks the safe set (used by ``SafetyFilter``).

``ControlBarrier`` wraps ``h(x, params)``; ``time_headway_barrier`` (cruise control) and
``circular_obstacle_barrier`` (an exponential CBF for a double integrator) are ready-made.
``circular_obstacle_bound`` is the obstacle barrier's intersample bound for a filter that holds
its control over a period (``SafetyFilter(period=...)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import check_positive

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class ControlBarrier:
    """A barrier function ``h(x, params) -> scalar``: the safe set is ``h >= 0``.

    Static (hashed by identity); its parameters are data, passed to ``SafetyFilter.filter`` as
    ``barrier_params`` to differentiate or batch them (``params`` are the defaults).

    Attributes:
        h: ``h(x, params) -> ()``, differentiable in ``x`` (and in ``params`` for gradients).
        params: the default parameters (any pytree of arrays or floats; ``None`` for none).
        name: a label for messages and plots.

    Example:
        >>> import jax.numpy as jnp
        >>> wall = ControlBarrier(lambda x, p: p["limit"] - x[0], {"limit": 1.0}, "wall")
        >>> float(wall(jnp.array([0.25, 0.0])))
        0.75
    """

    h: Callable[[Array, Any], Array]
    params: Any = None
    name: str = "barrier"

    def __post_init__(self) -> None:
        if not callable(self.h):
            raise TypeError(f"h must be callable, got {type(self.h).__name__}")

    def __call__(self, x: Array, params: Any = None) -> Array:
        """``h(x)`` (the default parameters when ``params`` is ``None``)."""
        return self.h(x, self.params if params is None else params)


def time_headway_barrier(time_headway: float = 1.8) -> ControlBarrier:
    """The cruise-control barrier ``h = gap - T_h * speed`` (a ``T_h``-second time headway).

    For ``adaptive_cruise_control`` (state ``(speed, gap, lead_speed)``); Ames et al. (CDC
    2014) use ``T_h = 1.8`` s. Relative degree one: ``Lg h = -T_h / mass``. Its parameter
    ``time_headway`` is data (``barrier_params=({"time_headway": ...},)``).

    Args:
        time_headway: ``T_h`` in seconds (> 0).

    Example:
        >>> import jax.numpy as jnp
        >>> float(time_headway_barrier()(jnp.array([20.0, 40.0, 20.0])))   # 40 - 1.8 * 20
        4.0
    """
    check_positive(time_headway, "time_headway")

    def h(x: Array, p: Any) -> Array:
        return x[1] - p["time_headway"] * x[0]

    return ControlBarrier(h, {"time_headway": float(time_headway)}, "time_headway")


def _offset(x: Array, p: Any) -> tuple[Array, Array]:
    dims = jnp.shape(p["center"])[0]
    if x.shape != (2 * dims,):
        raise ValueError(f"the obstacle barrier needs a state of shape ({2 * dims},)")
    return x[:dims] - p["center"], x[dims:]


def circular_obstacle_barrier(
    center: Sequence[float], radius: float, gain: float = 1.0
) -> ControlBarrier:
    """Keep a point mass out of a disc: an exponential CBF for ``double_integrator(dims)``.

    For the state ``(position, velocity)`` the distance barrier ``h = |p - c|^2 - r^2`` has
    relative degree two (``Lg h = 0``); this returns ``h2 = dh/dt + k h
    = 2 (p - c) . v + k (|p - c|^2 - r^2)`` (Nguyen & Sreenath, ACC 2016), of relative degree
    one. The filter keeps ``h2 >= 0``, which keeps ``dh/dt >= -k h`` and so ``h >= 0`` from any
    start with ``h >= 0`` and ``h2 >= 0`` (e.g. at rest outside the disc). Its parameters
    ``center``, ``radius`` and ``gain`` are data (batch obstacles with ``barrier_params``).

    Args:
        center: the disc's centre (``dims`` floats).
        radius: its radius (> 0).
        gain: ``k > 0``: larger lets the mass approach faster (and brake harder, later).

    Example:
        >>> import jax.numpy as jnp
        >>> obstacle = circular_obstacle_barrier([2.0, 0.0], 1.0)
        >>> float(obstacle(jnp.array([0.0, 0.0, 1.0, 0.0])))   # 2 (-2)(1) + (4 - 1)
        -1.0
    """
    check_positive(radius, "radius")
    check_positive(gain, "gain")
    center = tuple(float(c) for c in np.atleast_1d(center))

    def h(x: Array, p: Any) -> Array:
        offset, velocity = _offset(x, p)
        return 2.0 * offset @ velocity + p["gain"] * (offset @ offset - p["radius"] ** 2)

    params = {"center": jnp.asarray(center), "radius": float(radius), "gain": float(gain)}
    return ControlBarrier(h, params, "circular_obstacle")


def circular_obstacle_bound(
    alpha: float, max_accel: float, period: float
) -> Callable[[Array, Any], Array]:
    """The intersample bound of ``circular_obstacle_barrier`` for ``SafetyFilter(period=...)``.

    With ``psi = dh2/dt + alpha h2`` and the control held at ``u`` (``|u_i| <= max_accel``),
    ``d^2 psi/dt^2 = 6|u|^2 + 6 (k + alpha) v.u + 2 alpha k |v|^2 + 2 alpha k e.u``
    (``e = p - c``), so ``-d^2 psi/dt^2 <= 6 (k + alpha) V U + 2 alpha k E U`` with
    ``U = max_accel sqrt(dims)`` and, over one period ``T`` from the state ``(e, v)``,
    ``V = |v| + T U`` and ``E = |e| + T |v| + T^2 U / 2``. Valid for the linear class-K function
    ``alpha * h2`` of the same ``alpha``.

    Args:
        alpha: the filter's (linear) class-K gain for this barrier (> 0).
        max_accel: the bound on each acceleration component (> 0).
        period: the control period ``T`` (> 0).

    Returns:
        ``bound(x, params) -> ()``, for ``SafetyFilter``'s ``intersample_bound``.

    Example:
        >>> import jax.numpy as jnp
        >>> bound = circular_obstacle_bound(1.0, 1.0, 0.1)
        >>> obstacle = circular_obstacle_barrier([0.0], 1.0, gain=1.0)
        >>> round(float(bound(jnp.array([2.0, 0.0]), obstacle.params)), 4)  # 12 * 0.1 + 2 * 2.005
        5.21
    """
    for value, name in ((alpha, "alpha"), (max_accel, "max_accel"), (period, "period")):
        check_positive(value, name)

    def bound(x: Array, p: Any) -> Array:
        offset, velocity = _offset(x, p)
        accel = max_accel * offset.shape[0] ** 0.5
        speed = jnp.sqrt(velocity @ velocity)
        reach = jnp.sqrt(offset @ offset) + period * speed + 0.5 * period**2 * accel
        k = p["gain"]
        return (
            6.0 * (k + alpha) * (speed + period * accel) * accel + 2.0 * alpha * k * reach * accel
        )

    return bound
