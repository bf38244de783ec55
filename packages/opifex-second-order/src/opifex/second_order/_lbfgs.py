"""L-BFGS on the opifex solver driver, built on ``optax.lbfgs``.

``create_lbfgs_optimizer`` is the optax ``GradientTransformationExtraArgs`` (L-BFGS direction,
then a More-Thuente, zoom or backtracking line search). The More-Thuente search (the default)
uses L-BFGS-B's constants, so that iterations and evaluations follow scipy's L-BFGS-B (on the
extended Rosenbrock function they are the same). ``LBFGSSolver`` wraps the transformation as
an ``init / step / terminate`` solver for ``opifex.core.run_solver``: the value and gradient
found by the line search are reused through ``optax.value_and_grad_from_state``, so an
iteration costs exactly the line search's evaluations. ``minimize`` validates its arguments
and runs the solver under ``jit`` (the objective and the config are static, so a second call
does not recompile; the step budget is traced, so a new budget does not either when the trace
length is fixed), with the solution differentiable by the implicit function theorem.

Converged means ``||grad|| <= atol + rtol * ||grad f(x0)||``; the default (both ``None``)
follows the dtype of the parameters: ``eps * ||grad f(x0)||`` (``eps`` the machine epsilon,
``2.2e-16`` in float64, ``1.2e-7`` in float32), i.e. as far as the arithmetic allows.

A step whose line search ends at a non-finite value, with the objective increased or with a
zero step (no trial decreased the objective) is rejected; the L-BFGS memory is then reset once
(a steepest-descent restart) and a second rejection stops the run. Accepted steps that stop
decreasing the objective for ``STALL_STEPS`` consecutive iterations stop it as well. Such a
stop means that no step can decrease ``f`` any more; it is a stop at attainable precision,
``SolveStatus.SUCCESS``, when the gradient norm has fallen to at most
``sqrt(eps) * ||grad f(x0)||`` (by a factor of at least ``6.7e7`` in float64, ``2.9e3`` in
float32; ``attainable_decrease``), and otherwise ``SolveStatus.LINE_SEARCH_FAILED`` (rejected
steps) or ``SolveStatus.STALLED`` (steps without decrease): a non-smooth or NaN-producing
objective, or a gradient that does not match the objective, is never reported as converged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core import (
    SolveResult,
    SolveStatus,
    check_choice,
    check_int_at_least,
    check_positive,
    renamed_fields,
    tree_l2_norm,
    tree_where,
)
from opifex.second_order._budgeted import solve_with_budget
from opifex.second_order._more_thuente import scale_by_more_thuente_linesearch
from opifex.second_order._validation import (
    check_objective,
    check_params,
    resolve_config,
)

LINE_SEARCHES = ("more_thuente", "zoom", "backtracking")
# the default budget max(500, 10 n): 100-D Rosenbrock from perturbed starts takes up to ~500
# iterations to the dtype's tolerance, and the iterations grow with the number of unknowns
_MIN_BUDGET, _STEPS_PER_UNKNOWN = 500, 10
# consecutive accepted iterations without a decrease of the objective before STALLED
STALL_STEPS = 5
# the zoom line search accepts a value up to this relative increase (Hager-Zhang approximate
# Wolfe conditions); a larger increase means the line search failed
_APPROX_DECREASE_RTOL = 1e-6


def attainable_decrease(dtype: Any) -> float:
    """``sqrt(eps)`` of ``dtype``, the gradient-norm reduction of attainable precision.

    A run that can no longer decrease ``f`` after its gradient norm fell by this factor stopped
    at attainable precision (see the module docstring).

    Example:
        >>> import jax.numpy as jnp
        >>> round(1.0 / attainable_decrease(jnp.float32))
        2896
    """
    return math.sqrt(float(jnp.finfo(dtype).eps))


def gradient_tolerance(
    atol: float | None, rtol: float | None, initial_grad_norm: jax.Array
) -> jax.Array:
    """The gradient-norm tolerance ``atol + rtol * initial_grad_norm``.

    ``None`` counts as 0, except that with both ``None`` the tolerance follows the dtype:
    ``eps * initial_grad_norm``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(gradient_tolerance(1e-3, 0.5, jnp.asarray(2.0))), 6)
        1.001
    """
    if atol is None and rtol is None:
        return jnp.finfo(initial_grad_norm.dtype).eps * initial_grad_norm
    return (atol or 0.0) + (rtol or 0.0) * initial_grad_norm


def stop_status(
    failure: jax.Array, grad_norm: jax.Array, initial_grad_norm: jax.Array
) -> jax.Array:
    """``failure`` (a ``SolveStatus`` code), or ``SUCCESS`` at attainable precision.

    A line-search failure or a stall is at attainable precision when
    ``grad_norm <= sqrt(eps) * initial_grad_norm``.
    """
    attained = grad_norm <= attainable_decrease(grad_norm.dtype) * initial_grad_norm
    stopped = (failure == SolveStatus.LINE_SEARCH_FAILED) | (failure == SolveStatus.STALLED)
    return jnp.where(stopped & attained, SolveStatus.SUCCESS, failure).astype(jnp.int32)


@renamed_fields(max_iterations="max_steps", tolerance="atol")
@dataclasses.dataclass(frozen=True)
class LBFGSConfig:
    """Settings of the L-BFGS solver (frozen, validated, hashable).

    Attributes:
        memory_size: number of stored curvature pairs (>= 1).
        max_steps: iteration budget of ``minimize`` (>= 0); ``None`` (default):
            ``max(500, 10 n)`` for ``n`` unknowns, resolved at call time (``budget``);
            ``max_iterations`` is its deprecated spelling.
        atol: converged when ``||grad f|| <= atol + rtol * ||grad f(x0)||`` (>= 0;
            ``tolerance`` is its deprecated spelling). With ``atol`` and ``rtol`` both
            ``None`` (the default) the tolerance follows the dtype: ``eps * ||grad f(x0)||``
            with ``eps`` of the parameters' dtype; otherwise ``None`` counts as 0. A stop at
            attainable precision is also a success (module docstring).
        rtol: the relative part of the gradient-norm tolerance (>= 0).
        line_search: ``"more_thuente"`` (strong Wolfe, More & Thuente 1994, as L-BFGS-B),
            ``"zoom"`` (strong Wolfe, optax's zoom line search) or ``"backtracking"``
            (Armijo backtracking).
        max_linesearch_steps: evaluation budget of one line search (>= 1).

    Example:
        >>> LBFGSConfig(atol=1e-8).line_search
        'more_thuente'
    """

    memory_size: int = 10
    max_steps: int | None = None
    atol: float | None = None
    rtol: float | None = None
    line_search: str = "more_thuente"
    max_linesearch_steps: int = 20

    def __post_init__(self) -> None:
        check_int_at_least(self.memory_size, 1, "memory_size")
        if self.max_steps is not None:
            check_int_at_least(self.max_steps, 0, "max_steps")
        for name in ("atol", "rtol"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), name, allow_zero=True)
        check_choice(self.line_search, LINE_SEARCHES, "line_search")
        check_int_at_least(self.max_linesearch_steps, 1, "max_linesearch_steps")

    def budget(self, num_params: int) -> int:
        """``max_steps``, or ``max(500, 10 num_params)`` when it is ``None``.

        Example:
            >>> LBFGSConfig().budget(10), LBFGSConfig().budget(1000)
            (500, 10000)
            >>> LBFGSConfig(max_steps=7).budget(3)
            7
        """
        if self.max_steps is not None:
            return self.max_steps
        return max(_MIN_BUDGET, _STEPS_PER_UNKNOWN * num_params)


def create_lbfgs_optimizer(
    config: LBFGSConfig | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The optax L-BFGS transformation described by ``config``.

    Use it as any optax line-search optimiser: ``update(grad, state, params, value=value,
    grad=grad, value_fn=fun)``, with ``optax.value_and_grad_from_state(fun)`` to reuse the
    line search's last value and gradient.

    Args:
        config: an ``LBFGSConfig`` (default ``LBFGSConfig()``).

    Returns:
        ``optax.lbfgs`` with ``scale_by_more_thuente_linesearch`` (L-BFGS-B's constants:
        sufficient decrease ``1e-3``, curvature ``0.9``, ``xtol=0.1``), optax's zoom line search
        (``initial_guess_strategy="one"``) or a backtracking line search that stores its
        gradient. Every line search starts from the step ``1`` (the first direction is
        scaled by ``min(1, 1 / ||grad||)``).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> fun = lambda x: jnp.sum((x - 1.0) ** 2)
        >>> opt = create_lbfgs_optimizer(LBFGSConfig())
        >>> params, state = jnp.zeros(3), opt.init(jnp.zeros(3))
        >>> value_and_grad = optax.value_and_grad_from_state(fun)
        >>> for _ in range(3):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = opt.update(grad, state, params, value=value, grad=grad,
        ...                                 value_fn=fun)
        ...     params = optax.apply_updates(params, updates)
        >>> float(fun(params)) < 1e-12
        True
    """
    config = LBFGSConfig() if config is None else config
    if not isinstance(config, LBFGSConfig):
        raise TypeError(f"config must be an LBFGSConfig, got {type(config).__name__}")
    if config.line_search == "more_thuente":
        linesearch = scale_by_more_thuente_linesearch(
            max_linesearch_steps=config.max_linesearch_steps
        )
    elif config.line_search == "zoom":
        linesearch = optax.scale_by_zoom_linesearch(
            max_linesearch_steps=config.max_linesearch_steps, initial_guess_strategy="one"
        )
    else:
        linesearch = optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=config.max_linesearch_steps,
            decrease_factor=0.5,
            increase_factor=math.inf,  # every search starts at the quasi-Newton step 1
            store_grad=True,
        )
    return optax.lbfgs(memory_size=config.memory_size, linesearch=linesearch)


class LBFGSState(NamedTuple):
    """State of ``LBFGSSolver``: arrays only.

    Attributes:
        params: current iterate.
        value: objective at ``params``.
        grad: gradient at ``params``.
        grad_norm: Euclidean norm of ``grad``.
        num_steps: accepted iterations.
        num_fun_evals: objective evaluations so far (the one at ``x0`` included).
        num_grad_evals: gradient evaluations so far.
        opt_state: the optax L-BFGS state (memory and line-search state).
        failure: ``SolveStatus`` code of a failure (``SUCCESS`` while none happened).
        stall_count: consecutive iterations without a decrease of the objective.
        restarted: whether the memory was just reset after a rejected step.
        step_size: the last accepted line-search step size.
        initial_grad_norm: ``||grad f(x0)||``, the reference of the default tolerance and of
            the attainable-precision test.
    """

    params: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    num_steps: jax.Array
    num_fun_evals: jax.Array
    num_grad_evals: jax.Array
    opt_state: Any
    failure: jax.Array
    stall_count: jax.Array
    restarted: jax.Array
    step_size: jax.Array
    initial_grad_norm: jax.Array


class LBFGSSolver:
    """L-BFGS as an ``init / step / terminate`` solver for ``opifex.core.run_solver``.

    Args:
        fun: objective ``fun(params, *args) -> scalar``; params any pytree of float arrays.
        config: an ``LBFGSConfig``.

    Example:
        >>> import jax.numpy as jnp
        >>> solver = LBFGSSolver(lambda x: jnp.sum((x - 2.0) ** 2))
        >>> result = solver.run(jnp.zeros(4))
        >>> bool(result.converged)
        True
    """

    def __init__(self, fun: Callable[..., jax.Array], config: LBFGSConfig | None = None):
        self.fun = fun
        self.config = LBFGSConfig() if config is None else config
        self.optimizer = create_lbfgs_optimizer(self.config)

    def init(self, params: Any, *args: Any) -> LBFGSState:
        """Evaluate the objective and its gradient at ``params``."""
        value, grad = jax.value_and_grad(self.fun)(params, *args)
        one = jnp.ones((), jnp.int32)
        grad_norm = tree_l2_norm(grad)
        state = LBFGSState(
            params=params,
            value=value,
            grad=grad,
            grad_norm=grad_norm,
            num_steps=jnp.zeros((), jnp.int32),
            num_fun_evals=one,
            num_grad_evals=one,
            opt_state=self.optimizer.init(params),
            failure=jnp.asarray(SolveStatus.SUCCESS, jnp.int32),
            stall_count=jnp.zeros((), jnp.int32),
            restarted=jnp.zeros((), bool),
            step_size=jnp.zeros((), value.dtype),
            initial_grad_norm=grad_norm,
        )
        # strong dtypes (optax's line-search state starts with weakly typed scalars), so that
        # a jitted ``step`` sees the same types at its first and second call
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), state)

    def step(self, state: LBFGSState, *args: Any) -> LBFGSState:
        """One L-BFGS iteration: direction, line search, then accept or reject the step."""

        def value_fn(p: Any) -> jax.Array:
            return self.fun(p, *args)

        updates, opt_state = self.optimizer.update(
            state.grad,
            state.opt_state,
            state.params,
            value=state.value,
            grad=state.grad,
            value_fn=value_fn,
        )
        params = optax.apply_updates(state.params, updates)
        # the line search already evaluated value and gradient at ``params``: reuse them
        # (value_and_grad_from_state only re-evaluates when the stored value is not finite)
        stored = optax.tree.get(opt_state, "value")
        value, grad = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
        ls_evals = jnp.asarray(optax.tree.get(opt_state, "num_linesearch_steps"), jnp.int32)
        recomputed = (~jnp.isfinite(stored)).astype(jnp.int32)
        num_fun_evals = state.num_fun_evals + ls_evals + recomputed
        if self.config.line_search != "backtracking":  # each trial is one value and gradient
            num_grad_evals = state.num_grad_evals + ls_evals + recomputed
        else:  # backtracking evaluates values only, and one gradient at its end
            num_grad_evals = state.num_grad_evals + 1 + recomputed
        grad_norm = tree_l2_norm(grad)

        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        slack = _APPROX_DECREASE_RTOL * jnp.abs(state.value)
        step_size = jnp.asarray(optax.tree.get(opt_state, "learning_rate"), state.value.dtype)
        accepted = finite & (value <= state.value + slack) & (step_size > 0)
        if self.config.line_search == "backtracking":  # its budget ran out before Armijo held
            accepted &= optax.tree.get(opt_state, "decrease_error") <= 0.0
        # a rejected step right after a restart is a line-search failure; otherwise restart
        failed = ~accepted & state.restarted
        fresh = self.optimizer.init(state.params)
        decreased = value < state.value
        stall_count = jnp.where(decreased, 0, state.stall_count + 1)

        failure = jnp.where(
            failed,
            SolveStatus.LINE_SEARCH_FAILED,
            jnp.where(accepted & (stall_count >= STALL_STEPS), SolveStatus.STALLED, state.failure),
        ).astype(jnp.int32)
        return LBFGSState(
            params=tree_where(accepted, params, state.params),
            value=jnp.where(accepted, value, state.value),
            grad=tree_where(accepted, grad, state.grad),
            grad_norm=jnp.where(accepted, grad_norm, state.grad_norm),
            num_steps=state.num_steps + accepted.astype(jnp.int32),
            num_fun_evals=num_fun_evals,
            num_grad_evals=num_grad_evals,
            opt_state=tree_where(accepted, opt_state, fresh),
            failure=failure,
            stall_count=jnp.where(accepted, stall_count, state.stall_count),
            restarted=~accepted,
            step_size=jnp.where(accepted, step_size, state.step_size),
            initial_grad_norm=state.initial_grad_norm,
        )

    def terminate(self, state: LBFGSState, *args: Any) -> tuple[jax.Array, jax.Array]:
        """Converged when ``||grad|| <= atol + rtol * ||grad_0||``; stop on a recorded failure.

        A failure at attainable precision is a success (see the module docstring).
        """
        tolerance = gradient_tolerance(self.config.atol, self.config.rtol, state.initial_grad_norm)
        converged = state.grad_norm <= tolerance
        done = converged | (state.failure != SolveStatus.SUCCESS)
        stopped = stop_status(state.failure, state.grad_norm, state.initial_grad_norm)
        status = jnp.where(converged, SolveStatus.SUCCESS, stopped)
        return done, status.astype(jnp.int32)

    def trace_fields(self, state: LBFGSState) -> dict[str, jax.Array]:
        """Per-step extra trace entries: the accepted line-search step size."""
        return {"step_size": state.step_size}

    # the minimiser solves grad f = 0: its derivatives by the implicit function theorem
    implicit_symmetric = True

    def optimality_fn(self, params: Any, *args: Any) -> Any:
        """``grad f(params, *args)``: zero at a minimiser."""
        return jax.grad(self.fun)(params, *args)

    def value_fn(self, params: Any, *args: Any) -> jax.Array:
        """The objective ``f(params, *args)``."""
        return self.fun(params, *args)

    def run(self, x0: Any, *args: Any) -> SolveResult:
        """Minimise from ``x0`` (same as ``minimize(self.fun, x0, *args, config=...)``)."""
        return minimize(self.fun, x0, *args, config=self.config)


def minimize(
    fun: Callable[..., jax.Array],
    x0: Any,
    *args: Any,
    config: LBFGSConfig | None = None,
    trace_length: int | None = None,
    adjoint: str | None = None,
    **config_overrides: Any,
) -> SolveResult:
    """Minimise ``fun(params, *args)`` with L-BFGS from ``x0``.

    The solution is differentiable with respect to ``args`` by the implicit function theorem
    on ``grad f = 0`` (``jax.grad`` / ``jax.jvp`` of anything computed from ``result.params``
    or ``result.value``; the iterations are not differentiated).

    Args:
        fun: objective returning a floating-point scalar; params any pytree of float arrays.
        x0: initial parameters (finite).
        *args: extra arguments of ``fun`` (arrays; traced, so new values do not recompile).
        config: an ``LBFGSConfig`` (default ``LBFGSConfig()``).
        trace_length: the trace's length minus one (default: the budget). The budget
            ``max_steps`` is a traced value: with ``trace_length`` fixed, a new budget does not
            recompile.
        adjoint: ``None`` or ``"implicit"`` (the default, above) or ``"unrolled"`` (forward-mode
            derivatives through the iterations; the line search is a ``while_loop``, which
            reverse mode cannot differentiate). See ``opifex.core.run_solver``.
        **config_overrides: ``LBFGSConfig`` fields overriding ``config``'s.

    Returns:
        A ``SolveResult``; ``converged`` iff ``||grad fun|| <= atol + rtol * ||grad fun(x0)||``
        (default: ``eps * ||grad fun(x0)||``) or the run stopped at attainable precision.
        ``stats["num_fun_evals"]`` / ``stats["num_grad_evals"]`` count every evaluation
        (the one at ``x0`` and each line-search trial).

    Raises:
        ValueError: ``x0`` empty or not finite, ``fun`` not scalar-valued, an unknown option.
        TypeError: non-float ``x0`` leaves or objective.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> rosen = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
        >>> result = minimize(rosen, jnp.array([-1.2, 1.0]), atol=1e-5)
        >>> bool(result.converged), [round(float(v), 3) for v in result.params]
        (True, [1.0, 1.0])
        >>> ridge = lambda x, lam: jnp.sum((x - 1.0) ** 2) + lam * jnp.sum(x**2)  # x* = 1/(1+lam)
        >>> dx = jax.grad(lambda lam: minimize(ridge, jnp.zeros(2), lam).params[0])(1.0)
        >>> round(float(dx), 4)  # -1 / (1 + lam)^2
        -0.25
    """
    config = resolve_config(LBFGSConfig, config, config_overrides)
    x0 = check_params(x0)
    check_objective(fun, x0, args)
    return solve_with_budget(LBFGSSolver, fun, config, x0, args, trace_length, adjoint)
