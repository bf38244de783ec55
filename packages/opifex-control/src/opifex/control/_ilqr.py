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

Far from a minimum the backward pass uses iLQR's Gauss-Newton model (the dynamics'
Jacobians only), which is positive definite and globalises well but converges only linearly
where the costates do not vanish. Once a full step has been accepted, the next passes add the
dynamics' second derivatives weighted by the costates (``sum_i lambda_{t+1,i} f_i''``, the
Hessian of the stage Hamiltonian): with them the Riccati recursion is Newton's method on
``J(U)`` (Dunn and Bertsekas, "Efficient dynamic programming implementations of Newton's method
for unconstrained optimal control problems", JOTA 1989), so the last iterations converge
quadratically. A second-order pass that is not positive definite on the free controls, or
whose step the line search rejects, is replaced within the same iteration by the
Gauss-Newton pass.

The backward pass of the current iterate is computed at the end of each iteration (and by
``init``), before the next forward pass, so that ``terminate`` reads the model's predicted
decrease of the step that would come next: when it is below the cost's rounding the iterate is
as accurate as the arithmetic allows and the run stops without taking that step.

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
            at attainable precision (``SUCCESS``) when the model's predicted decrease for the
            next step, computed at the current iterate, falls below the cost's rounding
            (``eps |J|``) with little regularisation, or when a stall comes after the norm fell
            by ``sqrt(eps)``; other stalls are ``STALLED``.
        rtol: see ``atol``.
        line_search_steps: step lengths ``1, 1/2, ... 2^-(n-1)`` tried together per iteration.
        armijo: accept a step whose decrease is at least this fraction of the model's.
        regularization: the initial ``mu`` added to ``Q_uu``'s diagonal.
        min_regularization: the smallest ``mu`` (reached after successive successes), and the
            ``mu`` of every second-order pass (it follows an accepted full step: its model is
            trusted).
        regularization_factor: ``mu`` is multiplied by this on a failed pass and divided by its
            square root on a success.
        max_regularization: a pass failing at this ``mu`` stops the run (``STALLED``, or
            ``SUCCESS`` at attainable precision).
        box_qp_iterations: projected-Newton iterations per stage when a bounded control has
            several components (one is exact for a single component).
        second_order: after an accepted full step, and while the steps of such passes are
            accepted, add the dynamics' second derivatives (weighted by the costates) to the
            backward pass: Newton's method, quadratic convergence near a minimum. A
            second-order pass that is not positive definite, or whose step the line search
            rejects, is replaced by the Gauss-Newton pass in the same iteration. ``False``:
            plain iLQR (the Gauss-Newton model only, linear convergence where the costates do
            not vanish; no second derivatives of the dynamics are computed).
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
    second_order: bool = True
    scan_unroll: int = 1

    def __post_init__(self) -> None:
        check_int_at_least(self.max_steps, 0, "max_steps")
        check_int_at_least(self.line_search_steps, 1, "line_search_steps")
        check_int_at_least(self.box_qp_iterations, 1, "box_qp_iterations")
        check_int_at_least(self.scan_unroll, 1, "scan_unroll")
        if not isinstance(self.second_order, bool):
            raise TypeError(f"second_order must be a bool, got {self.second_order!r}")
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
    costate: Array  # lambda_{t+1} = dJ/dx_{t+1} along the trajectory, (T, n)


class BackwardPass(NamedTuple):
    """A Riccati backward pass at an iterate: the step it proposes and its model decrease.

    The model's decrease for the step length ``alpha`` is
    ``-(alpha * slope + alpha**2 * curvature)``.
    """

    step: Array  # feed-forward k_t, (T, m)
    feedback: Array  # gains K_t, (T, m, n)
    slope: Array  # sum_t k_t' Q_u
    curvature: Array  # sum_t 1/2 k_t' Q_uu k_t
    second_order: Array  # the pass used the dynamics' second derivatives (bool)
    valid: Array  # Q_uu was positive definite on the free controls at every stage (bool)


def _expected_decrease(backward: BackwardPass) -> Array:
    """The pass's model decrease for a full step (NaN for a failed pass)."""
    return jnp.where(backward.valid, -(backward.slope + backward.curvature), jnp.nan)


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
    expected_decrease: Array  # the pending pass's model decrease for a full step
    stopped: Array  # the regularisation exceeded its limit
    feedback: Array  # K_t of the pending backward pass (zero if it failed), (T, m, n)
    reference_grad_norm: Array  # the largest projected-gradient norm seen (tolerance scale)
    num_fun_evals: Array  # rollouts
    backward: BackwardPass  # the pass at this iterate, which the next forward pass follows
    second_order_step: Array  # the last accepted step came from a second-order pass (bool)


class ILQRAux(NamedTuple):
    """``SolveResult.aux`` of an iLQR solve: the state trajectory and the feedback gains."""

    states: Array  # (T + 1, n)
    feedback: Array  # K_t of the backward pass at the returned iterate (zero if it failed)
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

    def costate(lam: Array, stage_data: tuple) -> tuple[Array, tuple[Array, Array]]:
        a_t, b_t, lx_t, lu_t = stage_data
        return lx_t + a_t.T @ lam, (lu_t + b_t.T @ lam, lam)

    _, (gradient, lam_next) = lax.scan(costate, fx, (a, b, lx, lu), reverse=True)
    return Linearization(
        a,
        b,
        jnp.concatenate([lx, fx[None]]),
        lu,
        jnp.concatenate([lxx, fxx[None]]),
        luu,
        lux,
        gradient,
        lam_next,
    )


def _hamiltonian_curvature(
    problem: TrajectoryProblem, states: Array, controls: Array, theta: Any, lin: Linearization
) -> Linearization:
    """``lin`` with the dynamics' second derivatives weighted by the costates added.

    The costate ``lambda_{t+1}`` (``lin.costate``: ``lambda_t = l_x + A' lambda_{t+1}``,
    ``lambda_T`` the final cost's gradient) is the gradient of the cost-to-go along the
    trajectory; adding ``sum_i lambda_{t+1,i} f_i''`` to the stage costs' Hessians gives the
    Hessians of the stage Hamiltonians, with which the Riccati recursion is Newton's method on
    ``J(U)``.
    """
    dynamics_params, _ = theta
    times = jnp.arange(problem.horizon, dtype=states.dtype) * problem.dt

    def weighted(x: Array, u: Array, t: Array, lam: Array) -> Array:
        return lam @ problem.step(x, u, t, dynamics_params)

    (hxx, _), (hux, huu) = jax.vmap(jax.hessian(weighted, (0, 1)))(
        states[:-1], controls, times, lin.costate
    )
    return lin._replace(
        cost_xx=lin.cost_xx.at[:-1].add(hxx),
        cost_uu=lin.cost_uu + huu,
        cost_ux=lin.cost_ux + hux,
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
        """Roll out ``params`` (projected onto the bounds), linearise, run a backward pass.

        The first pass is a Gauss-Newton one.
        """
        controls = self.problem.clip(self.problem.check_controls(params))
        states, value = self._evaluate(controls, x0, theta)
        lin = _linearize(self.problem, states, controls, theta)
        grad_norm = self._grad_norm(controls, lin.gradient)
        mu = jnp.asarray(self.config.regularization, value.dtype)
        false = jnp.zeros((), bool)
        backward = self._backward(lin, controls, mu, false)
        return ILQRState(
            params=controls,
            value=value,
            grad_norm=grad_norm,
            num_steps=jnp.zeros((), jnp.int32),
            states=states,
            linearization=lin,
            regularization=mu,
            step_size=jnp.zeros((), value.dtype),
            expected_decrease=_expected_decrease(backward),
            stopped=false,
            feedback=jnp.where(backward.valid, backward.feedback, 0.0),
            reference_grad_norm=grad_norm,
            num_fun_evals=jnp.ones((), jnp.int32),
            backward=backward,
            second_order_step=false,
        )

    def _backward(
        self, lin: Linearization, controls: Array, mu: Array, second_order: Array
    ) -> BackwardPass:
        """The Riccati backward pass about ``(lin, controls)`` with ``mu`` added to ``Q_uu``."""
        lower, upper = self.problem.bounds(controls.dtype)
        eye = jnp.eye(self.problem.control_dim, dtype=mu.dtype)
        scalar = self.problem.control_dim == 1

        def stage(carry: tuple, data: tuple) -> tuple[tuple, tuple]:
            vx, vxx = carry
            a, b, lx, lu, lxx, luu, lux, u, lo, hi = data
            qx, qu = lx + a.T @ vx, lu + b.T @ vx
            qxx = lxx + a.T @ vxx @ a
            quu = luu + b.T @ vxx @ b + mu * eye
            qux = lux + b.T @ vxx @ a
            quu = 0.5 * (quu + quu.T)
            sol = box_qp(quu, qu, lo - u, hi - u, jnp.zeros_like(u), self._qp_iterations)
            # a stage whose Q_uu is not positive definite on the free controls fails the pass;
            # the recursion goes on with finite stand-ins (k = 0, identity on the free set), so
            # that no NaN enters what the unrolled adjoint differentiates
            ok = sol.positive_definite
            k = jnp.where(ok, sol.x, 0.0)
            free_hessian = jnp.where(ok, sol.free_hessian, eye)
            if scalar:  # a 1 x 1 system: a division, not an LU factorisation
                solved = qux / free_hessian[0, 0]
            else:
                solved = jnp.linalg.solve(free_hessian, qux)
            gains = -jnp.where(sol.free[:, None] & ok, solved, 0.0)
            vx = qx + gains.T @ quu @ k + gains.T @ qu + qux.T @ k
            vxx = qxx + gains.T @ quu @ gains + gains.T @ qux + qux.T @ gains
            return (vx, 0.5 * (vxx + vxx.T)), (k, gains, k @ qu, 0.5 * k @ quu @ k, ok)

        data = (
            lin.dynamics_x,
            lin.dynamics_u,
            lin.cost_x[:-1],
            lin.cost_u,
            lin.cost_xx[:-1],
            lin.cost_uu,
            lin.cost_ux,
            controls,
            lower,
            upper,
        )
        final = (lin.cost_x[-1], lin.cost_xx[-1])
        _, (k, gains, linear, quadratic, ok) = lax.scan(
            stage, final, data, reverse=True, unroll=self.config.scan_unroll
        )
        valid = jnp.all(ok) & jnp.all(jnp.isfinite(k)) & jnp.all(jnp.isfinite(gains))
        return BackwardPass(k, gains, jnp.sum(linear), jnp.sum(quadratic), second_order, valid)

    def _plan(
        self,
        lin: Linearization,
        states: Array,
        controls: Array,
        mu: Array,
        second_order: Array,
        theta: Any,
    ) -> BackwardPass:
        """The pass the next forward pass follows.

        Second order if asked and positive definite on the free controls (valid), else
        Gauss-Newton.
        """

        def gauss_newton(_: None) -> BackwardPass:
            return self._backward(lin, controls, mu, jnp.zeros((), bool))

        if not self.config.second_order:
            return gauss_newton(None)

        def newton(_: None) -> BackwardPass:
            # it follows an accepted full step: its model is trusted, undamped
            least = jnp.asarray(self.config.min_regularization, mu.dtype)
            curved = _hamiltonian_curvature(self.problem, states, controls, theta, lin)
            out = self._backward(curved, controls, least, jnp.ones((), bool))
            return lax.cond(out.valid, lambda _: out, gauss_newton, None)

        return lax.cond(second_order, newton, gauss_newton, None)

    def _forward(self, state, backward, x0, theta) -> tuple[Array, ...]:
        """Rollouts of the feedback policy for every step length.

        Returns the lengths, states, controls, costs, and which lengths pass the Armijo test.
        """
        cfg = self.config

        def one(alpha: Array) -> tuple[Array, Array, Array]:
            states, us = self.problem.rollout_policy(
                state.params + alpha * backward.step,
                state.states[:-1],
                backward.feedback,
                x0,
                theta,
                unroll=cfg.scan_unroll,
            )
            return states, us, jnp.sum(self.problem.stage_costs(states, us, theta))

        alphas = 0.5 ** jnp.arange(cfg.line_search_steps, dtype=x0.dtype)
        states, controls, values = jax.vmap(one)(alphas)
        model = -(alphas * backward.slope + alphas**2 * backward.curvature)  # predicted decrease
        decrease = state.value - values
        ok = jnp.isfinite(values) & (decrease >= cfg.armijo * model) & (model > 0)
        ok &= backward.valid
        return alphas, states, controls, values, ok

    def step(self, state: ILQRState, x0: Array, theta: Any) -> ILQRState:
        """A parallel line search, a new linearisation if accepted, the next backward pass.

        The search follows the pending pass, or the Gauss-Newton pass if a second-order one
        fails.
        """
        cfg = self.config
        first = self._forward(state, state.backward, x0, theta)
        if cfg.second_order:
            # a second-order pass whose step no length passes: the Gauss-Newton pass instead
            retry = state.backward.second_order & ~jnp.any(first[-1])

            def gauss_newton(_: None) -> tuple[Array, ...]:
                backward = self._backward(
                    state.linearization, state.params, state.regularization, jnp.zeros((), bool)
                )
                return self._forward(state, backward, x0, theta)

            result = lax.cond(retry, gauss_newton, lambda _: first, None)
        else:
            result, retry = first, jnp.zeros((), bool)
        alphas, states, controls, values, ok = result
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
        step_size = jnp.where(accepted, alphas[best], 0.0)
        second_order_step = accepted & state.backward.second_order & ~retry
        # Newton's model once a full step shows the iterate is near a minimum, and for as long
        # as its steps are accepted
        backward = self._plan(
            lin,
            new_states,
            new_controls,
            mu,
            (step_size == 1.0) | second_order_step,
            theta,
        )
        return ILQRState(
            params=new_controls,
            value=value,
            grad_norm=grad_norm,
            num_steps=state.num_steps + 1,
            states=new_states,
            linearization=lin,
            regularization=mu,
            step_size=step_size,
            expected_decrease=_expected_decrease(backward),
            stopped=mu > cfg.max_regularization,
            feedback=jnp.where(backward.valid, backward.feedback, 0.0),
            reference_grad_norm=jnp.maximum(state.reference_grad_norm, grad_norm),
            num_fun_evals=state.num_fun_evals
            + cfg.line_search_steps * (1 + retry.astype(jnp.int32)),
            backward=backward,
            second_order_step=second_order_step,
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
        # nothing left to gain: the pending pass's model decrease (1/2 g' Q_uu^-1 g near a
        # minimum) is below the cost's rounding; that is attainable precision unless the
        # regularisation, not the curvature, made the step small (a negative or non-finite
        # model decrease is a failed pass instead)
        model = state.expected_decrease
        rounding = (model >= 0) & (model <= eps * jnp.abs(state.value))
        # (a second-order pass is never damped beyond min_regularization)
        undamped = state.backward.second_order | (state.regularization <= cfg.regularization)
        attained = state.grad_norm <= math.sqrt(float(eps)) * g0
        done = converged | state.stopped | rounding
        success = converged | (rounding & undamped) | ((rounding | state.stopped) & attained)
        status = jnp.where(success, SolveStatus.SUCCESS, SolveStatus.STALLED)
        return done, status.astype(jnp.int32)

    def trace_fields(self, state: ILQRState) -> dict[str, Array]:
        """Per-iteration regularisation, accepted step length, and that step's kind.

        ``second_order``: 1 for a step of a second-order pass, 0 for a Gauss-Newton one.
        """
        return {
            "regularization": state.regularization,
            "step_size": state.step_size,
            "second_order": state.second_order_step.astype(state.value.dtype),
        }

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
