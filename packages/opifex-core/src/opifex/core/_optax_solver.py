"""Any optax transformation as an ``init / step / terminate`` solver for ``run_solver``.

``OptaxSolver(fun, optimizer)`` steps ``optimizer`` on ``fun`` and reports a ``SolveResult``
like every other opifex solver. Options add what a run of a first-order or learned optimiser
needs and what would otherwise be re-written around every such loop:

* **minibatches** (``stochastic=True``): ``fun(params, key, *args)``, where the solver's first
  argument is a stream key and step ``k`` uses ``jax.random.fold_in(stream_key, k)``, so that
  two optimisers run on the same stream see the same minibatches, and a run continued from
  step ``k`` (``run_solver(..., init_state=...)``) draws what the first run would have;
* **convergence**: ``||grad|| <= atol + rtol * ||grad_0||`` (no test when both are ``None``:
  the run takes its whole budget, as a benchmark run should);
* **divergence**: ``SolveStatus.DIVERGED`` once the value exceeds
  ``f_0 + divergence_factor * max(|f_0|, tiny)``, ``f_0`` the value at the start of the run;
  ``resume`` continues a run (e.g. with another optimiser from its best iterate) with the limit
  of the run's own start, not of the point it resumes from;
* **stalls**: ``SolveStatus.STALLED`` after ``stall_window`` steps in a row without a value
  below ``reference - stall_rtol * |reference|``, the reference being the last value that was
  such an improvement (initially ``f_0``);
* **the best iterate** (``keep_best=True``): the finite iterate with the lowest value, returned
  as ``SolveResult.aux`` (a ``BestIterate``), e.g. to restart after a divergence.

Line-search optimisers (``optax.lbfgs``, whose state holds ``num_linesearch_steps``) receive
``value=``, ``grad=`` and ``value_fn=`` and their last evaluation is reused
(``optax.value_and_grad_from_state``); ``num_fun_evals`` counts every evaluation, line-search
trials included, and is traced per step, so that methods of different cost per step can be
compared per evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core._checks import check_int_at_least, check_positive
from opifex.core._status import SolveStatus
from opifex.core._tree import tree_l2_norm, tree_where


class BestIterate(NamedTuple):
    """The finite iterate with the lowest value seen in a run (``OptaxSolver(keep_best=True)``)."""

    params: Any
    value: jax.Array
    grad_norm: jax.Array


class OptaxSolverState(NamedTuple):
    """State of ``OptaxSolver``: arrays only.

    Attributes:
        params: current iterate.
        value: objective at ``params`` (on the step's minibatch when stochastic).
        grad: gradient at ``params``.
        grad_norm: Euclidean norm of ``grad``.
        num_steps: optimiser steps taken.
        num_fun_evals: objective evaluations, the one at the start and line-search trials
            included.
        num_grad_evals: gradient evaluations.
        opt_state: the optax state.
        threshold: the gradient-norm threshold ``atol + rtol * ||grad_0||`` (``-inf``: none).
        limit: the divergence limit (``inf``: none).
        reference: the stall reference value.
        since: steps since the value last improved on ``reference``.
        learning_rate: the effective learning rate ``||update|| / ||grad||`` of the last step
            (NaN before the first; for SGD, its learning rate).
        best: the ``BestIterate`` (``None`` unless ``keep_best``).
    """

    params: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    num_steps: jax.Array
    num_fun_evals: jax.Array
    num_grad_evals: jax.Array
    opt_state: Any
    threshold: jax.Array
    limit: jax.Array
    reference: jax.Array
    since: jax.Array
    learning_rate: jax.Array
    best: Any


class OptaxSolver:
    """Run an optax transformation with the solver protocol of ``opifex.core.run_solver``.

    Args:
        fun: the objective, ``fun(params, *args)`` (``fun(params, key, *args)`` when
            ``stochastic``), a float scalar.
        optimizer: any optax ``GradientTransformation``; a plain one is given extra-args
            support (it then ignores ``value=``).
        stochastic: the first solver argument is a stream key (see the module docstring).
        atol: absolute gradient-norm tolerance (``None``: 0 when ``rtol`` is set).
        rtol: gradient-norm tolerance relative to the starting gradient norm.
        divergence_factor: ``DIVERGED`` past ``f_0 + divergence_factor * max(|f_0|, tiny)``
            (``None``: no divergence test; > 0).
        stall_window: ``STALLED`` after this many steps without an improvement (``None``: no
            stall test; >= 1).
        stall_rtol: the relative improvement that resets the stall count (>= 0).
        keep_best: track the best iterate and return it as ``SolveResult.aux``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from opifex.core import run_solver
        >>> solver = OptaxSolver(lambda x: jnp.sum((x - 1.0) ** 2), optax.adam(0.1), atol=1e-4)
        >>> result = run_solver(solver, jnp.zeros(3), max_steps=500)
        >>> result.status_name, bool(jnp.allclose(result.params, 1.0, atol=1e-3))
        ('SUCCESS', True)
    """

    def __init__(
        self,
        fun: Callable[..., jax.Array],
        optimizer: optax.GradientTransformation,
        *,
        stochastic: bool = False,
        atol: float | None = None,
        rtol: float | None = None,
        divergence_factor: float | None = None,
        stall_window: int | None = None,
        stall_rtol: float = 0.0,
        keep_best: bool = False,
    ) -> None:
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}"
            )
        for name, value in (("atol", atol), ("rtol", rtol)):
            if value is not None:
                check_positive(value, name, allow_zero=True)
        if divergence_factor is not None:
            check_positive(divergence_factor, "divergence_factor")
        if stall_window is not None:
            check_int_at_least(stall_window, 1, "stall_window")
        check_positive(stall_rtol, "stall_rtol", allow_zero=True)
        if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
            optimizer = optax.with_extra_args_support(optimizer)
        self.fun = fun
        self.optimizer = optimizer
        self.stochastic = stochastic
        self.atol = atol
        self.rtol = rtol
        self.divergence_factor = divergence_factor
        self.stall_window = stall_window
        self.stall_rtol = stall_rtol
        self.keep_best = keep_best

    def _objective(self, num_steps: jax.Array, args: tuple) -> Callable[[Any], jax.Array]:
        """``params -> value`` of step ``num_steps`` (its minibatch when stochastic)."""
        if not self.stochastic:
            return lambda params: self.fun(params, *args)
        stream, *rest = args
        key = jax.random.fold_in(stream, num_steps)
        return lambda params: self.fun(params, key, *rest)

    def init(self, params: Any, *args: Any) -> OptaxSolverState:
        """Evaluate the objective at ``params`` and set the run's tolerance and limits."""
        return self._start(params, jnp.zeros((), jnp.int32), None, args)

    def resume(
        self,
        params: Any,
        num_steps: jax.Array,
        start_value: jax.Array,
        start_grad_norm: jax.Array,
        *args: Any,
    ) -> OptaxSolverState:
        """A state at ``params`` that continues a run (e.g. another optimiser's) at its step.

        Pass it to ``run_solver(..., init_state=...)``: the step count (so the budget and the
        minibatch stream) continues from ``num_steps``; the divergence limit and the relative
        tolerance are measured from the value and gradient norm at the start of the whole run
        (``start_value``, ``start_grad_norm``), not at ``params``; the optimiser state, the
        stall count and the best iterate start afresh.

        Example:
            >>> import jax.numpy as jnp, optax
            >>> solver = OptaxSolver(lambda x: jnp.sum(x**2), optax.sgd(0.1), divergence_factor=2.0)
            >>> state = solver.resume(jnp.full(2, 1e-6), 40, 2.0, 4.0)
            >>> int(state.num_steps), float(state.limit)   # 2 + 2 * |2|, not from 2e-12
            (40, 6.0)
        """
        start = (jnp.asarray(start_value), jnp.asarray(start_grad_norm))
        return self._start(params, jnp.asarray(num_steps, jnp.int32), start, args)

    def _start(
        self,
        params: Any,
        num_steps: jax.Array,
        start: tuple[jax.Array, jax.Array] | None,
        args: tuple,
    ) -> OptaxSolverState:
        value, grad = jax.value_and_grad(self._objective(num_steps, args))(params)
        grad_norm = tree_l2_norm(grad)
        dtype = jnp.result_type(value)
        start_value, start_grad_norm = (value, grad_norm) if start is None else start
        start_value = jnp.asarray(start_value, dtype)
        if self.atol is None and self.rtol is None:
            threshold = jnp.asarray(-jnp.inf, dtype)
        else:
            threshold = (self.atol or 0.0) + (self.rtol or 0.0) * start_grad_norm
        if self.divergence_factor is None:
            limit = jnp.asarray(jnp.inf, dtype)
        else:
            scale = jnp.maximum(jnp.abs(start_value), jnp.finfo(dtype).tiny)
            limit = start_value + self.divergence_factor * scale
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        best = None
        if self.keep_best:
            best = BestIterate(params, jnp.where(finite, value, jnp.inf), grad_norm)
        return OptaxSolverState(
            params=params,
            value=value,
            grad=grad,
            grad_norm=grad_norm,
            num_steps=num_steps,
            num_fun_evals=jnp.ones((), jnp.int32),
            num_grad_evals=jnp.ones((), jnp.int32),
            opt_state=self.optimizer.init(params),
            threshold=jnp.asarray(threshold, dtype),
            limit=jnp.asarray(limit, dtype),
            reference=value,
            since=jnp.zeros((), jnp.int32),
            learning_rate=jnp.asarray(jnp.nan, dtype),
            best=best,
        )

    def step(self, state: OptaxSolverState, *args: Any) -> OptaxSolverState:
        """One optimiser step, then the objective at the new iterate."""
        objective = self._objective(state.num_steps, args)
        updates, opt_state = self.optimizer.update(
            state.grad,
            state.opt_state,
            state.params,
            value=state.value,
            grad=state.grad,
            value_fn=objective,
        )
        params = optax.apply_updates(state.params, updates)
        following = self._objective(state.num_steps + 1, args)
        trials = optax.tree.get(opt_state, "num_linesearch_steps")
        if trials is None:
            value, grad = jax.value_and_grad(following)(params)
            evaluations = jnp.ones((), jnp.int32)
        else:  # reuse the line search's last evaluation (recomputed only if not finite)
            recomputed = ~jnp.isfinite(optax.tree.get(opt_state, "value"))
            value, grad = optax.value_and_grad_from_state(following)(params, state=opt_state)
            evaluations = jnp.asarray(trials, jnp.int32) + recomputed.astype(jnp.int32)
        grad_norm = tree_l2_norm(grad)
        improved = value < state.reference - self.stall_rtol * jnp.abs(state.reference)
        best = state.best
        if self.keep_best:
            better = jnp.isfinite(value) & jnp.isfinite(grad_norm) & (value < best.value)
            best = tree_where(better, BestIterate(params, value, grad_norm), best)
        return OptaxSolverState(
            params=params,
            value=value,
            grad=grad,
            grad_norm=grad_norm,
            num_steps=state.num_steps + 1,
            num_fun_evals=state.num_fun_evals + evaluations,
            num_grad_evals=state.num_grad_evals + evaluations,
            opt_state=opt_state,
            threshold=state.threshold,
            limit=state.limit,
            reference=jnp.where(improved, value, state.reference),
            since=jnp.where(improved, 0, state.since + 1),
            learning_rate=tree_l2_norm(updates) / state.grad_norm,
            best=best,
        )

    def terminate(self, state: OptaxSolverState, *args: Any) -> tuple[jax.Array, jax.Array]:
        """Divergence first, then convergence, then a stall (see the module docstring)."""
        diverged = state.value > state.limit
        converged = state.grad_norm <= state.threshold
        stalled = jnp.zeros((), bool)
        if self.stall_window is not None:
            stalled = state.since >= self.stall_window
        status = jnp.select(
            [diverged, converged, stalled],
            [SolveStatus.DIVERGED, SolveStatus.SUCCESS, SolveStatus.STALLED],
            SolveStatus.MAX_STEPS_REACHED,
        )
        return diverged | converged | stalled, status.astype(jnp.int32)

    def trace_fields(self, state: OptaxSolverState) -> dict[str, jax.Array]:
        """Per-step extras: the effective learning rate ``||u|| / ||g||``, evaluations so far."""
        return {"learning_rate": state.learning_rate, "num_fun_evals": state.num_fun_evals}

    def aux(self, state: OptaxSolverState, *args: Any) -> BestIterate | None:
        """The best iterate (``keep_best``), else ``None``."""
        return state.best
