"""A learned-optimiser solve that falls back to Adam or L-BFGS when it diverges or stalls.

``guarded_solve`` runs the learned optimiser as an ``opifex.core.OptaxSolver`` on the core
driver, compiled: convergence (``||grad|| <= atol``), divergence (``DIVERGED`` past the
divergence limit, ``NONFINITE``) and stalls are detected inside ``jit`` and come back as
``SolveStatus`` codes. If the learned optimiser stopped ``DIVERGED``, ``NONFINITE`` or
``STALLED`` after ``k < num_steps`` steps and the config allows it, the solve continues from the
best parameters seen for the remaining steps:

* ``"adam"``: ``optax.adam(fallback_learning_rate)`` under the same detection, resumed at step
  ``k`` of the same run (``OptaxSolver.resume``): the minibatch stream continues, and the
  divergence limit is measured from the run's own start, not from the (often nearly optimal)
  point it resumes from;
* ``"lbfgs"``: ``opifex.second_order.LBFGSSolver`` for at most ``num_steps - k`` iterations on
  the loss at the fixed key of step ``k`` (exact for deterministic objectives; on a minibatch or
  collocation loss it minimises that one draw). The budget is a traced value: one compilation
  serves every ``k``.

The stall window is measured against the run's budget: ``stall_window=None`` (the default)
means ``min(100, max(10, num_steps // 5))`` steps, so that it can fire within any budget. The
fallback's own outcome is the result's status: a fallback that diverges too is reported as
such. Nothing is reported as converged unless the
gradient-norm test held.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import OptaxSolver, SolveResult, SolveStatus, run_solver
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import ENGINE_TRACE, EngineInfo, engine_result, engine_trace
from opifex.second_order import LBFGSConfig, LBFGSSolver

_FAILURES = (SolveStatus.DIVERGED, SolveStatus.NONFINITE, SolveStatus.STALLED)
_COUNTERS = ("num_fun_evals", "num_grad_evals")


class _Guards(NamedTuple):
    """The static detection settings of one engine run (a jit cache key)."""

    atol: float
    divergence_factor: float
    stall_window: int
    stall_rtol: float


def stall_window(config: L2OEngineConfig, num_steps: int) -> int:
    """The stall window of a ``num_steps`` run: the config's, else ``min(100, max(10, n // 5))``.

    Example:
        >>> stall_window(L2OEngineConfig(), 100), stall_window(L2OEngineConfig(), 5000)
        (20, 100)
    """
    if config.stall_window is not None:
        return config.stall_window
    return min(100, max(10, num_steps // 5))


def _guards(config: L2OEngineConfig, num_steps: int) -> _Guards:
    return _Guards(
        config.atol, config.divergence_factor, stall_window(config, num_steps), config.stall_rtol
    )


def _guarded(optimizer: optax.GradientTransformation, loss: Callable, guards: _Guards):
    return OptaxSolver(
        loss,
        optimizer,
        stochastic=True,
        atol=guards.atol,
        divergence_factor=guards.divergence_factor,
        stall_window=guards.stall_window,
        stall_rtol=guards.stall_rtol,
        keep_best=True,
    )


@functools.partial(jax.jit, static_argnames=("make_optimizer", "loss", "guards", "length"))
def _learned_run(make_optimizer, loss, guards, length, phi, params, stream_key, args):
    solver = _guarded(make_optimizer(phi), loss, guards)
    return run_solver(solver, params, stream_key, *args, max_steps=length)


@functools.partial(jax.jit, static_argnames=("loss", "guards", "length"))
def _adam_tail(loss, guards, length, learning_rate, params, stream_key, start, args):
    solver = _guarded(optax.adam(learning_rate), loss, guards)
    state = solver.resume(params, *start, stream_key, *args)
    return run_solver(solver, None, stream_key, *args, init_state=state, max_steps=length)


@functools.partial(jax.jit, static_argnames=("loss", "atol", "length"))
def _lbfgs_tail(loss, atol, length, params, key, args, budget):
    solver = LBFGSSolver(loss, LBFGSConfig(atol=atol))
    return run_solver(solver, params, key, *args, max_steps=budget, trace_length=length)


def _outcome(run: SolveResult) -> SolveResult:
    """``run``, reporting its best iterate after a divergence (the last one is useless)."""
    if int(run.status) in (SolveStatus.DIVERGED, SolveStatus.NONFINITE):
        best = run.aux
        return run._replace(params=best.params, value=best.value, grad_norm=best.grad_norm)
    return run


def guarded_solve(
    config: L2OEngineConfig,
    make_optimizer: Callable[[Any], optax.GradientTransformationExtraArgs],
    phi: Any,
    loss: Callable[..., jax.Array],
    params: Any,
    stream_key: jax.Array,
    num_steps: int,
    args: tuple = (),
    *,
    method: str = "learned",
    task: Any = None,
) -> SolveResult:
    """Run ``make_optimizer(phi)`` on ``loss`` for ``num_steps`` steps, with the fallback.

    Unchecked (the engine validates). ``loss(params, key, *args)`` and ``make_optimizer`` must
    be hashable (they are static arguments of the compiled run). The fallback is considered
    only when ``method == "learned"``.

    Returns:
        A ``SolveResult`` with ``aux`` an ``EngineInfo`` and the trace keys ``ENGINE_TRACE``
        (``num_steps + 1`` entries, NaN after the last step); after a fallback at step ``k``,
        entries up to ``k`` are the learned run's and later ones the fallback's, which
        continues from the best parameters.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> loss = lambda p, key: jnp.sum((p - 1.0) ** 2)
        >>> bad_phi = init_learnable_sgd_params(learning_rate=10.0)  # blows up
        >>> result = guarded_solve(L2OEngineConfig(fallback_learning_rate=0.1), learnable_sgd,
        ...                        bad_phi, loss, jnp.zeros(2), jax.random.key(0), 500)
        >>> SolveStatus(result.aux.learned_status).name, result.aux.method, result.status_name
        ('DIVERGED', 'adam', 'SUCCESS')
    """
    guards = _guards(config, num_steps)
    args = tuple(args)
    run = _learned_run(make_optimizer, loss, guards, num_steps, phi, params, stream_key, args)
    status, steps = int(run.status), int(run.num_steps)
    learned_status = status if method == "learned" else None
    learned = engine_result(
        _outcome(run), EngineInfo(method, learned_status, -1, task), num_steps + 1
    )
    fall_back = method == "learned" and config.use_traditional_fallback
    if not (fall_back and status in _FAILURES and steps < num_steps):
        return learned
    best = run.aux.params
    if config.fallback_optimizer == "adam":
        rate = jnp.asarray(config.fallback_learning_rate, run.value.dtype)
        start = (steps, run.trace["value"][0], run.trace["grad_norm"][0])
        tail = _outcome(_adam_tail(loss, guards, num_steps, rate, best, stream_key, start, args))
        tail_trace = {k: np.asarray(v, dtype=float)[steps + 1 :] for k, v in tail.trace.items()}
        tail_steps = int(tail.num_steps) - steps
    else:
        key = jax.random.fold_in(stream_key, steps)
        remaining = jnp.asarray(num_steps - steps, jnp.int32)
        tail = _lbfgs_tail(loss, config.atol, num_steps, best, key, args, remaining)
        tail_trace = {k: np.asarray(v, dtype=float)[1:] for k, v in tail.trace.items()}
        tail_steps = int(tail.num_steps)
    trace = {
        name: np.concatenate(
            [learned.trace[name][: steps + 1], tail_trace.get(name, np.full(num_steps, np.nan))]
        )
        for name in ENGINE_TRACE
    }
    stats = {
        name: learned.stats[name] + tail.stats[name]
        for name in _COUNTERS
        if name in learned.stats and name in tail.stats
    }
    return tail._replace(
        num_steps=jnp.asarray(steps + tail_steps, jnp.int32),
        trace=engine_trace(trace, num_steps + 1),
        stats=stats,
        aux=EngineInfo(config.fallback_optimizer, status, steps, task),
    )
