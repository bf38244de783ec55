"""A first-order or learned optimiser run under ``jit``, watched for convergence, divergence, stall.

``guarded_run`` is the engine's functional core: one ``lax.while_loop`` that steps an optax
optimiser ``make_optimizer(phi)`` on ``loss(params, key_k, *args)`` and, after every step,
classifies the new iterate (``Guards``) into an ``EngineStatus`` code -- never an exception:

* ``DIVERGED``: the loss or the gradient norm is non-finite, or the loss exceeds
  ``f_0 + divergence_factor * max(|f_0|, tiny)``;
* ``CONVERGED``: the gradient norm is at most ``tolerance``;
* ``STALLED``: ``stall_window`` steps in a row without a loss below
  ``reference - stall_tolerance * |reference|``, the reference being the last loss that was
  such an improvement (initially ``f_0``);
* ``MAX_STEPS_REACHED``: ``budget`` steps were taken without any of these.

The step-``k`` key is ``fold_in(stream_key, start_step + k)`` (the convention of
``run_optimizer``), so that a run continued from step ``start_step`` draws the minibatches the
first run would have. The run keeps the best finite iterate (lowest loss) for a restart.
``make_optimizer``, ``loss``, ``guards`` and ``length`` are static: the same objects give the
same compiled program, whatever ``phi``, the start or the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from opifex.core import tree_l2_norm, tree_where
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import EngineStatus


class Guards(NamedTuple):
    """The static stopping and detection settings of ``guarded_run`` (see the module docstring)."""

    tolerance: float
    divergence_factor: float
    stall_window: int
    stall_tolerance: float

    @classmethod
    def from_config(cls, config: L2OEngineConfig) -> Guards:
        """The guards of an ``L2OEngineConfig``."""
        return cls(
            config.tolerance, config.divergence_factor, config.stall_window, config.stall_tolerance
        )


class GuardedRun(NamedTuple):
    """What ``guarded_run`` returns (arrays only: it passes through ``jit`` and ``vmap``).

    Attributes:
        params: the last iterate.
        value: the loss there.
        grad_norm: the gradient norm there.
        best_params: the iterate with the lowest finite loss (the start if none was lower).
        best_value: its loss.
        best_grad_norm: its gradient norm.
        num_steps: steps taken (0-d int32).
        status: an ``EngineStatus`` code (0-d int32).
        trace: ``{"loss", "grad_norm", "learning_rate"}`` of length ``length + 1``, NaN after
            the last step (``learning_rate[k] = ||u_{k-1}|| / ||g_{k-1}||``, NaN at 0).
    """

    params: Any
    value: jax.Array
    grad_norm: jax.Array
    best_params: Any
    best_value: jax.Array
    best_grad_norm: jax.Array
    num_steps: jax.Array
    status: jax.Array
    trace: dict[str, jax.Array]


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    step: jax.Array
    best: tuple  # (params, value, grad_norm)
    reference: jax.Array
    since: jax.Array
    status: jax.Array
    done: jax.Array
    trace: dict[str, jax.Array]


def adam_factory(learning_rate: jax.Array) -> optax.GradientTransformationExtraArgs:
    """``optax.adam`` as a ``phi -> optimiser`` factory (``phi`` the learning rate).

    Example:
        >>> import jax.numpy as jnp
        >>> opt = adam_factory(jnp.float32(0.1))
        >>> updates, _ = opt.update(jnp.array([2.0, -3.0]), opt.init(jnp.zeros(2)))
        >>> [round(u, 4) for u in updates.tolist()]
        [-0.1, 0.1]
    """
    return optax.adam(learning_rate)


def _classify(
    guards: Guards, value: jax.Array, grad_norm: jax.Array, limit: jax.Array, since: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(done, status)`` of an iterate (``status`` is ``MAX_STEPS_REACHED`` while not done)."""
    diverged = ~(jnp.isfinite(value) & jnp.isfinite(grad_norm)) | (value > limit)
    converged = grad_norm <= guards.tolerance
    stalled = since >= guards.stall_window
    status = jnp.select(
        [diverged, converged, stalled],
        [EngineStatus.DIVERGED, EngineStatus.CONVERGED, EngineStatus.STALLED],
        EngineStatus.MAX_STEPS_REACHED,
    )
    return diverged | converged | stalled, status.astype(jnp.int32)


def guarded_run(
    make_optimizer: Callable[[Any], optax.GradientTransformationExtraArgs],
    loss: Callable[..., jax.Array],
    guards: Guards,
    length: int,
    phi: Any,
    params: Any,
    stream_key: jax.Array,
    start_step: jax.Array,
    budget: jax.Array,
    args: tuple = (),
) -> GuardedRun:
    """Run ``make_optimizer(phi)`` on ``loss`` for at most ``min(budget, length)`` steps.

    Traceable (no checks): ``jit`` it with ``make_optimizer``, ``loss``, ``guards`` and
    ``length`` static (``guarded_run_jit``), ``vmap`` it over starts or tasks.

    Args:
        make_optimizer: ``phi -> optax.GradientTransformationExtraArgs``; its ``update``
            receives ``value=`` (the loss at the current iterate).
        loss: ``loss(params, key, *args) -> scalar``.
        guards: the ``Guards``.
        length: the trace length minus one (static).
        phi: the optimiser's meta-parameters (for ``adam_factory``, the learning rate).
        params: the starting parameters.
        stream_key: the key of the minibatch stream.
        start_step: the index of the first step in the stream (0-d int).
        budget: the most steps to take (0-d int).
        args: further arguments of ``loss`` (e.g. the task).

    Returns:
        A ``GuardedRun``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss = lambda p, key: jnp.sum((p - 1.0) ** 2)
        >>> guards = Guards(1e-4, 1e3, 50, 1e-3)
        >>> run = guarded_run(adam_factory, loss, guards, 300, jnp.float32(0.1), jnp.zeros(3),
        ...                   jax.random.key(0), 0, 300)
        >>> EngineStatus(int(run.status)).name, bool(jnp.allclose(run.params, 1.0, atol=1e-3))
        ('CONVERGED', True)
    """
    optimizer = make_optimizer(phi)
    start_step = jnp.asarray(start_step, jnp.int32)

    def evaluate(params: Any, k: jax.Array) -> tuple[jax.Array, Any, jax.Array]:
        key = jax.random.fold_in(stream_key, start_step + k)
        value, grad = jax.value_and_grad(loss)(params, key, *args)
        return value, grad, tree_l2_norm(grad)

    zero = jnp.zeros((), jnp.int32)
    value, grad, grad_norm = evaluate(params, zero)
    limit = value + guards.divergence_factor * jnp.maximum(
        jnp.abs(value), jnp.finfo(value.dtype).tiny
    )
    done, status = _classify(guards, value, grad_norm, limit, zero)
    nan = jnp.full((length + 1,), jnp.nan, jnp.result_type(float, value))
    trace = {
        "loss": nan.at[0].set(value),
        "grad_norm": nan.at[0].set(grad_norm),
        "learning_rate": nan,
    }
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    best = (params, jnp.where(finite, value, jnp.inf), grad_norm)
    carry = _Carry(
        params=params,
        opt_state=optimizer.init(params),
        value=value,
        grad=grad,
        grad_norm=grad_norm,
        step=zero,
        best=best,
        reference=value,
        since=zero,
        status=status,
        done=done,
        trace=trace,
    )

    def keep_going(c: _Carry) -> jax.Array:
        return ~c.done & (c.step < budget) & (c.step < length)

    def advance(c: _Carry) -> _Carry:
        updates, opt_state = optimizer.update(c.grad, c.opt_state, c.params, value=c.value)
        params = optax.apply_updates(c.params, updates)
        step = c.step + 1
        value, grad, grad_norm = evaluate(params, step)
        rate = tree_l2_norm(updates) / c.grad_norm
        improved = value < c.reference - guards.stall_tolerance * jnp.abs(c.reference)
        since = jnp.where(improved, 0, c.since + 1)
        done, status = _classify(guards, value, grad_norm, limit, since)
        better = jnp.isfinite(value) & jnp.isfinite(grad_norm) & (value < c.best[1])
        trace = {
            "loss": c.trace["loss"].at[step].set(value),
            "grad_norm": c.trace["grad_norm"].at[step].set(grad_norm),
            "learning_rate": c.trace["learning_rate"].at[step].set(rate),
        }
        return _Carry(
            params=params,
            opt_state=opt_state,
            value=value,
            grad=grad,
            grad_norm=grad_norm,
            step=step,
            best=tree_where(better, (params, value, grad_norm), c.best),
            reference=jnp.where(improved, value, c.reference),
            since=since,
            status=status,
            done=done,
            trace=trace,
        )

    c = lax.while_loop(keep_going, advance, carry)
    return GuardedRun(
        params=c.params,
        value=c.value,
        grad_norm=c.grad_norm,
        best_params=c.best[0],
        best_value=c.best[1],
        best_grad_norm=c.best[2],
        num_steps=c.step,
        status=c.status,
        trace=c.trace,
    )


# ``guarded_run`` compiled once per optimiser factory, loss, guards and trace length
guarded_run_jit = jax.jit(
    guarded_run, static_argnames=("make_optimizer", "loss", "guards", "length")
)
