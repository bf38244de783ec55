"""Differentiable control: dynamics with diffrax, system identification, MPC, safety filters.

Models are ``Dynamics`` (``dx/dt = f(x, u, t, params)``); ``discretize`` gives their
discrete-time step for planning (hand-written RK4 or any diffrax solver and adjoint).
``TrajectoryProblem`` is the one finite-horizon optimal control problem that ``ILQR``
(box-DDP) and ``DirectShooting`` solve on ``opifex.core.run_solver``, differentiable in the
initial state, dynamics and cost parameters by implicit differentiation; ``MPCController``,
``mpc_step`` and ``closed_loop`` run them in receding horizon with a fixed iteration budget.
``fit_parameters`` (single or multiple shooting), ``fit_neural_ode`` and ``fit_sindy``
identify models from trajectories.
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
from opifex.control._neural_ode import fit_neural_ode, mlp_apply, mlp_init, neural_dynamics
from opifex.control._problem import (
    QuadraticCost,
    TrajectoryProblem,
    quadratic_cost,
    quadratic_final_cost,
    quadratic_running_cost,
)
from opifex.control._shooting import DirectShooting, ShootingState
from opifex.control._sindy import (
    STLSQ,
    FeatureLibrary,
    SINDyModel,
    STLSQState,
    differentiate,
    fit_sindy,
    smooth,
    stlsq,
)
from opifex.control._sysid import SysIdResult, fit_parameters, trajectory_rmse
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
    "STLSQ",
    "ClosedLoop",
    "DirectShooting",
    "Dynamics",
    "FeatureLibrary",
    "ILQRAux",
    "ILQRConfig",
    "ILQRState",
    "MPCController",
    "MPCState",
    "QuadraticCost",
    "SINDyModel",
    "STLSQState",
    "ShootingState",
    "SysIdResult",
    "TrajectoryProblem",
    "adaptive_cruise_control",
    "cartpole",
    "closed_loop",
    "differentiate",
    "discretize",
    "double_integrator",
    "fit_neural_ode",
    "fit_parameters",
    "fit_sindy",
    "mlp_apply",
    "mlp_init",
    "mpc_init",
    "mpc_step",
    "neural_dynamics",
    "pendulum",
    "planar_quadrotor",
    "quadratic_cost",
    "quadratic_final_cost",
    "quadratic_running_cost",
    "rollout",
    "simulate",
    "smooth",
    "stlsq",
    "trajectory_rmse",
    "wrap_angle",
]
