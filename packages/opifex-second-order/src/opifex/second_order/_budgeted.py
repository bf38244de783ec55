"""How ``minimize`` and ``least_squares`` run their solver: one jitted ``run_solver``.

The step budget is traced, so that a new budget (or new ``args``) reuses the compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from opifex.core import SolveResult, check_int_at_least, run_solver


@functools.partial(
    jax.jit, static_argnames=("make_solver", "fun", "config", "trace_length", "adjoint")
)
def _run(
    make_solver: Callable[[Callable, Any], Any],
    fun: Callable,
    config: Any,
    trace_length: int,
    adjoint: str | None,
    x0: Any,
    args: tuple,
    max_steps: jax.Array,
) -> SolveResult:
    return run_solver(
        make_solver(fun, config),
        x0,
        *args,
        max_steps=max_steps,
        trace_length=trace_length,
        adjoint=adjoint,
    )


def solve_with_budget(
    make_solver: Callable[[Callable, Any], Any],
    fun: Callable,
    config: Any,
    x0: Any,
    args: tuple,
    trace_length: int | None,
    adjoint: str | None,
) -> SolveResult:
    """Run ``make_solver(fun, config)`` from the checked ``x0`` for ``config.budget(n)`` steps.

    ``make_solver`` (a solver class or a module-level function: a static argument of ``jit``)
    is called as ``make_solver(fun, config)``. The
    budget is traced and the config passed with ``max_steps=0``; the trace holds
    ``trace_length`` steps (default: the budget).
    """
    budget = config.budget(ravel_pytree(x0)[0].size)
    length = budget if trace_length is None else trace_length
    check_int_at_least(length, 0, "trace_length")
    static = dataclasses.replace(config, max_steps=0)  # the budget is traced
    return _run(make_solver, fun, static, length, adjoint, x0, args, jnp.asarray(budget, jnp.int32))
