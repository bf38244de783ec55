"""Unrolled inner optimisation: ``K`` steps of the inner loop built from ``phi`` on one task.

An unroll is the trajectory of one task's parameters under an ``InnerLoop``, from a fresh
start (``init_unroll``: a new task, ``inner.start(phi, key, task)`` and a fresh state of
``inner.optimizer(phi)``) to its horizon ``T``. It is advanced in truncations of ``K`` steps by
``unroll``, whose state (``UnrollState``) persists from one truncation to the next. When an
unroll reaches its horizon, the next step starts a new one (``init_unroll`` with a key drawn
for that truncation).

Each step ``t`` draws a minibatch key ``k_t``, takes ``g_t = grad loss(theta_t, task, k_t)``,
applies ``optimizer.update(g_t, state, theta_t, value=loss(theta_t))`` and records
``loss(theta_{t+1}, task, k_t)``: the training loss after the step, on the step's minibatch.
With ``first_order=True`` the gradients ``g_t`` are held constant (``stop_gradient``): no second
derivatives of the loss enter a meta-gradient. With ``query=True`` each step also records the
loss after it on a separate draw of the task's data (the query set, key ``fold_in(k_t, 1)``):
``family.query_loss(params, task, key)`` when the family defines it (a few-shot family whose
tasks carry a fixed support and query set), else ``family.loss``.

The **meta-loss of a truncation** (``truncation_meta_loss``, ``meta_loss=``):

* ``"mean"``: the mean of the ``K`` recorded losses. Using the loss *after* each update makes
  every recorded loss depend on ``phi`` within the truncation, so that even ``K = 1`` gives a
  non-zero truncated gradient; the mean keeps its scale independent of ``K``. Summed over the
  truncations of one unroll, it is ``1 / K`` times the sum of the unroll's losses.
* ``"log_mean"``: the mean of the losses' logarithms: every task counts by its relative
  progress, not by its loss's scale (the losses must be positive; a non-positive one gives a
  non-finite meta-loss, which ``meta_train`` treats as a failed task).
* ``"final_query"``: the query loss after the last step of an unroll (MAML's meta-loss: the
  loss on the query set after the inner steps on the support set); a truncation counts it
  for each unroll that ends within it, and 0 otherwise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core._checks import check_choice
from opifex.core._tree import tree_where
from opifex.core.metatrain._inner import InnerLoop

META_LOSSES = ("mean", "log_mean", "final_query")


class UnrollState(NamedTuple):
    """The persistent state of one unroll.

    Attributes:
        params: the task's current parameters.
        opt_state: the inner optimiser's state.
        task: the task (a pytree of arrays from ``family.sample``).
        step: inner steps taken in the current unroll (0-d int32); the next step starts a new
            unroll when it is ``>= horizon``.
    """

    params: Any
    opt_state: Any
    task: Any
    step: jax.Array


class UnrollOutput(NamedTuple):
    """Per-step records of one truncation (arrays of length ``K``).

    Attributes:
        losses: the training loss after each step's update, on that step's minibatch.
        restarted: whether the step belongs to an unroll that started within this truncation
            (``True`` from the first step after a reset on).
        ended: whether the step was the last of its unroll (its ``horizon``-th step), or
            ``None``.
        query_losses: the loss after each step on the query draw (``unroll(query=True)``),
            or ``None``.
    """

    losses: jax.Array
    restarted: jax.Array
    ended: jax.Array | None = None
    query_losses: jax.Array | None = None


def _optimizer(inner: InnerLoop, phi: Any) -> optax.GradientTransformationExtraArgs:
    """``inner.optimizer(phi)``, taking ``value=`` and other extra arguments."""
    return optax.with_extra_args_support(inner.optimizer(phi))


def init_unroll(key: jax.Array, phi: Any, inner: InnerLoop) -> UnrollState:
    """A fresh unroll: a new task, its start, the optimiser's initial state, step 0.

    Args:
        key: draws the task and the start (``inner.start``'s key).
        phi: the meta-parameters.
        inner: the ``InnerLoop``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> maml = LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.1))
        >>> state = init_unroll(jax.random.key(0), jnp.ones(3), maml)
        >>> state.params.tolist(), int(state.step)
        ([1.0, 1.0, 1.0], 0)
    """
    task_key, init_key = jax.random.split(key)
    task = inner.family.sample(task_key)
    params = inner.start(phi, init_key, task)
    opt_state = _optimizer(inner, phi).init(params)
    return UnrollState(params, opt_state, task, jnp.zeros((), jnp.int32))


def unroll(
    key: jax.Array,
    phi: Any,
    state: UnrollState,
    *,
    inner: InnerLoop,
    num_steps: int,
    horizon: int | jax.Array,
    first_order: bool = False,
    query: bool = False,
    fresh: UnrollState | None = None,
) -> tuple[UnrollState, UnrollOutput]:
    """Run ``num_steps`` inner steps of ``inner.optimizer(phi)`` from ``state`` (a truncation).

    A step whose ``state.step`` is ``>= horizon`` first replaces the unroll by a fresh one,
    ``init_unroll`` of a key drawn from ``key`` (the same fresh start for the whole
    truncation). Differentiable in ``phi``; ``jit`` / ``vmap``-able (``horizon`` may be traced,
    ``num_steps``, ``first_order`` and ``query`` are static).

    Args:
        key: draws the minibatch of every step and the fresh start used by a reset.
        phi: the meta-parameters.
        state: where the truncation starts.
        inner: the ``InnerLoop``.
        num_steps: ``K``, the truncation length.
        horizon: ``T``, the length of an unroll.
        first_order: hold the inner gradients constant (no second derivatives).
        query: also record each step's loss on the query draw (``query_losses``).
        fresh: the unroll a reset starts (default: ``init_unroll`` of a key drawn from
            ``key``). A caller that ignores the steps after a reset passes its own start,
            which saves drawing a new task at every step.

    Returns:
        ``(state after the truncation, UnrollOutput)``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedOptimizer
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi)))
        >>> phi = jnp.log(0.05)
        >>> state = init_unroll(jax.random.key(0), phi, inner)
        >>> state, out = unroll(jax.random.key(1), phi, state, inner=inner, num_steps=5,
        ...                     horizon=20)
        >>> int(state.step), out.losses.shape
        (5, (5,))
    """
    family = inner.family
    query_fn = getattr(family, "query_loss", family.loss)
    optimizer = _optimizer(inner, phi)
    fresh_key, steps_key = jax.random.split(key)
    if fresh is None:
        fresh = init_unroll(fresh_key, phi, inner)

    def step(current: UnrollState, step_key: jax.Array) -> tuple[UnrollState, tuple]:
        reset = current.step >= horizon
        current = tree_where(reset, fresh, current)
        loss, grads = jax.value_and_grad(family.loss)(current.params, current.task, step_key)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = optimizer.update(grads, current.opt_state, current.params, value=loss)
        params = optax.apply_updates(current.params, updates)
        new_loss = family.loss(params, current.task, step_key)
        query_loss = (
            query_fn(params, current.task, jax.random.fold_in(step_key, 1)) if query else None
        )
        new = UnrollState(params, opt_state, current.task, current.step + 1)
        return new, (new_loss, reset, new.step >= horizon, query_loss)

    keys = jax.random.split(steps_key, num_steps)
    state, (losses, resets, ended, query_losses) = jax.lax.scan(step, state, keys)
    return state, UnrollOutput(losses, jnp.cumsum(resets) > 0, ended, query_losses)


def step_meta_losses(output: UnrollOutput, meta_loss: str = "mean") -> jax.Array:
    """The per-step terms of the meta-loss (``reduce_steps`` combines them).

    ``"mean"``: the losses; ``"log_mean"``: their logs; ``"final_query"``: the query loss at
    the steps that end an unroll, 0 elsewhere.

    Raises:
        ValueError: an unknown ``meta_loss``, or ``"final_query"`` without query losses.

    Example:
        >>> import jax.numpy as jnp
        >>> out = UnrollOutput(jnp.array([1.0, jnp.e]), jnp.array([False, False]))
        >>> step_meta_losses(out, "log_mean").tolist()
        [0.0, 1.0]
    """
    check_choice(meta_loss, META_LOSSES, "meta_loss")
    if meta_loss == "final_query":
        if output.query_losses is None or output.ended is None:
            raise ValueError('meta_loss="final_query" needs the query losses: unroll(query=True)')
        return jnp.where(output.ended, output.query_losses, 0)
    return jnp.log(output.losses) if meta_loss == "log_mean" else output.losses


def reduce_steps(terms: jax.Array, meta_loss: str) -> jax.Array:
    """Combine per-step terms (last axis) into meta-losses: a sum or a mean over the steps.

    ``"final_query"`` sums (one term per unroll that ends); the others average.

    Example:
        >>> import jax.numpy as jnp
        >>> reduce_steps(jnp.array([0.0, 3.0]), "final_query").tolist()
        3.0
    """
    return jnp.sum(terms, axis=-1) if meta_loss == "final_query" else jnp.mean(terms, axis=-1)


def truncation_meta_loss(output: UnrollOutput, meta_loss: str = "mean") -> jax.Array:
    """The meta-loss of a truncation (see the module docstring).

    Args:
        output: the truncation's ``UnrollOutput``.
        meta_loss: ``"mean"`` (the mean of the losses), ``"log_mean"`` (of their logs) or
            ``"final_query"`` (the query loss of each unroll that ends in the truncation).

    Example:
        >>> import jax.numpy as jnp
        >>> out = UnrollOutput(jnp.array([3.0, 1.0]), jnp.array([False, False]))
        >>> float(truncation_meta_loss(out))
        2.0
        >>> round(float(truncation_meta_loss(out, "log_mean")), 4)  # log(3) / 2
        0.5493
    """
    return reduce_steps(step_meta_losses(output, meta_loss), meta_loss)


def init_unrolls(
    key: jax.Array, phi: Any, *, inner: InnerLoop, num_tasks: int, horizon: int | jax.Array
) -> UnrollState:
    """A batch of ``num_tasks`` fresh unrolls with staggered step counters.

    Task ``i`` starts with ``step = (i * horizon) // num_tasks``, so the tasks reach their
    horizon (and are resampled) at different truncations. A task that starts at ``step = s``
    runs ``horizon - s`` steps in its first unroll; every later unroll has the full horizon.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> maml = LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.1))
        >>> states = init_unrolls(jax.random.key(0), jnp.zeros(3), inner=maml, num_tasks=4,
        ...                       horizon=20)
        >>> states.step.tolist()
        [0, 5, 10, 15]
    """
    keys = jax.random.split(key, num_tasks)
    states = jax.vmap(lambda k: init_unroll(k, phi, inner))(keys)
    offsets = (jnp.arange(num_tasks, dtype=jnp.int32) * horizon) // num_tasks
    return states._replace(step=offsets.astype(jnp.int32))
