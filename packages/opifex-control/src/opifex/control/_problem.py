"""Finite-horizon optimal control problems shared by every trajectory solver.

``TrajectoryProblem`` is the single definition of "minimise the cost of a control sequence
under a discrete-time model, within control bounds": iLQR / box-DDP, direct shooting and the
MPC controller all solve it, and its ``optimality`` residual (the projected gradient, zero
exactly at a bounded local minimum) is what implicit differentiation differentiates. The
problem data ``theta = (dynamics_params, cost_params)`` and the initial state are traced
arguments: new values never recompile, and the solution is differentiable in all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from opifex.control._dynamics import Dynamics, StepFn, discretize, rollout
from opifex.core import check_int_at_least, check_positive

Array = jax.Array


class QuadraticCost(NamedTuple):
    """Weights of ``sum_t 1/2 (x-g)' Q (x-g) + 1/2 u' R u`` plus ``1/2 (x_T-g)' Q_f (x_T-g)``.

    A pytree: pass it as the problem's ``cost_params`` to make every weight differentiable.
    """

    state_weight: Array  # Q, (n, n)
    control_weight: Array  # R, (m, m)
    final_weight: Array  # Q_f, (n, n)
    goal: Array  # g, (n,)


def quadratic_running_cost(x: Array, u: Array, t: Array, cost: QuadraticCost) -> Array:
    """``1/2 (x-g)' Q (x-g) + 1/2 u' R u`` (the running cost of a ``QuadraticCost``)."""
    error = x - cost.goal
    return 0.5 * (error @ cost.state_weight @ error + u @ cost.control_weight @ u)


def quadratic_final_cost(x: Array, cost: QuadraticCost) -> Array:
    """``1/2 (x-g)' Q_f (x-g)`` (the final cost of a ``QuadraticCost``)."""
    error = x - cost.goal
    return 0.5 * error @ cost.final_weight @ error


def quadratic_cost(
    state_weight: Any, control_weight: Any, goal: Any = None, final_weight: Any = None
) -> QuadraticCost:
    """Build a ``QuadraticCost`` from diagonals (1-d) or full matrices (2-d).

    Args:
        state_weight: ``Q`` (its diagonal, or the matrix).
        control_weight: ``R`` (its diagonal, or the matrix).
        goal: the target state (default zeros).
        final_weight: ``Q_f`` (default ``Q``).

    Example:
        >>> cost = quadratic_cost([1.0, 0.1], [0.01], goal=[0.0, 0.0], final_weight=[100.0, 10.0])
        >>> cost.final_weight.tolist()
        [[100.0, 0.0], [0.0, 10.0]]
    """

    def matrix(weight: Any) -> Array:
        weight = jnp.asarray(weight, float)
        return jnp.diag(weight) if weight.ndim == 1 else weight

    q = matrix(state_weight)
    goal = jnp.zeros(q.shape[0], q.dtype) if goal is None else jnp.asarray(goal, q.dtype)
    qf = q if final_weight is None else matrix(final_weight)
    return QuadraticCost(q, matrix(control_weight), qf, goal)


@dataclasses.dataclass(frozen=True, eq=False)
class TrajectoryProblem:
    """Minimise ``J(U) = sum_t l(x_t, u_t, t) + l_f(x_T)`` over ``U`` within bounds.

    ``x_{t+1} = step(x_t, u_t, t dt, dynamics_params)`` from ``x_0``. Static (hashed by
    identity); the data ``x0`` and ``theta = (dynamics_params, cost_params)`` are passed to
    each method, so they are traced and differentiable.

    Attributes:
        step: the discrete-time model (e.g. ``discretize(dynamics, dt)``).
        running_cost: ``l(x, u, t, cost_params) -> scalar``.
        final_cost: ``l_f(x, cost_params) -> scalar``.
        horizon: the number of control periods ``T``.
        state_dim: length of ``x``.
        control_dim: length of ``u``.
        lower: per-component lower control bounds (``-inf`` for none), or ``None``.
        upper: per-component upper control bounds, or ``None``.
        dt: the control period (the time passed to ``step`` and the costs is ``t * dt``).

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import double_integrator
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     double_integrator(), quadratic_cost([1.0, 1.0], [0.1]), horizon=20, dt=0.1)
        >>> x0 = jnp.array([1.0, 0.0])
        >>> float(problem.total_cost(jnp.zeros((20, 1)), x0, problem.default_theta)) > 0
        True
    """

    step: StepFn
    running_cost: Callable[[Array, Array, Array, Any], Array]
    final_cost: Callable[[Array, Any], Array]
    horizon: int
    state_dim: int
    control_dim: int
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    dt: float = 1.0
    default_theta: Any = None

    def __post_init__(self) -> None:
        check_int_at_least(self.horizon, 1, "horizon")
        check_int_at_least(self.state_dim, 1, "state_dim")
        check_int_at_least(self.control_dim, 1, "control_dim")
        check_positive(self.dt, "dt")
        for name in ("lower", "upper"):
            bound = getattr(self, name)
            if bound is not None and len(bound) != self.control_dim:
                raise ValueError(f"{name} must have {self.control_dim} entries, got {len(bound)}")
        if self.lower is not None and self.upper is not None:
            if any(lo > hi for lo, hi in zip(self.lower, self.upper, strict=True)):
                raise ValueError(f"lower {self.lower} exceeds upper {self.upper}")

    @classmethod
    def from_dynamics(
        cls,
        dynamics: Dynamics,
        cost: QuadraticCost | None = None,
        *,
        horizon: int,
        dt: float,
        running_cost: Callable | None = None,
        final_cost: Callable | None = None,
        bounded: bool = True,
        **discretize_options: Any,
    ) -> TrajectoryProblem:
        """A problem on ``dynamics`` discretised with period ``dt``.

        Args:
            dynamics: the model; its bounds become the control bounds when ``bounded``.
            cost: a ``QuadraticCost`` (its functions are used unless ``running_cost`` /
                ``final_cost`` are given; it becomes ``default_theta``'s cost part).
            horizon: ``T``.
            dt: the control period.
            running_cost: a general ``l(x, u, t, cost_params)`` instead of the quadratic one.
            final_cost: a general ``l_f(x, cost_params)``.
            bounded: use the model's control bounds (``False``: unbounded).
            **discretize_options: for ``discretize`` (``method``, ``substeps``, ``adjoint``...).

        Raises:
            ValueError: neither a ``cost`` nor both cost functions.
        """
        if cost is None and (running_cost is None or final_cost is None):
            raise ValueError("give a QuadraticCost or both running_cost and final_cost")
        return cls(
            step=discretize(dynamics, dt, **discretize_options),
            running_cost=running_cost or quadratic_running_cost,
            final_cost=final_cost or quadratic_final_cost,
            horizon=horizon,
            state_dim=dynamics.state_dim,
            control_dim=dynamics.control_dim,
            lower=dynamics.control_lower if bounded else None,
            upper=dynamics.control_upper if bounded else None,
            dt=dt,
            default_theta=(dynamics.params, cost),
        )

    @property
    def bounded(self) -> bool:
        """Whether any control bound is finite."""
        return any(abs(b) != float("inf") for b in (self.lower or ()) + (self.upper or ()))

    def bounds(self, dtype: Any) -> tuple[Array, Array]:
        """Lower and upper bounds, shape ``(horizon, control_dim)``."""
        lower = self.lower or (-jnp.inf,) * self.control_dim
        upper = self.upper or (jnp.inf,) * self.control_dim
        shape = (self.horizon, self.control_dim)
        return (
            jnp.broadcast_to(jnp.asarray(lower, dtype), shape),
            jnp.broadcast_to(jnp.asarray(upper, dtype), shape),
        )

    def clip(self, controls: Array) -> Array:
        """``controls`` projected onto the bounds."""
        lower, upper = self.bounds(controls.dtype)
        return jnp.clip(controls, lower, upper)

    def rollout(self, controls: Array, x0: Array, theta: Any) -> Array:
        """States ``x_0 .. x_T`` under ``controls``."""
        return rollout(self.step, x0, controls, theta[0], self.dt)

    def rollout_policy(
        self,
        controls: Array,
        states: Array,
        gains: Array,
        x0: Array,
        theta: Any,
        *,
        unroll: int = 1,
    ) -> tuple[Array, Array]:
        """States and controls of ``u_t = clip(controls_t + gains_t (x_t - states_t))`` from ``x0``.

        The feedback policy about a reference trajectory (``states``: ``(T, n)``, one per
        control; ``gains``: ``(T, m, n)``): iLQR's forward pass and MPC's warm start.

        Returns:
            ``(x_0 .. x_T, u_0 .. u_{T-1})``.

        Example:
            >>> import jax.numpy as jnp
            >>> from opifex.control import double_integrator, quadratic_cost
            >>> problem = TrajectoryProblem.from_dynamics(
            ...     double_integrator(), quadratic_cost([1.0, 1.0], [1.0]), horizon=3, dt=1.0,
            ...     bounded=False)
            >>> xs, us = problem.rollout_policy(jnp.zeros((3, 1)), jnp.zeros((3, 2)),
            ...     jnp.full((3, 1, 2), -0.5), jnp.array([1.0, 0.0]), problem.default_theta)
            >>> us[0].tolist()    # -0.5 (x - 0) - 0.5 (v - 0)
            [-0.5]
        """
        lower, upper = self.bounds(controls.dtype)
        times = jnp.arange(self.horizon, dtype=controls.dtype) * self.dt

        def advance(x: Array, stage: tuple) -> tuple[Array, tuple[Array, Array]]:
            u_ref, x_ref, gain, lo, hi, t = stage
            u = jnp.clip(u_ref + gain @ (x - x_ref), lo, hi)
            return self.step(x, u, t, theta[0]), (x, u)

        stages = (controls, states, gains, lower, upper, times)
        last, (xs, us) = lax.scan(advance, x0, stages, unroll=unroll)
        return jnp.concatenate([xs, last[None]]), us

    def stage_costs(self, states: Array, controls: Array, theta: Any) -> Array:
        """The ``T`` running costs and the final cost, shape ``(T + 1,)``."""
        times = jnp.arange(self.horizon, dtype=states.dtype) * self.dt
        running = jax.vmap(self.running_cost, (0, 0, 0, None))(
            states[:-1], controls, times, theta[1]
        )
        return jnp.concatenate([running, self.final_cost(states[-1], theta[1])[None]])

    def total_cost(self, controls: Array, x0: Array, theta: Any) -> Array:
        """``J(U)`` from ``x0``."""
        return jnp.sum(self.stage_costs(self.rollout(controls, x0, theta), controls, theta))

    def optimality(self, controls: Array, x0: Array, theta: Any) -> Array:
        """The projected gradient ``U - clip(U - grad J(U))``: zero at a bounded minimum."""
        gradient = jax.grad(self.total_cost)(controls, x0, theta)
        return controls - self.clip(controls - gradient)

    def check_controls(self, controls: Any) -> Array:
        """``controls`` as an array of shape ``(horizon, control_dim)`` (``ValueError`` if not)."""
        controls = jnp.asarray(controls)
        expected = (self.horizon, self.control_dim)
        if controls.shape != expected:
            raise ValueError(f"controls must have shape {expected}, got {controls.shape}")
        return controls
