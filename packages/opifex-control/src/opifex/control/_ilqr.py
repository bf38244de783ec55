"""iLQR with control bounds (box-DDP) as an ``opifex.core`` solver.

Each iteration linearises the dynamics and quadratises the costs along the current trajectory,
runs a Riccati backward pass whose control step solves a small box QP per stage (Tassa, Mansard
and Todorov, "Control-limited differential dynamic programming", ICRA 2014: feedback gains are
zero on clamped controls), and a forward pass that tries several step lengths at once (a
``vmap`` of rollouts) and keeps, among those with an Armijo decrease, the one of lowest cost
(all are computed anyway). Levenberg-style
regularisation of ``Q_uu`` grows on a failed pass and shrinks on a success. Every iterate is
feasible (controls within bounds, states from the model), and the cost never increases, so a
run stopped by its step budget returns its best iterate.

Run it with ``opifex.core.run_solver``: the solution is differentiable with respect to the
initial state and ``theta = (dynamics_params, cost_params)`` by the implicit function theorem on
the projected gradient (``TrajectoryProblem.optimality``), or through the unrolled iterations
with ``adjoint="unrolled"``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from opifex.control._box_qp import box_qp
from opifex.control._problem import TrajectoryProblem
from opifex.core import (
    SolveResult,
    SolveStatus,
    check_int_at_least,
    check_positive,
    run_solver,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ILQRConfig:
    """Settings of ``ILQR``.

    Attributes:
        max_steps: the default iteration budget of ``ILQR.run`` / ``solve_trajectory``.
        atol: stop when the projected-gradient norm is at most ``atol + rtol * g0`` (``g0``
            the largest norm seen: a start at a saddle, such as a hanging pendulum, has a tiny
            initial gradient). With both ``None``: ``eps * g0``. Independently, the run stops
            at attainable precision (``SUCCESS``) when the model's predicted decrease falls
            below the cost's rounding (``eps |J|``) with little regularisation, or when a stall
            comes after the norm fell by ``sqrt(eps)``; other stalls are ``STALLED``.
        rtol: see ``atol``.
        line_search_steps: step lengths ``1, 1/2, ... 2^-(n-1)`` tried together per iteration.
        armijo: accept a step whose decrease is at least this fraction of the model's.
        regularization: the initial ``mu`` added to ``Q_uu``'s diagonal.
        min_regularization: the smallest ``mu`` (reached after successive successes).
        regularization_factor: ``mu`` is multiplied by this on a failed pass and divided by its
            square root on a success.
        max_regularization: a pass failing at this ``mu`` stops the run (``STALLED``, or
            ``SUCCESS`` at attainable precision).
        box_qp_iterations: projected-Newton iterations per stage when a bounded control has
            several components (one is exact for a single component).
        scan_unroll: stages per loop iteration of the backward and forward passes: unrolling
            cuts the per-stage loop overhead and lengthens the compilation;
            ``benchmarks/control/bench_mpc.py`` measures both (on a shared 2-core CPU the
            per-iteration gain varied from 10 % to 2x between runs).

    Example:
        >>> ILQRConfig(max_steps=50).line_search_steps
        10
    """

    max_steps: int = 100
    atol: float | None = None
    rtol: float | None = None
    line_search_steps: int = 10
    armijo: float = 1e-4
    regularization: float = 1e-3
    min_regularization: float = 1e-9
    regularization_factor: float = 10.0
    max_regularization: float = 1e8
    box_qp_iterations: int = 10
    scan_unroll: int = 1

    def __post_init__(self) -> None:
        check_int_at_least(self.max_steps, 0, "max_steps")
        check_int_at_least(self.line_search_steps, 1, "line_search_steps")
        check_int_at_least(self.box_qp_iterations, 1, "box_qp_iterations")
        check_int_at_least(self.scan_unroll, 1, "scan_unroll")
        for name in ("regularization", "min_regularization", "max_regularization", "armijo"):
            check_positive(getattr(self, name), name)
        if self.regularization_factor <= 1.0:
            raise ValueError(f"regularization_factor must be > 1, got {self.regularization_factor}")
        for name in ("atol", "rtol"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), name)


class Linearization(NamedTuple):
    """Derivatives of the dynamics and costs along a trajectory (stage-major arrays)."""

    dynamics_x: Array  # A_t, (T, n, n)
    dynamics_u: Array  # B_t, (T, n, m)
    cost_x: Array  # (T + 1, n); the last row is the final cost's gradient
    cost_u: Array  # (T, m)
    cost_xx: Array  # (T + 1, n, n)
    cost_uu: Array  # (T, m, m)
    cost_ux: Array  # (T, m, n)
    gradient: Array  # dJ/dU, (T, m)


class ILQRState(NamedTuple):
    """The iterate and what the next iteration needs (arrays only)."""

    params: Array  # controls U, (T, m)
    value: Array  # J(U)
    grad_norm: Array  # ||U - clip(U - dJ/dU)||
    num_steps: Array
    states: Array  # X, (T + 1, n)
    linearization: Linearization
    regularization: Array
    step_size: Array  # last accepted step length (0: rejected)
    expected_decrease: Array  # the model's decrease for a full step from the previous iterate
    stopped: Array  # the regularisation exceeded its limit
    feedback: Array  # K_t of the last backward pass, (T, m, n)
    reference_grad_norm: Array  # the largest projected-gradient norm seen (tolerance scale)
    num_fun_evals: Array  # rollouts


class ILQRAux(NamedTuple):
    """``SolveResult.aux`` of an iLQR solve: the state trajectory and the feedback gains."""

    states: Array  # (T + 1, n)
    feedback: Array  # K_t of the last backward pass, (T, m, n)
    regularization: Array


def _linearize(problem: TrajectoryProblem, states: Array, controls: Array, theta: Any):
    dynamics_params, cost_params = theta
    times = jnp.arange(problem.horizon, dtype=states.dtype) * problem.dt
    jac = jax.vmap(jax.jacfwd(problem.step, argnums=(0, 1)), (0, 0, 0, None))
    a, b = jac(states[:-1], controls, times, dynamics_params)

    def stage(x: Array, u: Array, t: Array) -> Array:
        return problem.running_cost(x, u, t, cost_params)

    lx, lu = jax.vmap(jax.grad(stage, (0, 1)))(states[:-1], controls, times)
    (lxx, _), (lux, luu) = jax.vmap(jax.hessian(stage, (0, 1)))(states[:-1], controls, times)

    def final(x: Array) -> Array:
        return problem.final_cost(x, cost_params)

    fx, fxx = jax.grad(final)(states[-1]), jax.hessian(final)(states[-1])

    def costate(lam: Array, stage_data: tuple) -> tuple[Array, Array]:
        a_t, b_t, lx_t, lu_t = stage_data
        return lx_t + a_t.T @ lam, lu_t + b_t.T @ lam

    _, gradient = lax.scan(costate, fx, (a, b, lx, lu), reverse=True)
    return Linearization(
        a,
        b,
        jnp.concatenate([lx, fx[None]]),
        lu,
        jnp.concatenate([lxx, fxx[None]]),
        luu,
        lux,
        gradient,
    )


class ILQR:
    """iLQR / box-DDP for a ``TrajectoryProblem`` (an ``opifex.core`` solver).

    ``args`` of every method are ``(x0, theta)`` with ``theta = (dynamics_params, cost_params)``.

    Args:
        problem: the trajectory problem.
        config: an ``ILQRConfig``.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import TrajectoryProblem, double_integrator, quadratic_cost
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     double_integrator(max_accel=1.0), quadratic_cost([1.0, 0.1], [0.1]),
        ...     horizon=30, dt=0.1)
        >>> result = ILQR(problem).run(jnp.zeros((30, 1)), jnp.array([2.0, 0.0]),
        ...                            problem.default_theta)
        >>> result.status_name, float(jnp.abs(result.params).max()) <= 1.0
        ('SUCCESS', True)
    """

    implicit_symmetric = False

    def __init__(self, problem: TrajectoryProblem, config: ILQRConfig | None = None):
        if not isinstance(problem, TrajectoryProblem):
            raise TypeError(f"problem must be a TrajectoryProblem, got {type(problem).__name__}")
        self.problem = problem
        self.config = config or ILQRConfig()
        m = problem.control_dim
        self._qp_iterations = self.config.box_qp_iterations if problem.bounded and m > 1 else 1

    def _evaluate(self, controls: Array, x0: Array, theta: Any) -> tuple[Array, Array]:
        states = self.problem.rollout(controls, x0, theta)
        return states, jnp.sum(self.problem.stage_costs(states, controls, theta))

    def _grad_norm(self, controls: Array, gradient: Array) -> Array:
        return jnp.linalg.norm(controls - self.problem.clip(controls - gradient))

    def init(self, params: Array, x0: Array, theta: Any) -> ILQRState:
        """Roll out ``params`` (projected onto the bounds) from ``x0`` and linearise."""
        controls = self.problem.clip(self.problem.check_controls(params))
        states, value = self._evaluate(controls, x0, theta)
        lin = _linearize(self.problem, states, controls, theta)
        grad_norm = self._grad_norm(controls, lin.gradient)
        zero = jnp.zeros((), value.dtype)
        return ILQRState(
            controls,
            value,
            grad_norm,
            jnp.zeros((), jnp.int32),
            states,
            lin,
            jnp.asarray(self.config.regularization, value.dtype),
            zero,
            jnp.asarray(jnp.inf, value.dtype),
            jnp.zeros((), bool),
            jnp.zeros(
                (self.problem.horizon, self.problem.control_dim, self.problem.state_dim),
                value.dtype,
            ),
            grad_norm,
            jnp.ones((), jnp.int32),
        )

    def _backward(self, state: ILQRState) -> tuple[Array, Array, Array, Array]:
        """Feed-forward steps ``k_t``, gains ``K_t`` and the model decrease terms."""
        lin, mu = state.linearization, state.regularization
        lower, upper = self.problem.bounds(state.params.dtype)
        eye = jnp.eye(self.problem.control_dim, dtype=mu.dtype)

        def stage(carry: tuple, data: tuple) -> tuple[tuple, tuple]:
            vx, vxx = carry
            a, b, lx, lu, lxx, luu, lux, u, lo, hi = data
            qx, qu = lx + a.T @ vx, lu + b.T @ vx
            qxx = lxx + a.T @ vxx @ a
            quu = luu + b.T @ vxx @ b + mu * eye
            qux = lux + b.T @ vxx @ a
            quu = 0.5 * (quu + quu.T)
            sol = box_qp(quu, qu, lo - u, hi - u, jnp.zeros_like(u), self._qp_iterations)
            k = sol.x
            gains = -jnp.where(sol.free[:, None], jnp.linalg.solve(sol.free_hessian, qux), 0.0)
            vx = qx + gains.T @ quu @ k + gains.T @ qu + qux.T @ k
            vxx = qxx + gains.T @ quu @ gains + gains.T @ qux + qux.T @ gains
            return (vx, 0.5 * (vxx + vxx.T)), (k, gains, k @ qu, 0.5 * k @ quu @ k)

        data = (
            lin.dynamics_x,
            lin.dynamics_u,
            lin.cost_x[:-1],
            lin.cost_u,
            lin.cost_xx[:-1],
            lin.cost_uu,
            lin.cost_ux,
            state.params,
            lower,
            upper,
        )
        final = (lin.cost_x[-1], lin.cost_xx[-1])
        _, (k, gains, linear, quadratic) = lax.scan(
            stage, final, data, reverse=True, unroll=self.config.scan_unroll
        )
        return k, gains, jnp.sum(linear), jnp.sum(quadratic)

    def _forward(self, state, k, gains, x0, theta) -> tuple[Array, Array, Array]:
        """Rollouts of the feedback policy for every step length: states, controls, costs."""

        def one(alpha: Array) -> tuple[Array, Array, Array]:
            states, us = self.problem.rollout_policy(
                state.params + alpha * k,
                state.states[:-1],
                gains,
                x0,
                theta,
                unroll=self.config.scan_unroll,
            )
            return states, us, jnp.sum(self.problem.stage_costs(states, us, theta))

        alphas = 0.5 ** jnp.arange(self.config.line_search_steps, dtype=x0.dtype)
        return alphas, *jax.vmap(one)(alphas)

    def step(self, state: ILQRState, x0: Array, theta: Any) -> ILQRState:
        """One backward pass, a parallel line search, and a new linearisation if accepted."""
        cfg = self.config
        k, gains, linear, quadratic = self._backward(state)
        alphas, states, controls, values = self._forward(state, k, gains, x0, theta)
        model = -(alphas * linear + alphas**2 * quadratic)  # predicted decrease per length
        decrease = state.value - values
        ok = jnp.isfinite(values) & (decrease >= cfg.armijo * model) & (model > 0)
        ok &= jnp.all(jnp.isfinite(k)) & jnp.all(jnp.isfinite(gains))
        accepted = jnp.any(ok)
        # every length was rolled out anyway: keep the lowest cost among the accepted ones
        best = jnp.argmin(jnp.where(ok, values, jnp.inf))

        def moved(_: None) -> tuple:
            lin = _linearize(self.problem, states[best], controls[best], theta)
            return controls[best], states[best], values[best], lin

        def stayed(_: None) -> tuple:
            return state.params, state.states, state.value, state.linearization

        new_controls, new_states, value, lin = lax.cond(accepted, moved, stayed, None)
        grad_norm = self._grad_norm(new_controls, lin.gradient)
        # grow fast on a failure, shrink slowly on a success (fewer failed passes in between)
        factor = jnp.where(accepted, cfg.regularization_factor**-0.5, cfg.regularization_factor)
        mu = jnp.maximum(state.regularization * factor, cfg.min_regularization)
        return ILQRState(
            params=new_controls,
            value=value,
            grad_norm=grad_norm,
            num_steps=state.num_steps + 1,
            states=new_states,
            linearization=lin,
            regularization=mu,
            step_size=jnp.where(accepted, alphas[best], 0.0),
            expected_decrease=model[0],
            stopped=mu > cfg.max_regularization,
            feedback=gains,
            reference_grad_norm=jnp.maximum(state.reference_grad_norm, grad_norm),
            num_fun_evals=state.num_fun_evals + cfg.line_search_steps,
        )

    def terminate(self, state: ILQRState, x0: Array, theta: Any) -> tuple[Array, Array]:
        """``SUCCESS`` at the gradient tolerance or at attainable precision, else continue."""
        cfg, g0 = self.config, state.reference_grad_norm
        eps = jnp.finfo(state.value.dtype).eps
        if cfg.atol is None and cfg.rtol is None:
            tolerance = eps * g0
        else:
            tolerance = (cfg.atol or 0.0) + (cfg.rtol or 0.0) * g0
        converged = state.grad_norm <= tolerance
        # nothing left to gain: the model's decrease (1/2 g' Q_uu^-1 g near a minimum) is below
        # the cost's rounding; that is attainable precision unless the regularisation, not the
        # curvature, made the step small (a negative model decrease is a failed pass instead)
        model = state.expected_decrease
        rounding = (model >= 0) & (model <= eps * jnp.abs(state.value))
        undamped = state.regularization <= cfg.regularization
        attained = state.grad_norm <= math.sqrt(float(eps)) * g0
        done = converged | state.stopped | rounding
        success = converged | (rounding & undamped) | ((rounding | state.stopped) & attained)
        status = jnp.where(success, SolveStatus.SUCCESS, SolveStatus.STALLED)
        return done, status.astype(jnp.int32)

    def trace_fields(self, state: ILQRState) -> dict[str, Array]:
        """Per-iteration regularisation and accepted step length."""
        return {"regularization": state.regularization, "step_size": state.step_size}

    def optimality_fn(self, params: Array, x0: Array, theta: Any) -> Array:
        """The projected gradient (zero at a bounded local minimum)."""
        return self.problem.optimality(params, x0, theta)

    def value_fn(self, params: Array, x0: Array, theta: Any) -> Array:
        """The total cost ``J(U)``."""
        return self.problem.total_cost(params, x0, theta)

    def aux(self, state: ILQRState, x0: Array, theta: Any) -> ILQRAux:
        """The trajectory of the final iterate and the last feedback gains."""
        return ILQRAux(state.states, state.feedback, state.regularization)

    def run(
        self,
        controls: Array,
        x0: Array,
        theta: Any = None,
        *,
        max_steps: int | Array | None = None,
        trace_length: int | None = None,
        adjoint: str | None = None,
    ) -> SolveResult:
        """Solve from the initial guess ``controls`` (``theta=None``: the problem's default)."""
        theta = self.problem.default_theta if theta is None else theta
        budget = self.config.max_steps if max_steps is None else max_steps
        return run_solver(
            self,
            controls,
            jnp.asarray(x0),
            theta,
            max_steps=budget,
            trace_length=trace_length,
            adjoint=adjoint,
        )
