"""One ``lax.while_loop`` driver for every iterative solver (init / step / terminate).

A solver is any object with three pure methods::

    init(params, *args) -> state
    step(state, *args) -> state
    terminate(state, *args) -> (done, status)      # 0-d bool, 0-d int32 SolveStatus

whose ``state`` is a ``NamedTuple`` with at least the fields ``params``, ``value``,
``grad_norm`` and ``num_steps``. Optional fields ``num_fun_evals`` / ``num_grad_evals`` are
reported in ``SolveResult.stats``. An optional method ``trace_fields(state) -> dict`` adds
solver-specific scalars (e.g. a damping parameter) to the per-step trace.

The driver adds what every solver needs and none should re-implement: the step budget, the
NaN/inf guard, the fixed-length trace, and the ``SolveResult``.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax import lax

from opifex.core._checks import check_int_at_least
from opifex.core._result import SolveResult
from opifex.core._status import SolveStatus

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


def run_solver(solver: Solver, params: Any, *args: Any, max_steps: int) -> SolveResult:
    """Run ``solver`` from ``params`` until it terminates or ``max_steps`` steps are taken.

    Works under ``jit`` (``max_steps`` must be static) and ``vmap``. A non-finite value or
    gradient norm stops the loop with ``SolveStatus.NONFINITE``; exhausting the budget gives
    ``SolveStatus.MAX_STEPS_REACHED``. Neither raises.

    Args:
        solver: an object with ``init``, ``step`` and ``terminate`` (see module docstring).
        params: initial parameters (any pytree of arrays).
        *args: extra arguments passed to every solver method (problem data).
        max_steps: the step budget (a Python int >= 0).

    Returns:
        A ``SolveResult`` whose ``trace`` arrays have length ``max_steps + 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import GradientDescent, run_solver
        >>> solver = GradientDescent(lambda x: jnp.sum((x - 1.0) ** 2), learning_rate=0.25)
        >>> result = run_solver(solver, jnp.zeros(3), max_steps=100)
        >>> bool(result.converged), result.num_steps <= 100
        (True, Array(True, dtype=bool))
    """
    check_int_at_least(max_steps, 0, "max_steps")
    state = solver.init(params, *args)
    first = _trace_scalars(solver, state)
    trace = {
        name: jnp.full((max_steps + 1,), jnp.nan, dtype=jnp.result_type(float, v)).at[0].set(v)
        for name, v in first.items()
    }

    def guarded_terminate(state: Any) -> tuple[jax.Array, jax.Array]:
        done, status = solver.terminate(state, *args)
        finite = jnp.isfinite(state.value) & jnp.isfinite(state.grad_norm)
        status = jnp.where(finite, status, SolveStatus.NONFINITE)
        return done | ~finite, jnp.asarray(status, jnp.int32)

    done, status = guarded_terminate(state)

    def keep_going(carry: tuple) -> jax.Array:
        state, _, done, _ = carry
        return ~done & (state.num_steps < max_steps)

    def advance(carry: tuple) -> tuple:
        state, trace, _, _ = carry
        state = solver.step(state, *args)
        index = jnp.minimum(state.num_steps, max_steps)
        trace = {
            name: trace[name].at[index].set(v) for name, v in _trace_scalars(solver, state).items()
        }
        done, status = guarded_terminate(state)
        return state, trace, done, status

    state, trace, done, status = lax.while_loop(keep_going, advance, (state, trace, done, status))
    status = jnp.where(done, status, SolveStatus.MAX_STEPS_REACHED).astype(jnp.int32)
    stats = {
        name: jnp.asarray(getattr(state, name), jnp.int32)
        for name in _COUNTERS
        if hasattr(state, name)
    }
    return SolveResult(
        params=state.params,
        value=state.value,
        grad_norm=state.grad_norm,
        num_steps=jnp.asarray(state.num_steps, jnp.int32),
        converged=status == SolveStatus.SUCCESS,
        status=status,
        trace=trace,
        stats=stats,
    )
