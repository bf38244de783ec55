"""Baseline trajectory optimisers for the control benchmark: CasADi + IPOPT and trajax's iLQR.

Both solve the problems of ``problems.py`` (a ``ProblemData``) and are called side by side
with opifex's solver in one process. Every returned control sequence is scored with opifex's
``TrajectoryProblem.total_cost``, so all costs are comparable.

* **CasADi + IPOPT** (``casadi_solve``): the same models written in CasADi symbolics (the
  equations of ``opifex.control._systems``, one classic RK4 step per period), solved with
  exact Hessians by direct multiple shooting (default) or single shooting, with the control
  bounds as simple bounds. Optional: ``pip install casadi`` (not a project dependency);
  ``casadi_available()`` says whether it imports.
* **trajax iLQR** (``trajax_solve``): ``trajax.optimizers.ilqr`` (google/trajax, not on PyPI:
  the PyPI "trajax" is an unrelated MPPI library) imported from the source tree in the
  environment variable ``TRAJAX_PATH``; ``trajax_available()`` says whether it imports. Its
  iLQR has no control bounds: ``bounded=False`` solves the unbounded problem,
  ``bounded=True`` the bounded one with squashed controls ``u = u_max tanh(v)`` inside the
  dynamics and the cost. The dynamics are opifex's own ``discretize`` step, the cost the
  same quadratic.

Patch (``patch_trajax``, applied on import of trajax here): trajax (last commit June 2023)
calls ``jax.tree_map``, removed from JAX (``AttributeError`` on JAX 0.10), in its
implicit-differentiation backward passes (``_ilqr_tvlqr_bwd`` via ``_pytree_zeros_like`` and
``vhp_params``; the ``explicit`` / ``cg`` backward passes via ``_pytree_zeros_like``). The
forward solve does not use it and runs unpatched. The patch gives trajax's ``optimizers``
module its own view of ``jax`` with ``tree_map = jax.tree.map``; the global ``jax`` module is
untouched. Even patched, the default ``vjp_method="tvlqr"`` returns *zero* gradients with
respect to the initial state and the dynamics parameters (by design: see the TODOs in
``_ilqr_tvlqr_bwd``); ``trajax_gradient_check`` measures this against finite differences.

Run ``python benchmarks/control/baselines.py`` for a report (float64).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # problems.py
from problems import ProblemData

LOG = logging.getLogger("opifex.benchmarks.control")
TRAJAX_ENV = "TRAJAX_PATH"

try:
    import casadi
except ImportError:  # optional baseline
    casadi = None


# --------------------------------------------------------------------------------------------
# CasADi + IPOPT
# --------------------------------------------------------------------------------------------


def casadi_available() -> bool:
    """Whether ``casadi`` imports (``pip install casadi``)."""
    return casadi is not None


def _require_casadi() -> None:
    if casadi is None:
        raise RuntimeError(
            "casadi is not installed: `uv pip install casadi` (an optional baseline, not a "
            "project dependency)"
        )


def _casadi_cartpole_rhs(x: Any, u: Any, p: dict[str, float]) -> Any:
    """The cart-pole of ``opifex.control.cartpole`` in CasADi symbolics."""
    theta, velocity, omega = x[1], x[2], x[3]
    total = p["cart_mass"] + p["pole_mass"]
    half = p["pole_length"]
    sin, cos = casadi.sin(theta), casadi.cos(theta)
    temp = (u[0] + p["pole_mass"] * half * omega**2 * sin) / total
    alpha = (p["gravity"] * sin - cos * temp) / (
        half * (4.0 / 3.0 - p["pole_mass"] * cos**2 / total)
    )
    accel = temp - p["pole_mass"] * half * alpha * cos / total
    return casadi.vertcat(velocity, omega, accel, alpha)


def _casadi_pendulum_rhs(x: Any, u: Any, p: dict[str, float]) -> Any:
    """The pendulum of ``opifex.control.pendulum`` in CasADi symbolics."""
    theta, omega = x[0], x[1]
    inertia = p["mass"] * p["length"] ** 2
    alpha = (
        p["gravity"] / p["length"] * casadi.sin(theta)
        - p["damping"] * omega / inertia
        + u[0] / inertia
    )
    return casadi.vertcat(omega, alpha)


CASADI_RHS = {"cartpole": _casadi_cartpole_rhs, "pendulum": _casadi_pendulum_rhs}


def casadi_step_function(data: ProblemData) -> Any:
    """``F(x, u) -> x_next``: one control period of ``data``'s model (RK4) as a CasADi Function.

    Raises:
        RuntimeError: casadi is not installed.
    """
    _require_casadi()
    n, m = data.state_dim, data.control_dim
    x = casadi.SX.sym("x", n)
    u = casadi.SX.sym("u", m)
    rhs = functools.partial(CASADI_RHS[data.system], p=data.params)
    h = data.dt / data.rk4_substeps
    z = x
    for _ in range(data.rk4_substeps):
        k1 = rhs(z, u)
        k2 = rhs(z + 0.5 * h * k1, u)
        k3 = rhs(z + 0.5 * h * k2, u)
        k4 = rhs(z + h * k3, u)
        z = z + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return casadi.Function("step", [x, u], [z], ["x", "u"], ["x_next"])


def check_same_model(data: ProblemData, samples: int = 20, seed: int = 0) -> float:
    """The largest gap between CasADi's RK4 step and opifex's ``discretize(model, dt)`` step.

    Draws ``samples`` random states and controls and compares one period in float64; the
    benchmark requires the gap below ``1e-10``.

    Args:
        data: the problem.
        samples: how many random ``(x, u)`` pairs.
        seed: the numpy seed.

    Returns:
        ``max |F_casadi(x, u) - step_opifex(x, u)|`` over the samples.

    Raises:
        RuntimeError: casadi is not installed, or JAX is not in float64 mode.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("check_same_model needs float64 (jax_enable_x64)")
    step_casadi = casadi_step_function(data)
    problem = data.trajectory_problem()
    step_opifex = jax.jit(lambda x, u: problem.step(x, u, 0.0, data.params))
    rng = np.random.default_rng(seed)
    gap = 0.0
    for _ in range(samples):
        x = rng.normal(size=data.state_dim) * 2.0
        u = rng.uniform(data.lower, data.upper)
        ours = np.asarray(step_opifex(jnp.asarray(x), jnp.asarray(u)))
        theirs = np.asarray(step_casadi(x, u)).ravel()
        gap = max(gap, float(np.max(np.abs(ours - theirs))))
    return gap


@functools.cache
def _casadi_solver(data: ProblemData, method: str, warm: bool, tol: float, max_iter: int) -> Any:
    """The IPOPT solver of ``data`` (cached: built once per problem and setting)."""
    n, m, horizon = data.state_dim, data.control_dim, data.horizon
    step = casadi_step_function(data)
    x0 = casadi.SX.sym("x0", n)
    controls = casadi.SX.sym("U", m, horizon)
    goal = casadi.DM(data.goal)
    q, r, qf = casadi.DM(data.Q), casadi.DM(data.R), casadi.DM(data.Qf)

    def running(x: Any, u: Any) -> Any:
        e = x - goal
        return 0.5 * casadi.mtimes([e.T, q, e]) + 0.5 * casadi.mtimes([u.T, r, u])

    def final(x: Any) -> Any:
        e = x - goal
        return 0.5 * casadi.mtimes([e.T, qf, e])

    objective = 0
    if method == "multiple":
        states = casadi.SX.sym("X", n, horizon + 1)
        constraints = [states[:, 0] - x0]
        for t in range(horizon):
            objective += running(states[:, t], controls[:, t])
            constraints.append(step(states[:, t], controls[:, t]) - states[:, t + 1])
        objective += final(states[:, horizon])
        variables = casadi.vertcat(casadi.vec(states), casadi.vec(controls))
        g = casadi.vertcat(*constraints)
    else:
        x = x0
        for t in range(horizon):
            objective += running(x, controls[:, t])
            x = step(x, controls[:, t])
        objective += final(x)
        variables = casadi.vec(controls)
        g = casadi.SX(0, 1)
    options: dict[str, Any] = {
        "print_time": False,
        "ipopt.print_level": 0,
        "ipopt.sb": "yes",
        "ipopt.tol": tol,
        "ipopt.max_iter": max_iter,
    }
    if warm:
        options.update(
            {
                "ipopt.warm_start_init_point": "yes",
                "ipopt.mu_init": 1e-6,
                "ipopt.warm_start_bound_push": 1e-9,
                "ipopt.warm_start_mult_bound_push": 1e-9,
                "ipopt.warm_start_slack_bound_push": 1e-9,
            }
        )
    nlp = {"x": variables, "p": x0, "f": objective, "g": g}
    return casadi.nlpsol(f"ipopt_{method}_shooting", "ipopt", nlp, options)


def _casadi_bounds(data: ProblemData, method: str) -> tuple[np.ndarray, np.ndarray, int]:
    n, horizon = data.state_dim, data.horizon
    u_lo = np.tile(data.lower, horizon)
    u_hi = np.tile(data.upper, horizon)
    if method == "single":
        return u_lo, u_hi, 0
    num_states = n * (horizon + 1)
    lo = np.concatenate([np.full(num_states, -np.inf), u_lo])
    hi = np.concatenate([np.full(num_states, np.inf), u_hi])
    return lo, hi, num_states


def _simulate_numpy(data: ProblemData, x0: np.ndarray, controls: np.ndarray) -> np.ndarray:
    step = casadi_step_function(data)
    states = [np.asarray(x0, np.float64)]
    for u in controls:
        states.append(np.asarray(step(states[-1], u)).ravel())
    return np.stack(states)


def shift(sequence: np.ndarray) -> np.ndarray:
    """A receding-horizon warm start: drop the first row, repeat the last."""
    sequence = np.asarray(sequence)
    return np.concatenate([sequence[1:], sequence[-1:]])


def casadi_solve(
    data: ProblemData,
    x0: Any = None,
    U0: Any = None,
    warm: dict[str, Any] | None = None,
    *,
    method: str = "multiple",
    tol: float = 1e-8,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Solve ``data``'s bounded problem with CasADi + IPOPT (exact Hessian).

    Cold (``warm=None``): the initial guess is ``U0`` (default zeros) and, for multiple
    shooting, the states it simulates to. Warm: ``warm`` is a previous result of this function
    (for the previous initial state); its states, controls and multipliers are shifted one
    period (``shift``) and IPOPT is warm-started (``warm_start_init_point``, ``mu_init
    = 1e-6``). The solver is built once per problem and setting (cached); building is not timed.

    Args:
        data: the problem.
        x0: the initial state (default ``data.x0``).
        U0: the initial controls, shape ``(T, m)`` (default zeros; ignored when ``warm``).
        warm: a previous result to shift and warm-start from.
        method: ``"multiple"`` (direct multiple shooting) or ``"single"`` (single shooting).
        tol: IPOPT's ``tol``.
        max_iter: IPOPT's ``max_iter``.

    Returns:
        A dict with ``controls`` ``(T, m)``, ``states`` ``(T+1, n)`` (simulated from ``x0``),
        ``iterations`` (IPOPT's), ``seconds`` (the wall time of the solver call), ``status``
        (IPOPT's return status), ``success``, ``objective`` (IPOPT's), ``ipopt_seconds``
        (IPOPT's own ``t_wall_total``), and the multipliers ``lam_x``, ``lam_g`` and primal
        ``z`` for a later warm start.

    Raises:
        RuntimeError: casadi is not installed.
        ValueError: an unknown ``method`` or a badly shaped ``x0`` / ``U0``.
    """
    _require_casadi()
    if method not in ("multiple", "single"):
        raise ValueError(f'method must be "multiple" or "single", got {method!r}')
    n, m, horizon = data.state_dim, data.control_dim, data.horizon
    x0 = np.asarray(data.x0 if x0 is None else x0, np.float64)
    if x0.shape != (n,):
        raise ValueError(f"x0 must have shape ({n},), got {x0.shape}")
    solver = _casadi_solver(data, method, warm is not None, tol, max_iter)
    lo, hi, num_states = _casadi_bounds(data, method)
    kwargs: dict[str, Any] = {"p": x0, "lbx": lo, "ubx": hi}
    if method == "multiple":
        kwargs.update(lbg=0.0, ubg=0.0)
    if warm is None:
        controls = np.zeros((horizon, m)) if U0 is None else np.asarray(U0, np.float64)
        if controls.shape != (horizon, m):
            raise ValueError(f"U0 must have shape ({horizon}, {m}), got {controls.shape}")
        controls = np.clip(controls, data.lower, data.upper)
        guess = controls.ravel()
        if method == "multiple":
            guess = np.concatenate([_simulate_numpy(data, x0, controls).ravel(), guess])
        kwargs["x0"] = guess
    else:
        states = shift(warm["states"])
        states[0] = x0
        controls = shift(warm["controls"])
        guess = controls.ravel()
        lam_x_u = shift(np.asarray(warm["lam_x"])[num_states:].reshape(horizon, m)).ravel()
        lam_x = lam_x_u
        if method == "multiple":
            guess = np.concatenate([states.ravel(), guess])
            lam_x = np.concatenate([np.zeros(num_states), lam_x_u])
            lam_g = np.asarray(warm["lam_g"]).reshape(horizon + 1, n)
            kwargs["lam_g0"] = shift(lam_g).ravel()
        kwargs.update(x0=guess, lam_x0=lam_x)
    start = time.perf_counter()
    solution = solver(**kwargs)
    seconds = time.perf_counter() - start
    stats = solver.stats()
    z = np.asarray(solution["x"]).ravel()
    controls = z[num_states:].reshape(horizon, m)
    return {
        "controls": controls,
        "states": _simulate_numpy(data, x0, controls),
        "iterations": int(stats["iter_count"]),
        "seconds": seconds,
        "ipopt_seconds": float(stats.get("t_wall_total", np.nan)),
        "status": str(stats["return_status"]),
        "success": bool(stats["success"]),
        "objective": float(solution["f"]),
        "z": z,
        "lam_x": np.asarray(solution["lam_x"]).ravel(),
        "lam_g": np.asarray(solution["lam_g"]).ravel(),
    }


# --------------------------------------------------------------------------------------------
# trajax iLQR
# --------------------------------------------------------------------------------------------


class _JaxView(types.ModuleType):
    """``jax`` as trajax's ``optimizers`` module sees it once patched: ``jax`` plus ``tree_map``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(jax, name)


def patch_trajax(optimizers: types.ModuleType) -> bool:
    """Make trajax's ``optimizers`` module run on current JAX (idempotent).

    trajax calls ``jax.tree_map``, which JAX removed (JAX 0.10 raises ``AttributeError``), in
    ``_pytree_zeros_like`` / ``_pytree_scale`` / ``_pytree_add`` and ``vhp_params``: every
    backward pass of ``ilqr`` (its custom VJPs) fails, while the forward solve runs. The patch
    replaces the module's global ``jax`` by a view of ``jax`` that adds
    ``tree_map = jax.tree.map``; the real ``jax`` module is not modified.

    Args:
        optimizers: the ``trajax.optimizers`` module.

    Returns:
        Whether a patch was applied (``False``: already patched or not needed).
    """
    current = optimizers.jax
    if isinstance(current, _JaxView) or hasattr(current, "tree_map"):
        return False
    view = _JaxView("jax", "jax with tree_map restored for trajax")
    view.tree_map = jax.tree.map
    optimizers.jax = view
    LOG.info("patched trajax.optimizers: jax.tree_map -> jax.tree.map")
    return True


@functools.cache
def _trajax_optimizers() -> types.ModuleType:
    """``trajax.optimizers`` from ``$TRAJAX_PATH`` (or an installed google/trajax), patched."""
    path = os.environ.get(TRAJAX_ENV)
    if path:
        if not Path(path, "trajax", "optimizers.py").is_file():
            raise ImportError(f"{TRAJAX_ENV}={path} has no trajax/optimizers.py")
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        optimizers = importlib.import_module("trajax.optimizers")
    except ImportError as error:
        raise ImportError(
            f"google/trajax not found: set {TRAJAX_ENV} to a source tree of "
            "https://github.com/google/trajax (the PyPI 'trajax' is another library)"
        ) from error
    if not hasattr(optimizers, "ilqr"):
        raise ImportError(f"{optimizers.__file__} is not google/trajax (no optimizers.ilqr)")
    patch_trajax(optimizers)
    return optimizers


def trajax_available() -> bool:
    """Whether google/trajax imports (from ``$TRAJAX_PATH``); logs why not."""
    try:
        _trajax_optimizers()
    except ImportError as error:
        LOG.warning("trajax baseline unavailable: %s", error)
        return False
    return True


def _squash(data: ProblemData, bounded: bool) -> Callable[[jax.Array], jax.Array]:
    """``v -> u``: ``u_max tanh(v)`` when ``bounded`` (symmetric bounds), else the identity."""
    if not bounded:
        return lambda v: v
    if not np.allclose(data.lower, -data.upper):
        raise ValueError("the squashed trajax baseline needs symmetric bounds")
    return lambda v: jnp.asarray(data.upper, v.dtype) * jnp.tanh(v)


def _unsquash(data: ProblemData, controls: np.ndarray, bounded: bool) -> np.ndarray:
    """``u -> v`` (the inverse of ``_squash``, with ``u`` pulled just inside the bounds)."""
    if not bounded:
        return np.asarray(controls, np.float64)
    ratio = np.clip(np.asarray(controls, np.float64) / data.upper, -1 + 1e-6, 1 - 1e-6)
    return np.arctanh(ratio)


def _trajax_functions(
    data: ProblemData, bounded: bool, params: Any = None
) -> tuple[Callable, Callable]:
    """trajax's ``cost(x, v, t)`` and ``dynamics(x, v, t)`` for ``data`` (``t`` an integer).

    The dynamics are opifex's RK4 step and the cost opifex's quadratic cost (final cost at
    ``t = T``), of the controls ``u = squash(v)``.
    """
    problem = data.trajectory_problem(bounded=False)
    cost_params = problem.default_theta[1]
    model_params = data.params if params is None else params
    squash = _squash(data, bounded)
    horizon, dt = data.horizon, data.dt

    def dynamics(x: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
        return problem.step(x, squash(v), t * dt, model_params)

    def cost(x: jax.Array, v: jax.Array, t: jax.Array) -> jax.Array:
        running = problem.running_cost(x, squash(v), t * dt, cost_params)
        return jnp.where(t == horizon, problem.final_cost(x, cost_params), running)

    return cost, dynamics


@functools.cache
def _trajax_solver(
    data: ProblemData, bounded: bool, maxiter: int, grad_norm_threshold: float
) -> dict[str, Any]:
    """The jitted trajax solve of ``data`` and a slot for its compiled executable."""
    optimizers = _trajax_optimizers()
    cost, dynamics = _trajax_functions(data, bounded)
    squash = _squash(data, bounded)

    def solve(x0: jax.Array, v0: jax.Array) -> tuple[jax.Array, ...]:
        states, raw, objective, gradient, _, _, iterations = optimizers.ilqr(
            cost,
            dynamics,
            x0,
            v0,
            maxiter=maxiter,
            grad_norm_threshold=grad_norm_threshold,
        )
        return states, squash(raw), raw, objective, jnp.linalg.norm(gradient), iterations

    return {"jitted": jax.jit(solve), "compiled": None, "compile_seconds": None}


def trajax_solve(
    data: ProblemData,
    x0: Any = None,
    U0: Any = None,
    bounded: bool = True,
    warm: dict[str, Any] | None = None,
    *,
    maxiter: int = 500,
    grad_norm_threshold: float = 1e-6,
) -> dict[str, Any]:
    """Solve ``data`` with trajax's iLQR (``trajax.optimizers.ilqr``, default settings else).

    The solve is jitted and compiled once per problem and setting; ``compile_seconds`` is the
    time of that compilation (lowering included) and ``seconds`` the wall time of the compiled
    call (``block_until_ready``), never including compilation.

    Args:
        data: the problem.
        x0: the initial state (default ``data.x0``).
        U0: initial controls ``(T, m)`` (default zeros; with ``bounded`` mapped to
            ``v = artanh(u / u_max)``); ignored when ``warm`` is given.
        bounded: ``False``: the unbounded problem; ``True``: the bounded problem with
            ``u = u_max tanh(v)`` inside the dynamics and the cost.
        warm: a previous result of this function: its raw controls ``v`` shifted one period.
        maxiter: trajax's ``maxiter``.
        grad_norm_threshold: trajax's ``grad_norm_threshold`` (on ``||dJ/dv||_2``; trajax's
            default is ``1e-4``).

    Returns:
        A dict with ``controls`` ``(T, m)`` (the applied ``u``), ``raw_controls`` (trajax's
        ``v``), ``states`` ``(T+1, n)``, ``iterations``, ``seconds``, ``compile_seconds``,
        ``objective`` (trajax's), ``grad_norm`` (``||dJ/dv||`` at the end), ``status``
        (``"converged"``, ``"max_iterations"`` or ``"stalled"``: the line search fell below
        ``alpha_min`` or the gradient is not finite).

    Raises:
        ImportError: trajax is not available (see ``trajax_available``).
        ValueError: a badly shaped ``x0`` / ``U0``.
    """
    solver = _trajax_solver(data, bounded, maxiter, grad_norm_threshold)
    n, m, horizon = data.state_dim, data.control_dim, data.horizon
    dtype = jnp.result_type(float)
    x0 = np.asarray(data.x0 if x0 is None else x0, np.float64)
    if x0.shape != (n,):
        raise ValueError(f"x0 must have shape ({n},), got {x0.shape}")
    if warm is not None:
        v0 = shift(warm["raw_controls"])
    else:
        controls = np.zeros((horizon, m)) if U0 is None else np.asarray(U0, np.float64)
        if controls.shape != (horizon, m):
            raise ValueError(f"U0 must have shape ({horizon}, {m}), got {controls.shape}")
        v0 = _unsquash(data, controls, bounded)
    args = (jnp.asarray(x0, dtype), jnp.asarray(v0, dtype))
    if solver["compiled"] is None:
        start = time.perf_counter()
        solver["compiled"] = solver["jitted"].lower(*args).compile()
        solver["compile_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(solver["compiled"](*args))
    seconds = time.perf_counter() - start
    states, controls, raw, objective, grad_norm, iterations = (np.asarray(a) for a in out)
    iterations = int(iterations)
    if np.isfinite(grad_norm) and grad_norm <= grad_norm_threshold:
        status = "converged"
    elif iterations >= maxiter:
        status = "max_iterations"
    else:
        status = "stalled"
    return {
        "controls": controls,
        "raw_controls": raw,
        "states": states,
        "iterations": iterations,
        "seconds": seconds,
        "compile_seconds": solver["compile_seconds"],
        "objective": float(objective),
        "grad_norm": float(grad_norm),
        "status": status,
        "success": status == "converged",
    }


def trajax_gradient_check(
    data: ProblemData,
    *,
    bounded: bool = False,
    vjp_methods: tuple[str, ...] = ("tvlqr", "explicit", "cg"),
    eps: float = 1e-5,
    seed: int = 0,
    maxiter: int = 1000,
    grad_norm_threshold: float = 1e-9,
) -> dict[str, Any]:
    """trajax's gradients of its solution w.r.t. ``x0`` and the model parameters, against FD.

    The scalar is ``L = <w_X, X*> + <w_U, U*>`` of trajax's solution ``(X*, U*)`` from
    ``data.x0``, with fixed random weights ``w``; the model parameters enter the dynamics as
    closed-over traced values (trajax hoists them into ``dynamics_args`` with
    ``closure_convert``, the documented way). ``jax.grad`` through ``trajax.optimizers.ilqr``
    with each ``vjp_method`` is compared with central finite differences of the converged
    solve (step ``eps``). Needs float64 to be meaningful.

    Args:
        data: the problem.
        bounded: solve the squashed bounded problem instead of the unbounded one.
        vjp_methods: trajax's ``vjp_method`` values to try.
        eps: the finite-difference step.
        seed: seed of the weights ``w``.
        maxiter: iLQR's ``maxiter`` (the solve must converge for the check to mean anything).
        grad_norm_threshold: iLQR's stopping tolerance.

    Returns:
        A dict: ``finite_difference`` (``x0``: array, ``params``: dict), ``solve`` (iterations,
        grad_norm), and per method ``x0``, ``params``, ``rel_error_x0``,
        ``rel_error_params`` (``||g - g_fd|| / ||g_fd||``) or ``error`` (the exception text).

    Raises:
        ImportError: trajax is not available.
    """
    optimizers = _trajax_optimizers()
    n, m, horizon = data.state_dim, data.control_dim, data.horizon
    names = sorted(data.params)
    rng = np.random.default_rng(seed)
    w_states = jnp.asarray(rng.normal(size=(horizon + 1, n)))
    w_controls = jnp.asarray(rng.normal(size=(horizon, m)))
    v0 = jnp.zeros((horizon, m))
    squash = _squash(data, bounded)

    def loss(x0: jax.Array, params: dict[str, jax.Array], method: str) -> tuple[jax.Array, ...]:
        cost, dynamics = _trajax_functions(data, bounded, params)
        states, raw, _, gradient, _, _, iterations = optimizers.ilqr(
            cost,
            dynamics,
            x0,
            v0,
            maxiter=maxiter,
            grad_norm_threshold=grad_norm_threshold,
            vjp_method=method,
        )
        value = jnp.sum(w_states * states) + jnp.sum(w_controls * squash(raw))
        return value, (iterations, jnp.linalg.norm(gradient))

    x0 = jnp.asarray(data.x0)
    params = {k: jnp.asarray(data.params[k]) for k in names}
    forward = jax.jit(lambda x, p: loss(x, p, "tvlqr")[0])
    _, (iterations, grad_norm) = jax.jit(lambda x, p: loss(x, p, "tvlqr"))(x0, params)

    fd_x0 = np.array(
        [
            (forward(x0.at[i].add(eps), params) - forward(x0.at[i].add(-eps), params)) / (2 * eps)
            for i in range(n)
        ]
    )
    fd_params = {}
    for k in names:
        plus = {**params, k: params[k] + eps}
        minus = {**params, k: params[k] - eps}
        fd_params[k] = float((forward(x0, plus) - forward(x0, minus)) / (2 * eps))
    fd_params_vec = np.array([fd_params[k] for k in names])
    reference = _ift_reference(data, bounded, names, w_states, w_controls)
    report: dict[str, Any] = {
        "problem": data.name,
        "bounded": bounded,
        "solve": {"iterations": int(iterations), "grad_norm": float(grad_norm)},
        "finite_difference": {"x0": fd_x0, "params": fd_params},
        "ift_reference": reference,
    }

    def rel(g: np.ndarray, ref: np.ndarray) -> float:
        return float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-300))

    for method in vjp_methods:
        grad = jax.jit(jax.grad(lambda x, p, m=method: loss(x, p, m)[0], argnums=(0, 1)))
        try:
            g_x0, g_params = grad(x0, params)
        except Exception as error:  # report what trajax does, whatever it raises
            report[method] = {"error": f"{type(error).__name__}: {error}"}
            continue
        g_x0 = np.asarray(g_x0)
        g_params_vec = np.array([float(g_params[k]) for k in names])
        report[method] = {
            "x0": g_x0,
            "params": dict(zip(names, g_params_vec.tolist(), strict=True)),
            "rel_error_x0": rel(g_x0, fd_x0),
            "rel_error_params": rel(g_params_vec, fd_params_vec),
        }
    return report


def _ift_reference(
    data: ProblemData,
    bounded: bool,
    names: list[str],
    w_states: jax.Array,
    w_controls: jax.Array,
) -> dict[str, Any]:
    """The implicit-function-theorem gradient computed independently of trajax.

    At a converged trajax solution ``v*``: ``dL/dz = L_z - L_v H^{-1} J_vz`` with ``H`` the
    dense Hessian of opifex's ``total_cost`` in ``v`` and ``z = (x0, params)``; also the
    condition number of ``H`` (it bounds how well any implicit gradient can match FD).
    """
    result = trajax_solve(data, bounded=bounded, maxiter=1000, grad_norm_threshold=1e-9)
    problem = data.trajectory_problem(bounded=False)
    cost = problem.default_theta[1]
    squash = _squash(data, bounded)
    n, horizon, m = data.state_dim, data.horizon, data.control_dim

    def unpack(z: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return z[:n], {k: z[n + i] for i, k in enumerate(names)}

    def objective(v: jax.Array, z: jax.Array) -> jax.Array:
        x0, params = unpack(z)
        return problem.total_cost(squash(v.reshape(horizon, m)), x0, (params, cost))

    def loss(v: jax.Array, z: jax.Array) -> jax.Array:
        x0, params = unpack(z)
        controls = squash(v.reshape(horizon, m))
        states = problem.rollout(controls, x0, (params, cost))
        return jnp.sum(w_states * states) + jnp.sum(w_controls * controls)

    v = jnp.asarray(result["raw_controls"]).ravel()
    z = jnp.concatenate([jnp.asarray(data.x0), jnp.asarray([data.params[k] for k in names])])
    hessian = jax.hessian(objective)(v, z)
    mixed = jax.jacfwd(jax.grad(objective), argnums=1)(v, z)
    loss_v, loss_z = jax.grad(loss, argnums=(0, 1))(v, z)
    total = np.asarray(loss_z - loss_v @ jnp.linalg.solve(hessian, mixed))
    eigenvalues = np.abs(np.linalg.eigvalsh(np.asarray(hessian)))
    return {
        "x0": total[:n],
        "params": dict(zip(names, total[n:].tolist(), strict=True)),
        "hessian_condition": float(eigenvalues.max() / eigenvalues.min()),
        "projected_grad_norm": float(np.linalg.norm(jax.grad(objective)(v, z))),
    }


# --------------------------------------------------------------------------------------------
# Receding horizon and scoring
# --------------------------------------------------------------------------------------------


@functools.cache
def _plant_step(data: ProblemData) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The true system for receding-horizon runs: opifex's RK4 step of ``data``'s model."""
    step = jax.jit(data.trajectory_problem().step)
    params = data.params
    return lambda x, u: np.asarray(step(jnp.asarray(x), jnp.asarray(u), 0.0, params))


def receding_horizon(
    solve: Callable[..., dict[str, Any]], data: ProblemData, steps: int = 10, **options: Any
) -> dict[str, Any]:
    """Closed-loop MPC steps with warm starts: the cost of one receding-horizon step.

    Solves cold from ``data.x0`` and ``U = 0``, then ``steps`` times applies the first control
    to the plant (the model itself), and re-solves from the new state warm-started from the
    shifted previous solution (``solve(data, x, warm=previous)``).

    Args:
        solve: ``casadi_solve`` or ``trajax_solve`` (any function with their signature).
        data: the problem.
        steps: the number of warm re-solves.
        **options: passed to every ``solve`` call (e.g. ``bounded=True``, ``method="single"``).

    Returns:
        A dict: ``cold`` (the first result), ``seconds`` and ``iterations`` (lists, one per
        warm step), ``median_seconds``, ``median_iterations``, ``statuses`` and ``states``
        (the closed-loop states, ``(steps + 1, n)``).
    """
    plant = _plant_step(data)
    result = solve(data, data.x0, **options)
    cold, x = result, np.asarray(data.x0, np.float64)
    seconds, iterations, statuses, states = [], [], [], [x]
    for _ in range(steps):
        x = plant(x, result["controls"][0])
        result = solve(data, x, warm=result, **options)
        seconds.append(result["seconds"])
        iterations.append(result["iterations"])
        statuses.append(result["status"])
        states.append(x)
    return {
        "cold": cold,
        "seconds": seconds,
        "iterations": iterations,
        "median_seconds": float(np.median(seconds)),
        "median_iterations": float(np.median(iterations)),
        "statuses": statuses,
        "states": np.stack(states),
    }


def opifex_cost(data: ProblemData, controls: Any, x0: Any = None) -> float:
    """``TrajectoryProblem.total_cost`` of ``controls`` (as given, not clipped) from ``x0``."""
    problem = data.trajectory_problem()
    x0 = data.x0 if x0 is None else x0
    dtype = jnp.result_type(float)
    value = problem.total_cost(
        jnp.asarray(controls, dtype), jnp.asarray(x0, dtype), problem.default_theta
    )
    return float(value)


def summarize(data: ProblemData, result: dict[str, Any]) -> dict[str, Any]:
    """The comparable numbers of a solve: opifex cost, feasibility, final angle, active bounds."""
    controls = np.asarray(result["controls"])
    angle = data.state_names.index("theta")
    violation = float(np.max(np.maximum(controls - data.upper, data.lower - controls)))
    return {
        "cost": opifex_cost(data, controls),
        "max_bound_violation": max(violation, 0.0),
        "theta_T": float(result["states"][-1, angle]),
        "active_bounds": int(np.sum(np.abs(controls) >= data.upper - 1e-6)),
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _median_cold(solve: Callable[..., dict[str, Any]], data: ProblemData, repeats: int, **kw):
    results = [solve(data, data.x0, **kw) for _ in range(repeats)]
    return results[-1], float(np.median([r["seconds"] for r in results]))


def baseline_rows(data: ProblemData, repeats: int = 5, mpc_steps: int = 10) -> list[dict]:
    """Every available baseline on ``data``: one row each (the ``__main__`` report's table)."""
    runs: list[tuple[str, Callable, dict[str, Any]]] = []
    if casadi_available():
        runs += [
            ("casadi ipopt multiple shooting", casadi_solve, {"method": "multiple"}),
            ("casadi ipopt single shooting", casadi_solve, {"method": "single"}),
        ]
    if trajax_available():
        runs += [
            ("trajax ilqr unbounded", trajax_solve, {"bounded": False}),
            ("trajax ilqr tanh-squashed", trajax_solve, {"bounded": True}),
        ]
    rows = []
    for label, solve, kw in runs:
        result, cold_seconds = _median_cold(solve, data, repeats, **kw)
        mpc = receding_horizon(solve, data, mpc_steps, **kw)
        rows.append(
            {
                "solver": label,
                "status": result["status"],
                "iterations": result["iterations"],
                "cold_seconds": cold_seconds,
                "compile_seconds": result.get("compile_seconds"),
                "warm_step_seconds": mpc["median_seconds"],
                "warm_step_iterations": mpc["median_iterations"],
                **summarize(data, result),
            }
        )
    return rows


def main() -> None:
    """Print the baselines' numbers on both benchmark problems (float64)."""
    import problems

    jax.config.update("jax_enable_x64", True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not casadi_available():
        print("casadi not installed: the CasADi + IPOPT baseline is skipped (pip install casadi)")
    if not trajax_available():
        print(f"trajax unavailable: set {TRAJAX_ENV} to a google/trajax source tree")
    for name in problems.PROBLEMS:
        data = problems.get_problem(name).data
        print(f"\n== {name}: T = {data.horizon}, dt = {data.dt}, |u| <= {data.upper[0]:g}")
        if casadi_available():
            print(f"CasADi vs opifex RK4 step, max gap: {check_same_model(data):.2e}")
        header = (
            f"{'solver':32s} {'status':22s} {'iter':>5s} {'cold s':>8s} {'compile s':>9s} "
            f"{'warm s':>8s} {'w.it':>5s} {'opifex cost':>12s} {'viol':>7s} {'theta_T':>8s} "
            f"{'active':>6s}"
        )
        print(header)
        for row in baseline_rows(data):
            compile_s = row["compile_seconds"]
            print(
                f"{row['solver']:32s} {row['status'][:22]:22s} {row['iterations']:5d} "
                f"{row['cold_seconds']:8.4f} "
                f"{'-' if compile_s is None else f'{compile_s:.2f}':>9s} "
                f"{row['warm_step_seconds']:8.4f} {row['warm_step_iterations']:5.1f} "
                f"{row['cost']:12.4f} {row['max_bound_violation']:7.2f} {row['theta_T']:8.4f} "
                f"{row['active_bounds']:6d}"
            )
        if trajax_available():
            check = trajax_gradient_check(data)
            fd = check["finite_difference"]
            print(
                f"trajax gradient of <w, (X*, U*)> (unbounded solve: {check['solve']}); "
                f"finite differences: x0 {np.round(fd['x0'], 4)}, "
                f"params { {k: round(v, 4) for k, v in fd['params'].items()} }"
            )
            ref = check["ift_reference"]
            print(
                f"  independent IFT (dense Hessian, condition {ref['hessian_condition']:.1e}, "
                f"||dJ/dU|| {ref['projected_grad_norm']:.1e}): x0 {np.round(ref['x0'], 4)}, "
                f"params { {k: round(v, 4) for k, v in ref['params'].items()} }"
            )
            for method in ("tvlqr", "explicit", "cg"):
                entry = check[method]
                if "error" in entry:
                    print(f"  vjp_method={method}: {entry['error']}")
                    continue
                print(
                    f"  vjp_method={method}: x0 {np.round(entry['x0'], 4)} "
                    f"(rel. error {entry['rel_error_x0']:.1e}), params "
                    f"{ {k: round(v, 4) for k, v in entry['params'].items()} } "
                    f"(rel. error {entry['rel_error_params']:.1e})"
                )


if __name__ == "__main__":
    main()
