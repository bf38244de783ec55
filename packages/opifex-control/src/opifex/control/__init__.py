"""Differentiable control: dynamics with diffrax, system identification, MPC, safety filters.

Models are ``Dynamics`` (``dx/dt = f(x, u, t, params)``); ``discretize`` gives their
discrete-time step for planning (hand-written RK4 or any diffrax solver and adjoint).
``TrajectoryProblem`` is the one finite-horizon optimal control problem that ``ILQR``
(box-DDP) and ``DirectShooting`` solve on ``opifex.core.run_solver``, differentiable in the
initial state, dynamics and cost parameters by implicit differentiation; ``MPCController``,
``mpc_step`` and ``closed_loop`` run them in receding horizon with a fixed iteration budget.
``fit_parameters`` (single or multiple shooting), ``fit_neural_ode`` and ``fit_sindy``
identify models from trajectories. ``SafetyFilter`` minimally corrects a nominal control so
that control barrier functions (``time_headway_barrier``, ``circular_obstacle_barrier``) stay
non-negative, also between samples of a held control. ``swing_up`` builds the standard
pendulum and cart-pole swing-up tasks.
"""

from opifex.control._barriers import (
    ControlBarrier,
    circular_obstacle_barrier,
    circular_obstacle_bound,
    time_headway_barrier,
)
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
from opifex.control._qp import FilterQPSolution, filter_qp
from opifex.control._safety import SafetyFilter, SafetyFilterResult
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
from opifex.control._tasks import SWING_UPS, SwingUp, swing_up, swing_up_model

__all__ = [
    "ILQR",
    "STLSQ",
    "SWING_UPS",
    "ClosedLoop",
    "ControlBarrier",
    "DirectShooting",
    "Dynamics",
    "FeatureLibrary",
    "FilterQPSolution",
    "ILQRAux",
    "ILQRConfig",
    "ILQRState",
    "MPCController",
    "MPCState",
    "QuadraticCost",
    "SINDyModel",
    "STLSQState",
    "SafetyFilter",
    "SafetyFilterResult",
    "ShootingState",
    "SwingUp",
    "SysIdResult",
    "TrajectoryProblem",
    "adaptive_cruise_control",
    "cartpole",
    "circular_obstacle_barrier",
    "circular_obstacle_bound",
    "closed_loop",
    "differentiate",
    "discretize",
    "double_integrator",
    "filter_qp",
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
    "swing_up",
    "swing_up_model",
    "time_headway_barrier",
    "trajectory_rmse",
    "wrap_angle",
]
