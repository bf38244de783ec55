"""Unrolled inner optimisation: ``K`` steps of the optimiser of ``phi`` on one task.

An unroll is the trajectory of one task's parameters under a learned optimiser, from a fresh
start (``init_unroll``) to its horizon ``T``. It is advanced in truncations of ``K`` steps by
``unroll``, whose state (``UnrollState``) persists from one truncation to the next. When an
unroll reaches its horizon, the next step starts a new one: a new task and new parameters
(``init_unroll`` with a key drawn for that truncation) and a fresh optimiser state.

Each step ``t`` draws a minibatch key ``k_t``, takes ``g_t = grad loss(theta_t, task, k_t)``,
applies ``optimizer.update(g_t, state, theta_t, value=loss(theta_t))`` and records
``loss(theta_{t+1}, task, k_t)``: the training loss after the step, on the step's minibatch.
The **meta-loss of a truncation** is the mean of these ``K`` losses (``truncation_meta_loss``).
Using the loss *after* each update (not before) makes every recorded loss depend on ``phi``
within the truncation, so that even ``K = 1`` gives a non-zero truncated gradient; the mean
(not the sum) keeps its scale independent of ``K``. Summed over the truncations of one unroll,
it is ``1 / K`` times the sum of the unroll's losses (the "full-unroll meta-loss").
With ``meta_loss="log_mean"`` the mean is of the losses' logarithms instead: every task then
counts by its relative progress, not by its loss's scale (the losses must be positive; a
non-positive one gives a non-finite meta-loss, which ``meta_train`` treats as a failed task).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core import TaskFamily, check_choice

MakeOptimizer = Callable[[Any], optax.GradientTransformationExtraArgs]
META_LOSSES = ("mean", "log_mean")


class UnrollState(NamedTuple):
    """The persistent state of one unroll.

    Attributes:
        params: the task's current parameters.
        opt_state: the learned optimiser's state.
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
    """

    losses: jax.Array
    restarted: jax.Array


def tree_where(condition: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise ``jnp.where(condition, a, b)`` for a scalar ``condition`` (broadcast)."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def init_unroll(
    key: jax.Array, phi: Any, family: TaskFamily, make_optimizer: MakeOptimizer
) -> UnrollState:
    """A fresh unroll: a new task, new parameters, the optimiser's initial state, step 0.

    Args:
        key: draws the task and the initial parameters.
        phi: the learned optimiser's meta-parameters.
        family: the ``TaskFamily``.
        make_optimizer: ``phi -> optax.GradientTransformationExtraArgs``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> state = init_unroll(jax.random.key(0), init_learnable_sgd_params(),
        ...                     QuadraticFamily(dimension=3), learnable_sgd)
        >>> state.params.shape, int(state.step)
        ((3,), 0)
    """
    task_key, init_key = jax.random.split(key)
    task = family.sample(task_key)
    params = family.init(init_key, task)
    opt_state = make_optimizer(phi).init(params)
    return UnrollState(params, opt_state, task, jnp.zeros((), jnp.int32))


def unroll(
    key: jax.Array,
    phi: Any,
    state: UnrollState,
    *,
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    num_steps: int,
    horizon: int | jax.Array,
) -> tuple[UnrollState, UnrollOutput]:
    """Run ``num_steps`` inner steps of ``make_optimizer(phi)`` from ``state`` (one truncation).

    A step whose ``state.step`` is ``>= horizon`` first replaces the unroll by a fresh one,
    ``init_unroll`` of a key drawn from ``key`` (the same fresh start for the whole
    truncation). Differentiable in ``phi``; ``jit`` / ``vmap``-able (``horizon`` may be traced,
    ``num_steps`` is static).

    Args:
        key: draws the minibatch of every step and the fresh start used by a reset.
        phi: the learned optimiser's meta-parameters.
        state: where the truncation starts.
        family: the ``TaskFamily``.
        make_optimizer: ``phi -> optax.GradientTransformationExtraArgs``.
        num_steps: ``K``, the truncation length.
        horizon: ``T``, the length of an unroll.

    Returns:
        ``(state after the truncation, UnrollOutput)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> family, phi = QuadraticFamily(dimension=3), init_learnable_sgd_params(0.05)
        >>> state = init_unroll(jax.random.key(0), phi, family, learnable_sgd)
        >>> state, out = unroll(jax.random.key(1), phi, state, family=family,
        ...                     make_optimizer=learnable_sgd, num_steps=5, horizon=20)
        >>> int(state.step), out.losses.shape
        (5, (5,))
    """
    optimizer = make_optimizer(phi)
    fresh_key, steps_key = jax.random.split(key)
    fresh = init_unroll(fresh_key, phi, family, make_optimizer)

    def step(current: UnrollState, step_key: jax.Array) -> tuple[UnrollState, tuple]:
        reset = current.step >= horizon
        current = tree_where(reset, fresh, current)
        loss, grads = jax.value_and_grad(family.loss)(current.params, current.task, step_key)
        updates, opt_state = optimizer.update(grads, current.opt_state, current.params, value=loss)
        params = optax.apply_updates(current.params, updates)
        new_loss = family.loss(params, current.task, step_key)
        return UnrollState(params, opt_state, current.task, current.step + 1), (new_loss, reset)

    state, (losses, resets) = jax.lax.scan(step, state, jax.random.split(steps_key, num_steps))
    return state, UnrollOutput(losses, jnp.cumsum(resets) > 0)


def step_meta_losses(losses: jax.Array, meta_loss: str = "mean") -> jax.Array:
    """The per-step terms of the meta-loss: ``losses`` (``"mean"``) or ``log(losses)``.

    Example:
        >>> import jax.numpy as jnp
        >>> step_meta_losses(jnp.array([1.0, jnp.e]), "log_mean").tolist()
        [0.0, 1.0]
    """
    check_choice(meta_loss, META_LOSSES, "meta_loss")
    return jnp.log(losses) if meta_loss == "log_mean" else losses


def truncation_meta_loss(output: UnrollOutput, meta_loss: str = "mean") -> jax.Array:
    """The meta-loss of a truncation: the mean of its per-step losses (see the module docstring).

    Args:
        output: the truncation's ``UnrollOutput``.
        meta_loss: ``"mean"`` (the mean of the losses) or ``"log_mean"`` (of their logs).

    Example:
        >>> import jax.numpy as jnp
        >>> out = UnrollOutput(jnp.array([3.0, 1.0]), jnp.array([False, False]))
        >>> float(truncation_meta_loss(out))
        2.0
        >>> round(float(truncation_meta_loss(out, "log_mean")), 4)  # log(3) / 2
        0.5493
    """
    return jnp.mean(step_meta_losses(output.losses, meta_loss))


def init_unrolls(
    key: jax.Array,
    phi: Any,
    *,
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    num_tasks: int,
    horizon: int | jax.Array,
) -> UnrollState:
    """A batch of ``num_tasks`` fresh unrolls with staggered step counters.

    Task ``i`` starts with ``step = (i * horizon) // num_tasks``, so the tasks reach their
    horizon (and are resampled) at different truncations. A task that starts at ``step = s``
    runs ``horizon - s`` steps in its first unroll; every later unroll has the full horizon.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> states = init_unrolls(jax.random.key(0), init_learnable_sgd_params(),
        ...                       family=QuadraticFamily(dimension=3),
        ...                       make_optimizer=learnable_sgd, num_tasks=4, horizon=20)
        >>> states.step.tolist()
        [0, 5, 10, 15]
    """
    keys = jax.random.split(key, num_tasks)
    states = jax.vmap(lambda k: init_unroll(k, phi, family, make_optimizer))(keys)
    offsets = (jnp.arange(num_tasks, dtype=jnp.int32) * horizon) // num_tasks
    return states._replace(step=offsets.astype(jnp.int32))
