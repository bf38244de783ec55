"""A learned-optimiser solve that falls back to Adam or L-BFGS when it diverges or stalls.

``guarded_solve`` runs ``guarded_run`` (compiled; the detection happens inside ``jit`` and comes
back as an ``EngineStatus`` code). If the learned optimiser stopped ``DIVERGED`` or ``STALLED``
after ``k < num_steps`` steps and the config allows it, the solve continues from the best
parameters seen with the fallback for the remaining ``num_steps - k`` steps:

* ``"adam"``: ``guarded_run`` with ``optax.adam(fallback_learning_rate)``, under the same
  detection, continuing the minibatch stream at step ``k``;
* ``"lbfgs"``: ``opifex.second_order.minimize`` with ``max_iterations = num_steps - k`` on the
  loss at the fixed key of step ``k`` (exact for deterministic objectives; on a minibatch or
  collocation loss it minimises that one draw). It compiles once per remaining budget.

The fallback's own outcome is the result's status: a fallback that diverges too is reported
as ``DIVERGED``. Nothing is ever reported as converged unless the gradient-norm test held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import EngineStatus, L2OResult, from_solve_result
from opifex.l2o._guarded import GuardedRun, Guards, adam_factory, guarded_run_jit
from opifex.second_order import minimize

_FAILURES = (EngineStatus.DIVERGED, EngineStatus.STALLED)


def _outcome(run: GuardedRun) -> tuple[Any, float, float]:
    """``(params, value, grad_norm)`` to report: the best iterate after a divergence."""
    if int(run.status) == EngineStatus.DIVERGED:
        return run.best_params, float(run.best_value), float(run.best_grad_norm)
    return run.params, float(run.value), float(run.grad_norm)


def _trace(run: GuardedRun) -> dict[str, np.ndarray]:
    return {name: np.asarray(values, dtype=float) for name, values in run.trace.items()}


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
) -> L2OResult:
    """Run ``make_optimizer(phi)`` on ``loss`` for ``num_steps`` steps, with the fallback.

    Unchecked (the engine validates). ``loss(params, key, *args)`` and ``make_optimizer`` must
    be hashable (they are static arguments of the compiled run). The fallback is considered
    only when ``method == "learned"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> loss = lambda p, key: jnp.sum((p - 1.0) ** 2)
        >>> bad_phi = init_learnable_sgd_params(learning_rate=10.0)  # blows up
        >>> result = guarded_solve(L2OEngineConfig(fallback_learning_rate=0.1), learnable_sgd,
        ...                        bad_phi, loss, jnp.zeros(2), jax.random.key(0), 500)
        >>> EngineStatus(result.learned_status).name, result.method, result.status_name
        ('DIVERGED', 'adam', 'CONVERGED')
    """
    guards = Guards.from_config(config)
    run = guarded_run_jit(
        make_optimizer, loss, guards, num_steps, phi, params, stream_key, 0, num_steps, args
    )
    status, steps = int(run.status), int(run.num_steps)
    params_out, value, grad_norm = _outcome(run)
    learned = L2OResult(
        params=params_out,
        value=value,
        grad_norm=grad_norm,
        num_steps=steps,
        status=status,
        method=method,
        learned_status=status if method == "learned" else None,
        fallback_step=-1,
        trace=_trace(run),
        task=task,
    )
    fall_back = method == "learned" and config.use_traditional_fallback
    if not (fall_back and status in _FAILURES and steps < num_steps):
        return learned
    remaining = num_steps - steps
    if config.fallback_optimizer == "adam":
        rate = jnp.asarray(config.fallback_learning_rate, run.value.dtype)
        tail = guarded_run_jit(
            adam_factory,
            loss,
            guards,
            num_steps,
            rate,
            run.best_params,
            stream_key,
            steps,
            remaining,
            args,
        )
        params_out, value, grad_norm = _outcome(tail)
        tail_trace, tail_steps, tail_status = _trace(tail), int(tail.num_steps), int(tail.status)
    else:
        key = jax.random.fold_in(stream_key, steps)
        solved = minimize(
            loss, run.best_params, key, *args, max_iterations=remaining, tolerance=config.tolerance
        )
        tail = from_solve_result(solved, "lbfgs")
        params_out, value, grad_norm = tail.params, tail.value, tail.grad_norm
        tail_trace, tail_steps, tail_status = tail.trace, tail.num_steps, tail.status
    trace = {
        name: np.concatenate([values[: steps + 1], tail_trace[name][1 : remaining + 1]])
        for name, values in learned.trace.items()
    }
    return learned._replace(
        params=params_out,
        value=value,
        grad_norm=grad_norm,
        num_steps=steps + tail_steps,
        status=tail_status,
        method=config.fallback_optimizer,
        fallback_step=steps,
        trace=trace,
    )
