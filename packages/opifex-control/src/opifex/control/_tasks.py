"""The standard swing-up tasks: a pendulum and a cart-pole from hanging to upright, bounded.

One definition serves the ``opifex mpc`` command, the benchmark (``benchmarks/control/``) and
users who want a hard, well-posed nonlinear control problem to try a solver on. The cost has
no ``dt`` factor (``quadratic_cost``); one RK4 step per control period.

* ``"pendulum"``: ``pendulum(max_torque=5)`` (1 kg, 1 m, damping 0.1): ``|u| <= 5`` N m,
  about half of ``m g l``, so the swing-up must pump; ``dt = 0.08`` s, ``T = 50`` (4 s).
* ``"cartpole"``: ``cartpole()`` (cart 1 kg, pole 0.1 kg, pivot to centre of mass 0.5 m):
  ``|u| <= 10`` N; ``dt = 0.05`` s, ``T = 50`` (2.5 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.control._dynamics import Dynamics
from opifex.control._problem import TrajectoryProblem, quadratic_cost
from opifex.control._systems import cartpole, pendulum
from opifex.core import check_choice


class SwingUp(NamedTuple):
    """A swing-up task as numbers: period, horizon, start, diagonal weights and the bound.

    Attributes:
        model: the built-in system's constructor.
        bound_argument: the constructor's keyword for the symmetric control bound.
        max_control: that bound.
        dt: the control period (s).
        horizon: the number of periods ``T`` planned over.
        x0: the hanging start at rest (the goal is the origin: upright at rest).
        state_weight: ``diag(Q)``.
        control_weight: ``diag(R)``.
        final_weight: ``diag(Q_f)``.
        angle_index: the position of the pole's angle in the state.
    """

    model: Callable[..., Dynamics]
    bound_argument: str
    max_control: float
    dt: float
    horizon: int
    x0: tuple[float, ...]
    state_weight: tuple[float, ...]
    control_weight: tuple[float, ...]
    final_weight: tuple[float, ...]
    angle_index: int


SWING_UPS: dict[str, SwingUp] = {
    "pendulum": SwingUp(
        pendulum, "max_torque", 5.0, 0.08, 50, (math.pi, 0.0), (1.0, 0.1), (0.01,),
        (100.0, 10.0), 0,
    ),
    "cartpole": SwingUp(
        cartpole, "max_force", 10.0, 0.05, 50, (0.0, math.pi, 0.0, 0.0),
        (0.1, 1.0, 0.01, 0.01), (0.01,), (100.0, 1000.0, 100.0, 100.0), 1,
    ),
}  # fmt: skip


def swing_up_model(system: str, **params: float) -> Dynamics:
    """The bounded model of a swing-up task (``params`` override the model's defaults).

    Example:
        >>> model = swing_up_model("pendulum", mass=2.0)
        >>> model.params["mass"], model.control_upper
        (2.0, (5.0,))
    """
    check_choice(system, tuple(SWING_UPS), "system")
    task = SWING_UPS[system]
    return task.model(**{task.bound_argument: task.max_control}, **params)


def swing_up(
    system: str, *, bounded: bool = True, **params: float
) -> tuple[TrajectoryProblem, jax.Array]:
    """The swing-up task of ``system`` (``"pendulum"`` or ``"cartpole"``) and its start.

    Args:
        system: ``"pendulum"`` or ``"cartpole"``.
        bounded: keep the control bound (``False``: the same problem without it).
        **params: model parameters instead of the defaults (a mismatched or identified model).

    Returns:
        ``(problem, x0)``: the ``TrajectoryProblem`` and the hanging start at rest.

    Raises:
        ValueError: an unknown system.

    Example:
        >>> problem, x0 = swing_up("pendulum")
        >>> problem.horizon, problem.dt, [round(v, 4) for v in x0.tolist()]
        (50, 0.08, [3.1416, 0.0])
    """
    model = swing_up_model(system, **params)
    task = SWING_UPS[system]
    cost = quadratic_cost(task.state_weight, task.control_weight, None, task.final_weight)
    problem = TrajectoryProblem.from_dynamics(
        model, cost, horizon=task.horizon, dt=task.dt, bounded=bounded
    )
    return problem, jnp.asarray(task.x0, jnp.result_type(float))
