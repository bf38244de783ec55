"""The trajectory-optimisation problems of the control benchmark, as data.

The numbers are ``opifex.control.SWING_UPS`` (the tasks of ``opifex mpc``), read here.

One definition, shared by opifex's iLQR / box-DDP and by every baseline (CasADi + IPOPT,
trajax): each problem is a ``ProblemData`` of plain numbers (period, horizon, initial state,
goal, quadratic weights, control bounds, model parameters) from which the opifex
``TrajectoryProblem`` is built, and which another backend rebuilds in its own language.

The cost is opifex's ``quadratic_cost`` convention (no ``dt`` factor):

``J(U) = sum_{t<T} [1/2 (x_t-g)' Q (x_t-g) + 1/2 u_t' R u_t] + 1/2 (x_T-g)' Qf (x_T-g)``

with ``x_{t+1}`` one classic RK4 step of length ``dt`` (zero-order hold) of the continuous
model from ``opifex.control``. Angles are measured from the upright (``theta = 0`` up, ``pi``
hanging), so both problems start hanging at rest and end upright at rest.

* ``cartpole_swingup``: ``opifex.control.cartpole()`` (cart 1 kg, pole 0.1 kg, pivot to centre
  of mass 0.5 m), ``|u| <= 10`` N, ``dt = 0.05`` s, ``T = 50`` (2.5 s).
* ``pendulum_swingup``: ``opifex.control.pendulum(max_torque=5)`` (1 kg, 1 m, damping 0.1),
  ``|u| <= 5`` N m (about half of ``m g l``, so the swing-up must pump), ``dt = 0.08`` s,
  ``T = 50`` (4 s).

At the bounded optimum (CasADi + IPOPT from ``U = 0``, ``baselines.py``) the pole ends
upright (``|theta_T| = 0.016`` cart-pole, ``0.0025`` pendulum) and the bound is active on
21 and 31 of the 50 steps, so the bounds matter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from opifex.control import Dynamics, QuadraticCost, TrajectoryProblem, quadratic_cost
from opifex.control._tasks import SWING_UPS, swing_up_model


@dataclasses.dataclass(frozen=True, eq=False)
class ProblemData:
    """A swing-up problem as plain numbers (numpy arrays and floats), for any backend.

    Attributes:
        name: the problem's label (``"cartpole_swingup"``).
        system: the ``opifex.control`` model, ``"cartpole"`` or ``"pendulum"``.
        dt: the control period (s); one RK4 step per period.
        horizon: the number of control periods ``T``.
        x0: the initial state, shape ``(n,)``.
        goal: the target state ``g``, shape ``(n,)``.
        Q: running state weight, ``(n, n)`` (diagonal).
        R: control weight, ``(m, m)`` (diagonal).
        Qf: terminal state weight, ``(n, n)`` (diagonal).
        lower: lower control bounds, shape ``(m,)``.
        upper: upper control bounds, shape ``(m,)``.
        params: the model parameters (the ``Dynamics.params`` dict of floats).
        state_names: one label per state component.
        rk4_substeps: RK4 steps per control period (1 in every benchmark problem).
    """

    name: str
    system: str
    dt: float
    horizon: int
    x0: np.ndarray
    goal: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    Qf: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    params: dict[str, float]
    state_names: tuple[str, ...]
    rk4_substeps: int = 1

    @property
    def state_dim(self) -> int:
        """``n``, the length of the state."""
        return int(self.x0.shape[0])

    @property
    def control_dim(self) -> int:
        """``m``, the length of the control."""
        return int(self.lower.shape[0])

    @property
    def max_control(self) -> np.ndarray:
        """The symmetric bound ``u_max`` (``upper``; the benchmark bounds are symmetric)."""
        return self.upper

    def dynamics(self) -> Dynamics:
        """The continuous-time opifex model with these parameters and bounds."""
        return swing_up_model(self.system, **self.params)

    def cost(self) -> QuadraticCost:
        """The opifex ``QuadraticCost`` of these weights (in JAX's default float dtype)."""
        return quadratic_cost(np.diag(self.Q), np.diag(self.R), self.goal, np.diag(self.Qf))

    def trajectory_problem(self, bounded: bool = True) -> TrajectoryProblem:
        """The opifex ``TrajectoryProblem`` (``bounded=False``: the same without bounds)."""
        return TrajectoryProblem.from_dynamics(
            self.dynamics(),
            self.cost(),
            horizon=self.horizon,
            dt=self.dt,
            bounded=bounded,
            method="rk4",
            substeps=self.rk4_substeps,
        )

    def zero_controls(self) -> np.ndarray:
        """``U = 0``, shape ``(T, m)``: the cold start of every solver."""
        return np.zeros((self.horizon, self.control_dim))

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready lists and floats (for a results file's config)."""
        return {
            "name": self.name,
            "system": self.system,
            "dt": self.dt,
            "horizon": self.horizon,
            "rk4_substeps": self.rk4_substeps,
            "x0": self.x0.tolist(),
            "goal": self.goal.tolist(),
            "Q_diag": np.diag(self.Q).tolist(),
            "R_diag": np.diag(self.R).tolist(),
            "Qf_diag": np.diag(self.Qf).tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "params": dict(self.params),
            "state_names": list(self.state_names),
        }


class BenchmarkProblem(NamedTuple):
    """A benchmark problem: the opifex ``TrajectoryProblem`` and the same as ``ProblemData``."""

    problem: TrajectoryProblem
    data: ProblemData


def _data(name: str, system: str) -> ProblemData:
    """The numbers of ``opifex.control.SWING_UPS[system]`` (the one definition of the task)."""
    task = SWING_UPS[system]
    model = swing_up_model(system)
    return ProblemData(
        name=name,
        system=system,
        dt=task.dt,
        horizon=task.horizon,
        x0=np.asarray(task.x0, np.float64),
        goal=np.zeros(model.state_dim),
        Q=np.diag(np.asarray(task.state_weight, np.float64)),
        R=np.diag(np.asarray(task.control_weight, np.float64)),
        Qf=np.diag(np.asarray(task.final_weight, np.float64)),
        lower=np.asarray(model.control_lower, np.float64),
        upper=np.asarray(model.control_upper, np.float64),
        params={k: float(v) for k, v in model.params.items()},
        state_names=tuple(model.state_names),
    )


def cartpole_swingup_data() -> ProblemData:
    """The cart-pole swing-up as numbers.

    ``cartpole()`` defaults (``|u| <= 10`` N), ``dt = 0.05``, ``T = 50``, from hanging at rest
    ``x0 = (0, pi, 0, 0)`` to upright at rest at the origin; ``Q = diag(0.1, 1, 0.01, 0.01)``,
    ``R = 0.01``, ``Qf = diag(100, 1000, 100, 100)``.
    """
    return _data("cartpole_swingup", "cartpole")


def pendulum_swingup_data() -> ProblemData:
    """The pendulum swing-up as numbers.

    ``pendulum(max_torque=5)`` (``|u| <= 5`` N m against ``m g l = 9.81`` N m), ``dt = 0.08``,
    ``T = 50``, from hanging at rest ``x0 = (pi, 0)`` to upright at rest;
    ``Q = diag(1, 0.1)``, ``R = 0.01``, ``Qf = diag(100, 10)``.
    """
    return _data("pendulum_swingup", "pendulum")


def cartpole_swingup(bounded: bool = True) -> BenchmarkProblem:
    """The cart-pole swing-up: ``(TrajectoryProblem, ProblemData)`` (see ``cartpole_swingup_data``).

    Args:
        bounded: keep the force bound in the ``TrajectoryProblem`` (the data keeps it always).
    """
    data = cartpole_swingup_data()
    return BenchmarkProblem(data.trajectory_problem(bounded), data)


def pendulum_swingup(bounded: bool = True) -> BenchmarkProblem:
    """The pendulum swing-up: ``(TrajectoryProblem, ProblemData)`` (see ``pendulum_swingup_data``).

    Args:
        bounded: keep the torque bound in the ``TrajectoryProblem`` (the data keeps it always).
    """
    data = pendulum_swingup_data()
    return BenchmarkProblem(data.trajectory_problem(bounded), data)


PROBLEMS: dict[str, Callable[..., BenchmarkProblem]] = {
    "cartpole_swingup": cartpole_swingup,
    "pendulum_swingup": pendulum_swingup,
}


def get_problem(name: str, bounded: bool = True) -> BenchmarkProblem:
    """A benchmark problem by name (``"cartpole_swingup"`` or ``"pendulum_swingup"``).

    Raises:
        ValueError: an unknown name.
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known: {sorted(PROBLEMS)}")
    return PROBLEMS[name](bounded)
