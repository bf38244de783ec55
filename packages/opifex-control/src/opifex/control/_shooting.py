"""Direct single shooting with the solvers of ``opifex.second_order``.

The controls are the only unknowns; the states come from rolling the model out. Bounds are
removed by the change of variables ``u = c + r tanh(z)`` (both bounds finite) and the
unconstrained problem in ``z`` is solved by L-BFGS (any cost) or by Levenberg-Marquardt on the
residuals of a ``QuadraticCost`` (``J = 1/2 ||r||^2``). Like ``ILQR`` it is an ``opifex.core``
solver over the same ``TrajectoryProblem``, with the same optimality residual, so its solution
is differentiated the same way. A bound is only approached as ``|z|`` grows: on problems whose
solution saturates the controls, box-DDP (``ILQR``) converges in far fewer iterations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.control._problem import (
    QuadraticCost,
    TrajectoryProblem,
    quadratic_final_cost,
    quadratic_running_cost,
)
from opifex.core import SolveResult, check_choice, run_solver
from opifex.second_order import (
    GaussNewtonConfig,
    LBFGSConfig,
    LBFGSSolver,
    create_gauss_newton_solver,
)

Array = jax.Array
METHODS = ("lbfgs", "gauss_newton")
_INTERIOR = 1.0 - 1e-6  # initial guesses on a bound start just inside it


class ShootingState(NamedTuple):
    """The controls, their cost and projected-gradient norm, and the inner solver's state."""

    params: Array
    value: Array
    grad_norm: Array
    num_steps: Array
    inner: Any
    num_fun_evals: Array
    num_grad_evals: Array


def _matrix_sqrt(weight: Array) -> Array:
    """``S`` with ``S' S = W`` for a symmetric positive semi-definite ``W``."""
    values, vectors = jnp.linalg.eigh(0.5 * (weight + weight.T))
    return (vectors * jnp.sqrt(jnp.maximum(values, 0.0))).T


class DirectShooting:
    """Direct single shooting for a ``TrajectoryProblem`` (an ``opifex.core`` solver).

    Args:
        problem: the trajectory problem; its bounds must be both finite or both absent.
        method: ``"lbfgs"`` (any cost) or ``"gauss_newton"`` (Levenberg-Marquardt; the
            problem's costs must be the quadratic ones, with a ``QuadraticCost`` as cost params).
        config: an ``LBFGSConfig`` or a ``GaussNewtonConfig`` for the inner solver.

    Raises:
        ValueError: an unknown method, one-sided bounds, or ``"gauss_newton"`` on a problem
            without quadratic costs.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import TrajectoryProblem, double_integrator, quadratic_cost
        >>> problem = TrajectoryProblem.from_dynamics(
        ...     double_integrator(), quadratic_cost([1.0, 0.1], [0.1]), horizon=20, dt=0.1)
        >>> solver = DirectShooting(problem, "gauss_newton")
        >>> result = solver.run(jnp.zeros((20, 1)), jnp.array([1.0, 0.0]))
        >>> bool(result.converged)
        True
    """

    def __init__(
        self, problem: TrajectoryProblem, method: str = "lbfgs", config: Any = None
    ) -> None:
        if not isinstance(problem, TrajectoryProblem):
            raise TypeError(f"problem must be a TrajectoryProblem, got {type(problem).__name__}")
        check_choice(method, METHODS, "method")
        lower, upper = problem.lower, problem.upper
        finite = [abs(b) != float("inf") for b in (lower or ()) + (upper or ())]
        if (any(finite) and not all(finite)) or (lower is None) != (upper is None):
            raise ValueError("DirectShooting needs both bounds finite for every control, or none")
        self.problem = problem
        self.method = method
        if method == "gauss_newton":
            quadratic = (
                problem.running_cost is quadratic_running_cost
                and problem.final_cost is quadratic_final_cost
            )
            if not quadratic:
                raise ValueError('method="gauss_newton" needs the problem\'s quadratic costs')
            self.inner = create_gauss_newton_solver(config or GaussNewtonConfig(), self._residuals)
        else:
            self.inner = LBFGSSolver(self._cost_of_z, config or LBFGSConfig())

    # -------------------------------------------------------------- change of variables
    def _centre_radius(self, dtype: Any) -> tuple[Array, Array] | None:
        if not self.problem.bounded:
            return None
        lower, upper = self.problem.bounds(dtype)
        return 0.5 * (upper + lower), 0.5 * (upper - lower)

    def controls(self, z: Array) -> Array:
        """The controls of the unconstrained variables ``z``."""
        centre_radius = self._centre_radius(z.dtype)
        if centre_radius is None:
            return z
        centre, radius = centre_radius
        return centre + radius * jnp.tanh(z)

    def unconstrained(self, controls: Array) -> Array:
        """The variables ``z`` of ``controls`` (bounds mapped just inside)."""
        centre_radius = self._centre_radius(controls.dtype)
        if centre_radius is None:
            return controls
        centre, radius = centre_radius
        return jnp.arctanh(jnp.clip((controls - centre) / radius, -_INTERIOR, _INTERIOR))

    def _cost_of_z(self, z: Array, x0: Array, theta: Any) -> Array:
        return self.problem.total_cost(self.controls(z), x0, theta)

    def _residuals(self, z: Array, x0: Array, theta: Any) -> Array:
        cost: QuadraticCost = theta[1]
        controls = self.controls(z)
        states = self.problem.rollout(controls, x0, theta)
        errors = states - cost.goal
        running = errors[:-1] @ _matrix_sqrt(cost.state_weight).T
        effort = controls @ _matrix_sqrt(cost.control_weight).T
        final = _matrix_sqrt(cost.final_weight) @ errors[-1]
        return jnp.concatenate([running.ravel(), effort.ravel(), final])

    # ------------------------------------------------------------------ solver protocol
    def _wrap(self, inner: Any, x0: Array, theta: Any) -> ShootingState:
        controls = self.controls(inner.params)
        gradient = jax.grad(self.problem.total_cost)(controls, x0, theta)
        grad_norm = jnp.linalg.norm(controls - self.problem.clip(controls - gradient))
        grads = getattr(inner, "num_grad_evals", getattr(inner, "num_jac_evals", 0))
        return ShootingState(
            controls,
            inner.value,
            grad_norm,
            inner.num_steps,
            inner,
            jnp.asarray(inner.num_fun_evals, jnp.int32),
            jnp.asarray(grads, jnp.int32),
        )

    def init(self, params: Array, x0: Array, theta: Any) -> ShootingState:
        """Start from the controls ``params``."""
        z = self.unconstrained(self.problem.check_controls(params))
        return self._wrap(self.inner.init(z, x0, theta), x0, theta)

    def step(self, state: ShootingState, x0: Array, theta: Any) -> ShootingState:
        """One iteration of the inner solver."""
        return self._wrap(self.inner.step(state.inner, x0, theta), x0, theta)

    def terminate(self, state: ShootingState, x0: Array, theta: Any) -> tuple[Array, Array]:
        """The inner solver's verdict."""
        return self.inner.terminate(state.inner, x0, theta)

    def optimality_fn(self, params: Array, x0: Array, theta: Any) -> Array:
        """The projected gradient in the controls (as ``ILQR``'s)."""
        return self.problem.optimality(params, x0, theta)

    def value_fn(self, params: Array, x0: Array, theta: Any) -> Array:
        """The total cost."""
        return self.problem.total_cost(params, x0, theta)

    def run(
        self,
        controls: Array,
        x0: Array,
        theta: Any = None,
        *,
        max_steps: int | Array = 1000,
        trace_length: int | None = None,
        adjoint: str | None = None,
    ) -> SolveResult:
        """Solve from ``controls`` (``theta=None``: the problem's default)."""
        theta = self.problem.default_theta if theta is None else theta
        return run_solver(
            self,
            controls,
            jnp.asarray(x0),
            theta,
            max_steps=max_steps,
            trace_length=trace_length,
            adjoint=adjoint,
        )
