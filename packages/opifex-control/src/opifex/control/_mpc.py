"""Receding-horizon control: solve, apply the first control, shift the plan, repeat.

``mpc_step`` is the pure, jit-compiled core: it warm-starts a trajectory solver (``ILQR`` or
``DirectShooting``) from the previous solution shifted by one period, runs it for a fixed
iteration budget (a traced value, so a new budget never recompiles), and applies the first
control of the best iterate. After an iLQR solve the warm start is closed-loop: the shifted
plan is rolled out from the measured state through the solution's feedback gains
(``u_t = u*_t + K_t (x_t - x*_t)``), so a plant that drifts from the model starts the next
solve from a corrected plan rather than an open-loop one that may sit in another basin.
 A solve that ends non-finite or diverged is replaced by a safe fallback (the
previous plan's control for this period, or the caller's ``fallback(x)``), and the status says
so. ``closed_loop`` runs a whole episode as one ``lax.scan``; ``MPCController`` is the stateful
façade (``controller.step(x) -> u``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from opifex.control._ilqr import ILQR
from opifex.control._problem import TrajectoryProblem
from opifex.core import SolveStatus, check_choice, check_int_at_least, run_solver

Array = jax.Array
WARM_STARTS = ("feedback", "shift")


class MPCState(NamedTuple):
    """What the controller carries between control periods.

    Attributes:
        plan: the last solution's controls shifted by one period, ``(T, m)``.
        states: its states shifted alike, ``(T, n)`` (where the plan expects to be).
        gains: its feedback gains shifted alike, ``(T, m, n)`` (zero: open-loop warm start).
        status: the last solve's ``SolveStatus`` code.
        num_steps: the last solve's iterations.
        value: the last solve's planned cost.
        used_fallback: whether the last control came from the fallback.
    """

    plan: Array
    states: Array
    gains: Array
    status: Array
    num_steps: Array
    value: Array
    used_fallback: Array


def _shift(plan: Array) -> Array:
    """Drop the first control and repeat the last one."""
    return jnp.concatenate([plan[1:], plan[-1:]])


def _warm_start(problem: TrajectoryProblem, state: MPCState, x: Array, theta: Any) -> Array:
    """The shifted plan rolled out from ``x`` through the shifted feedback gains, clipped."""
    _, controls = problem.rollout_policy(state.plan, state.states, state.gains, x, theta)
    return jnp.where(jnp.all(jnp.isfinite(controls)), controls, state.plan)


def mpc_init(problem: TrajectoryProblem, controls: Array | None = None) -> MPCState:
    """The initial controller state: ``controls`` (default zeros, clipped) as the first plan.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import TrajectoryProblem, pendulum, quadratic_cost
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     pendulum(), quadratic_cost([1.0, 0.1], [0.01]), horizon=10, dt=0.1)
        >>> mpc_init(problem).plan.shape
        (10, 1)
    """
    if controls is None:
        controls = jnp.zeros((problem.horizon, problem.control_dim))
    plan = problem.clip(problem.check_controls(controls))
    zero = jnp.zeros((), plan.dtype)
    n, (horizon, m) = problem.state_dim, plan.shape
    return MPCState(
        plan,
        jnp.zeros((horizon, n), plan.dtype),
        jnp.zeros((horizon, m, n), plan.dtype),
        jnp.asarray(SolveStatus.SUCCESS, jnp.int32),
        jnp.zeros((), jnp.int32),
        zero,
        jnp.zeros((), bool),
    )


def mpc_step(
    solver: Any,
    state: MPCState,
    x: Array,
    theta: Any,
    max_steps: int | Array,
    *,
    trace_length: int,
    fallback: Callable[[Array], Array] | None = None,
    warm_start: str = "feedback",
) -> tuple[Array, MPCState]:
    """One control period: warm-started solve from ``x``, first control, shifted plan.

    Args:
        solver: an ``ILQR`` or ``DirectShooting`` (any solver over the ``TrajectoryProblem``).
        state: the controller state (``mpc_init`` or the previous ``mpc_step``).
        x: the measured state.
        theta: ``(dynamics_params, cost_params)``.
        max_steps: the iteration budget of this period (traced: no recompilation).
        trace_length: the static trace length (an upper bound on ``max_steps``).
        fallback: ``fallback(x) -> u`` used when the solve fails (default: the previous plan's
            control for this period).
        warm_start: ``"feedback"`` (default: the shifted plan rolled out through the last
            solution's feedback gains, when the solver gives them) or ``"shift"`` (the shifted
            plan as it is, open loop).

    Returns:
        ``(u, new_state)``; ``new_state.status`` is ``NONFINITE`` or ``DIVERGED`` (and
        ``used_fallback`` true) when the fallback was applied. Running out of budget is
        ``MAX_STEPS_REACHED`` and still applies the best iterate.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import ILQR, TrajectoryProblem, pendulum, quadratic_cost
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     pendulum(), quadratic_cost([1.0, 0.1], [0.01]), horizon=10, dt=0.1)
        >>> u, state = mpc_step(ILQR(problem), mpc_init(problem), jnp.array([0.3, 0.0]),
        ...                     problem.default_theta, 5, trace_length=5)
        >>> u.shape, bool(u[0] < 0)     # pushes back towards upright
        ((1,), True)
    """
    check_choice(warm_start, WARM_STARTS, "warm_start")
    problem: TrajectoryProblem = solver.problem
    start = state.plan if warm_start == "shift" else _warm_start(problem, state, x, theta)
    result = run_solver(solver, start, x, theta, max_steps=max_steps, trace_length=trace_length)
    plan = result.params
    failed = (
        (result.status == SolveStatus.NONFINITE)
        | (result.status == SolveStatus.DIVERGED)
        | ~jnp.all(jnp.isfinite(plan))
    )
    lower, upper = problem.bounds(plan.dtype)
    safe = state.plan[0] if fallback is None else jnp.clip(fallback(x), lower[0], upper[0])
    safe = jnp.where(jnp.all(jnp.isfinite(safe)), safe, jnp.clip(0.0, lower[0], upper[0]))
    u = jnp.where(failed, safe, plan[0])
    gains = getattr(result.aux, "feedback", None)
    if gains is None or warm_start == "shift":  # open-loop warm starts
        gains, states = state.gains, state.states
    else:
        gains, states = _shift(gains), result.aux.states[1:]
    zero = jnp.zeros_like(state.gains)
    new_state = MPCState(
        _shift(jnp.where(failed, state.plan, plan)),
        jnp.where(failed, state.states, states),
        jnp.where(failed | ~jnp.all(jnp.isfinite(gains)), zero, gains),
        result.status,
        result.num_steps,
        result.value,
        failed,
    )
    return u, lax.stop_gradient(new_state)


class ClosedLoop(NamedTuple):
    """An episode: states ``x_0 .. x_N``, the applied controls, and each period's solve."""

    states: Array
    controls: Array
    status: Array
    num_steps: Array
    used_fallback: Array


def closed_loop(
    solver: Any,
    plant: Callable[[Array, Array, Array], Array],
    x0: Array,
    num_periods: int,
    theta: Any,
    max_steps: int | Array,
    *,
    trace_length: int,
    initial_controls: Array | None = None,
    fallback: Callable[[Array], Array] | None = None,
    warm_start: str = "feedback",
) -> ClosedLoop:
    """Run MPC against ``plant(x, u, t) -> x_next`` for ``num_periods`` periods (one scan).

    The plant may differ from the solver's model (disturbances, a mismatched model). The
    keyword arguments are ``mpc_step``'s.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import (ILQR, TrajectoryProblem, discretize, pendulum,
        ...                             quadratic_cost)
        >>> model = pendulum()
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     model, quadratic_cost([1.0, 0.1], [0.01]), horizon=10, dt=0.1)
        >>> step = discretize(model, 0.1)
        >>> episode = closed_loop(ILQR(problem), lambda x, u, t: step(x, u, t),
        ...                       jnp.array([0.1, 0.0]), 30, problem.default_theta, 5,
        ...                       trace_length=5)
        >>> bool(jnp.abs(episode.states[-1, 0]) < 0.05)
        True
    """
    check_int_at_least(num_periods, 1, "num_periods")
    state = mpc_init(solver.problem, initial_controls)

    def period(carry: tuple, t: Array) -> tuple[tuple, tuple]:
        x, state = carry
        u, state = mpc_step(
            solver,
            state,
            x,
            theta,
            max_steps,
            trace_length=trace_length,
            fallback=fallback,
            warm_start=warm_start,
        )
        x_next = plant(x, u, t * solver.problem.dt)
        return (x_next, state), (x, u, state.status, state.num_steps, state.used_fallback)

    times = jnp.arange(num_periods, dtype=jnp.result_type(x0))
    (last, _), (xs, us, status, steps, fallbacks) = lax.scan(period, (x0, state), times)
    return ClosedLoop(jnp.concatenate([xs, last[None]]), us, status, steps, fallbacks)


class MPCController:
    """A receding-horizon controller: ``controller.step(x) -> u``, jit-compiled once.

    Args:
        problem: the trajectory problem solved each period.
        solver: ``"ilqr"`` (default), or a solver over ``problem`` (``ILQR``,
            ``DirectShooting``).
        max_steps: the iteration budget per control period (change it per call with
            ``step(x, max_steps=n)`` without recompiling, up to ``max_budget``).
        max_budget: the largest budget a call may ask for (the trace's static length).
        theta: ``(dynamics_params, cost_params)`` (default: the problem's).
        fallback: ``fallback(x) -> u`` for failed solves (default: the previous plan).
        warm_start: ``"feedback"`` or ``"shift"`` (see ``mpc_step``).

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import TrajectoryProblem, pendulum, quadratic_cost
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     pendulum(), quadratic_cost([1.0, 0.1], [0.01]), horizon=10, dt=0.1)
        >>> controller = MPCController(problem, max_steps=5)
        >>> u = controller.step(jnp.array([0.3, 0.0]))
        >>> u.shape, controller.status_name
        ((1,), 'SUCCESS')
    """

    def __init__(
        self,
        problem: TrajectoryProblem,
        solver: Any = "ilqr",
        *,
        max_steps: int = 10,
        max_budget: int | None = None,
        theta: Any = None,
        fallback: Callable[[Array], Array] | None = None,
        warm_start: str = "feedback",
    ) -> None:
        check_int_at_least(max_steps, 1, "max_steps")
        check_choice(warm_start, WARM_STARTS, "warm_start")
        if isinstance(solver, str):
            if solver != "ilqr":
                raise ValueError(f'solver must be "ilqr" or a solver object, got {solver!r}')
            solver = ILQR(problem)
        if getattr(solver, "problem", None) is not problem:
            raise ValueError("the solver must be built on the same TrajectoryProblem")
        self.problem = problem
        self.solver = solver
        self.max_steps = max_steps
        self.max_budget = max_steps if max_budget is None else max_budget
        check_int_at_least(self.max_budget, max_steps, "max_budget")
        self.theta = problem.default_theta if theta is None else theta
        self._step = jax.jit(
            lambda state, x, theta, budget: mpc_step(
                solver,
                state,
                x,
                theta,
                budget,
                trace_length=self.max_budget,
                fallback=fallback,
                warm_start=warm_start,
            )
        )
        self.state = mpc_init(problem)

    def reset(self, controls: Array | None = None) -> None:
        """Forget the plan (start the next solve from ``controls``, default zeros)."""
        self.state = mpc_init(self.problem, controls)

    def step(self, x: Array, *, max_steps: int | None = None, theta: Any = None) -> Array:
        """The control for the measured state ``x`` (the plan is kept for the next call)."""
        budget = self.max_steps if max_steps is None else max_steps
        if not 1 <= budget <= self.max_budget:
            raise ValueError(f"max_steps must be in [1, {self.max_budget}], got {budget}")
        x = jnp.asarray(x)
        if x.shape != (self.problem.state_dim,):
            raise ValueError(f"x must have shape ({self.problem.state_dim},), got {x.shape}")
        theta = self.theta if theta is None else theta
        u, self.state = self._step(self.state, x, theta, jnp.asarray(budget, jnp.int32))
        return u

    @property
    def status_name(self) -> str:
        """The ``SolveStatus`` name of the last solve."""
        return SolveStatus(int(self.state.status)).name
