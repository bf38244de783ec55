"""Differentiable control: dynamics with diffrax, system identification, MPC, safety filters.

Models are ``Dynamics`` (``dx/dt = f(x, u, t, params)``); ``discretize`` gives their
discrete-time step for planning (hand-written RK4 or any diffrax solver and adjoint).
"""

from opifex.control._dynamics import Dynamics, discretize, rollout, simulate
from opifex.control._systems import (
    adaptive_cruise_control,
    cartpole,
    double_integrator,
    pendulum,
    planar_quadrotor,
    wrap_angle,
)

__all__ = [
    "Dynamics",
    "adaptive_cruise_control",
    "cartpole",
    "discretize",
    "double_integrator",
    "pendulum",
    "planar_quadrotor",
    "rollout",
    "simulate",
    "wrap_angle",
]
