"""Differentiable control: dynamics with diffrax, system identification, MPC, safety filters.

Models are ``Dynamics`` (``dx/dt = f(x, u, t, params)``); ``discretize`` gives their
discrete-time step for planning (hand-written RK4 or any diffrax solver and adjoint).
"""

from opifex.control._dynamics import Dynamics, discretize, rollout, simulate
from opifex.control._ilqr import ILQR, ILQRAux, ILQRConfig, ILQRState
from opifex.control._mpc import (
    ClosedLoop,
    MPCController,
    MPCState,
    closed_loop,
    mpc_init,
    mpc_step,
)
from opifex.control._problem import (
    QuadraticCost,
    TrajectoryProblem,
    quadratic_cost,
    quadratic_final_cost,
    quadratic_running_cost,
)
from opifex.control._shooting import DirectShooting, ShootingState
from opifex.control._systems import (
    adaptive_cruise_control,
    cartpole,
    double_integrator,
    pendulum,
    planar_quadrotor,
    wrap_angle,
)

__all__ = [
    "ILQR",
    "ClosedLoop",
    "DirectShooting",
    "Dynamics",
    "ILQRAux",
    "ILQRConfig",
    "ILQRState",
    "MPCController",
    "MPCState",
    "QuadraticCost",
    "ShootingState",
    "TrajectoryProblem",
    "adaptive_cruise_control",
    "cartpole",
    "closed_loop",
    "discretize",
    "double_integrator",
    "mpc_init",
    "mpc_step",
    "pendulum",
    "planar_quadrotor",
    "quadratic_cost",
    "quadratic_final_cost",
    "quadratic_running_cost",
    "rollout",
    "simulate",
    "wrap_angle",
]
