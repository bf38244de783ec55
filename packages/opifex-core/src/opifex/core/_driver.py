"""One driver for every iterative solver in opifex (init / step / terminate).

A solver is any object with three pure methods::

    init(params, *args) -> state
    step(state, *args) -> state
    terminate(state, *args) -> (done, status)      # 0-d bool, 0-d int32 SolveStatus

whose ``state`` is a ``NamedTuple`` with at least the fields ``params``, ``value``,
``grad_norm`` and ``num_steps``. Everything else is optional:

* state fields ``num_fun_evals`` / ``num_grad_evals`` / ``num_jac_evals`` are reported in
  ``SolveResult.stats``;
* ``trace_fields(state) -> dict`` adds solver-specific scalars to the per-step trace;
* ``aux(state, *args) -> pytree`` is returned as ``SolveResult.aux`` (method-specific outputs);
* ``optimality_fn(params, *args) -> pytree`` (zero at a solution, shaped like ``params``)
  enables implicit differentiation of the solution with respect to ``args``; with it,
  ``value_fn(params, *args) -> scalar`` gives ``SolveResult.value`` its derivatives (at no
  extra evaluation: the loop's value is kept, only its tangent comes from ``value_fn``), and the
  attributes ``implicit_linear_solver`` (``"dense"``, ``"cg"`` or ``"gmres"``) and
  ``implicit_symmetric`` choose the linear solve (see ``implicit_root``).

The driver adds what every solver needs and none re-implements: the step budget (a traced
value, so that a new budget does not recompile), the NaN/inf guard, the fixed-length trace,
the choice of adjoint and the ``SolveResult``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from opifex.core._checks import check_choice, check_int_at_least
from opifex.core._implicit import implicit_root
from opifex.core._result import SolveResult
from opifex.core._status import SolveStatus

ADJOINTS = ("implicit", "unrolled")
_COUNTERS = ("num_fun_evals", "num_grad_evals", "num_jac_evals")


class Solver(Protocol):
    """The protocol ``run_solver`` drives (see the module docstring)."""

    def init(self, params: Any, *args: Any) -> Any:
        """Build the initial state at ``params``."""

    def step(self, state: Any, *args: Any) -> Any:
        """Advance one iteration."""

    def terminate(self, state: Any, *args: Any) -> tuple[jax.Array, jax.Array]:
        """Return ``(done, status)`` for ``state``."""


def _trace_scalars(solver: Solver, state: Any) -> dict[str, jax.Array]:
    scalars = {"value": state.value, "grad_norm": state.grad_norm}
    extra = getattr(solver, "trace_fields", None)
    if extra is not None:
        scalars.update(extra(state))
    return scalars


def _resolve_budget(max_steps: Any, trace_length: int | None) -> int:
    """Validate the budget and return the (static) trace length."""
    traced = isinstance(max_steps, jax.core.Tracer)
    if not traced:
        if np.ndim(max_steps) != 0 or not np.issubdtype(np.asarray(max_steps).dtype, np.integer):
            raise TypeError(f"max_steps must be an int or a 0-d integer array, got {max_steps!r}")
        check_int_at_least(int(max_steps), 0, "max_steps")
    if trace_length is None:
        if traced:
            raise ValueError(
                "trace_length must be given when max_steps is a traced array (the trace has a"
                " static length; the budget may change without recompiling)"
            )
        return int(max_steps)
    check_int_at_least(trace_length, 0, "trace_length")
    return trace_length


def _resolve_adjoint(solver: Solver, adjoint: str | None) -> str | None:
    if adjoint is None:
        return "implicit" if hasattr(solver, "optimality_fn") else None
    check_choice(adjoint, ADJOINTS, "adjoint")
    if adjoint == "implicit" and not hasattr(solver, "optimality_fn"):
        raise ValueError(
            f'adjoint="implicit" needs a solver with an optimality_fn; {type(solver).__name__}'
            ' has none (use adjoint="unrolled")'
        )
    return adjoint


def _value_with_tangent(value_fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``(value, params, args) -> value`` whose derivative is that of ``value_fn(params, *args)``.

    The primal is the value the loop already computed (no extra evaluation); derivatives
    follow ``value_fn`` through the (implicitly differentiated) ``params`` and ``args``.
    """

    @jax.custom_jvp
    def value_of(value: jax.Array, params: Any, args: tuple) -> jax.Array:
        return value

    @value_of.defjvp
    def value_of_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
        value, params, args = primals
        _, params_dot, args_dot = tangents
        tangent = jax.jvp(lambda p, a: value_fn(p, *a), (params, args), (params_dot, args_dot))[1]
        return value, tangent

    return value_of


def _attach_implicit(solver: Solver, state: Any, args: tuple) -> tuple[Any, jax.Array]:
    """``state.params`` and ``state.value``, differentiable in ``args`` (implicit function theorem).

    The value carries derivatives only when the solver has a ``value_fn``.
    """
    root = implicit_root(
        lambda x, theta: solver.optimality_fn(x, *theta),
        lambda init, theta: init,  # the loop already found the solution
        linear_solver=getattr(solver, "implicit_linear_solver", "dense"),
        symmetric=getattr(solver, "implicit_symmetric", False),
    )
    params = root(lax.stop_gradient(state.params), args)
    value_fn = getattr(solver, "value_fn", None)
    if value_fn is None:
        return params, state.value
    return params, _value_with_tangent(value_fn)(lax.stop_gradient(state.value), params, args)


def run_solver(
    solver: Solver,
    params: Any,
    *args: Any,
    max_steps: int | jax.Array,
    trace_length: int | None = None,
    adjoint: str | None = None,
    init_state: Any = None,
) -> SolveResult:
    """Run ``solver`` from ``params`` until it terminates or ``max_steps`` steps are taken.

    Works under ``jit`` and ``vmap``. A non-finite value or gradient norm stops the loop with
    ``SolveStatus.NONFINITE``; exhausting the budget gives ``SolveStatus.MAX_STEPS_REACHED``.
    Neither raises.

    Args:
        solver: an object with ``init``, ``step`` and ``terminate`` (see module docstring).
        params: initial parameters (any pytree of arrays); ``None`` with ``init_state``.
        *args: extra arguments passed to every solver method (problem data).
        max_steps: the step budget: a Python int or a 0-d integer array, which may be traced
            (then a new budget does not recompile, and ``trace_length`` must be given).
        trace_length: static length of the trace minus one (default ``max_steps``): entry
            ``k`` holds step ``k``; steps beyond ``trace_length`` are taken but not recorded.
        adjoint: how derivatives flow through the solve. ``"implicit"`` (the default for a
            solver with an ``optimality_fn``): the iterations are not differentiated; the
            solution is differentiable with respect to ``args`` by the implicit function
            theorem (valid where the solve converged). ``"unrolled"``: the loop is a
            ``lax.scan`` of ``trace_length`` masked iterations and JAX differentiates through
            every step (forward and reverse mode; memory grows with ``trace_length``).
            ``None`` for a solver without ``optimality_fn``: a ``lax.while_loop``, which
            supports forward-mode derivatives only.
        init_state: continue from this solver state (e.g. a state from ``solver.init`` with a
            field adjusted, or one left by an earlier run) instead of ``solver.init(params,
            *args)``; ``params`` must then be ``None``.

    Returns:
        A ``SolveResult`` whose ``trace`` arrays have length ``trace_length + 1`` (entry 0 is
        the starting point, NaN after the last recorded step) and whose ``aux`` is
        ``solver.aux(state, *args)`` (``None`` if the solver has no ``aux``).

    Raises:
        ValueError: a negative budget, a traced budget without ``trace_length``, an unknown
            ``adjoint``, ``"implicit"`` for a solver without ``optimality_fn``, or both
            ``params`` and ``init_state``.
        TypeError: a budget that is not an integer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.core import GradientDescent, run_solver
        >>> solver = GradientDescent(lambda x: jnp.sum((x - 1.0) ** 2), learning_rate=0.25)
        >>> result = run_solver(solver, jnp.zeros(3), max_steps=100)
        >>> bool(result.converged), int(result.num_steps) <= 100
        (True, True)
        >>> run = jax.jit(lambda n: run_solver(solver, jnp.zeros(3), max_steps=n,
        ...                                    trace_length=100))
        >>> int(run(2).num_steps), int(run(3).num_steps)   # one compilation for both budgets
        (2, 3)
    """
    length = _resolve_budget(max_steps, trace_length)
    mode = _resolve_adjoint(solver, adjoint)
    if init_state is not None and params is not None:
        raise ValueError("give either params or init_state, not both")
    loop_args = lax.stop_gradient(args) if mode == "implicit" else args
    if init_state is None:
        if mode == "implicit":
            params = lax.stop_gradient(params)
        state = solver.init(params, *loop_args)
    else:
        state = lax.stop_gradient(init_state) if mode == "implicit" else init_state
    max_steps = jnp.asarray(max_steps, jnp.int32)

    def guarded_terminate(state: Any) -> tuple[jax.Array, jax.Array]:
        done, status = solver.terminate(state, *loop_args)
        finite = jnp.isfinite(state.value) & jnp.isfinite(state.grad_norm)
        status = jnp.where(finite, status, SolveStatus.NONFINITE)
        return done | ~finite, jnp.asarray(status, jnp.int32)

    def record(trace: dict[str, jax.Array], state: Any) -> dict[str, jax.Array]:
        index = jnp.asarray(state.num_steps, jnp.int32)  # out of range (> length): dropped
        scalars = _trace_scalars(solver, state)
        return {name: trace[name].at[index].set(scalars[name], mode="drop") for name in trace}

    first = _trace_scalars(solver, state)
    empty = {
        name: jnp.full((length + 1,), jnp.nan, jnp.result_type(float, v))
        for name, v in first.items()
    }
    trace = record(empty, state)
    done, status = guarded_terminate(state)

    def keep_going(carry: tuple) -> jax.Array:
        state, _, done, _ = carry
        return ~done & (state.num_steps < max_steps)

    def advance(carry: tuple) -> tuple:
        state, trace, _, _ = carry
        state = solver.step(state, *loop_args)
        done, status = guarded_terminate(state)
        return state, record(trace, state), done, status

    carry = (state, trace, done, status)
    if mode == "unrolled":

        def masked(carry: tuple, _: None) -> tuple[tuple, None]:
            return lax.cond(keep_going(carry), advance, lambda c: c, carry), None

        carry, _ = lax.scan(masked, carry, None, length=length)
    else:
        carry = lax.while_loop(keep_going, advance, carry)
    state, trace, done, status = carry
    status = jnp.where(done, status, SolveStatus.MAX_STEPS_REACHED).astype(jnp.int32)
    stats = {
        name: jnp.asarray(getattr(state, name), jnp.int32)
        for name in _COUNTERS
        if hasattr(state, name)
    }
    if mode == "implicit":
        params, value = _attach_implicit(solver, state, args)
        state = state._replace(params=params, value=value)
    aux_fn = getattr(solver, "aux", None)
    return SolveResult(
        params=state.params,
        value=state.value,
        grad_norm=state.grad_norm,
        num_steps=jnp.asarray(state.num_steps, jnp.int32),
        converged=status == SolveStatus.SUCCESS,
        status=status,
        trace=trace,
        stats=stats,
        aux=None if aux_fn is None else aux_fn(state, *args),
    )
