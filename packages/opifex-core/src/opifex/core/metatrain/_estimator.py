"""The interface shared by the meta-gradient estimators, and what they have in common.

A ``MetaGradientEstimator`` is a pair of pure functions over a batch of unrolls:

* ``init(key, phi, num_tasks, horizon) -> state``: ``num_tasks`` staggered unrolls (every leaf
  of ``state`` has a leading axis of size ``num_tasks``, so the batch can be sharded);
* ``estimate(key, phi, state, horizon) -> (meta_gradient, state, MetaGradientInfo)``: advance
  every unroll by one truncation and estimate the gradient of the truncation's meta-loss
  with respect to ``phi``, averaged over the tasks.

The truncated estimators (``truncated_bptt``, ``pes``, ``truncated_es``) keep persistent
unrolls from one estimate to the next; the whole-unroll ones (``full_backprop``,
``first_order``) run fresh unrolls of the whole horizon at every estimate.

A task whose truncation produced a non-finite loss (or meta-gradient) is left out of the
average and its unroll is reset: its step counter is set to the horizon, so its next
truncation starts on a new task. When every task is non-finite the meta-gradient is NaN, which
``meta_train`` treats as a skipped outer step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_choice, check_int_at_least, check_positive
from opifex.core.metatrain._inner import InnerLoop, check_inner
from opifex.core.metatrain._unroll import META_LOSSES, UnrollState, init_unrolls


class MetaGradientInfo(NamedTuple):
    """What an estimate saw.

    Attributes:
        meta_loss: mean truncation meta-loss over the finite tasks (NaN if none).
        task_meta_loss: each task's truncation meta-loss, shape ``(num_tasks,)``.
        nonfinite: which tasks had a non-finite loss or meta-gradient (and were reset),
            shape ``(num_tasks,)``.
    """

    meta_loss: jax.Array
    task_meta_loss: jax.Array
    nonfinite: jax.Array


class MetaGradientEstimator(NamedTuple):
    """``init`` and ``estimate`` pure functions (see the module docstring)."""

    init: Callable[..., Any]
    estimate: Callable[..., tuple[Any, Any, MetaGradientInfo]]


def all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every leaf of ``tree`` is finite (a 0-d bool array)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def task_average(
    task_grads: Any, task_losses: jax.Array, step: jax.Array, horizon: Any
) -> tuple[Any, jax.Array, MetaGradientInfo]:
    """Average per-task estimates over the finite tasks; reset the others' step counters.

    Args:
        task_grads: per-task meta-gradients (leading axis ``num_tasks``).
        task_losses: per-task truncation meta-losses, ``(num_tasks,)``.
        step: per-task step counters after the truncation, ``(num_tasks,)``.
        horizon: the unroll length; a non-finite task's counter is set to it.

    Returns:
        ``(meta_gradient, step, MetaGradientInfo)``.
    """
    finite = jnp.isfinite(task_losses) & jax.vmap(all_finite)(task_grads)
    count = jnp.sum(finite)

    def mean(x: jax.Array) -> jax.Array:
        mask = finite.reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.sum(jnp.where(mask, x, 0), axis=0) / count.astype(x.dtype)

    grad = jax.tree.map(mean, task_grads)
    step = jnp.where(finite, step, jnp.asarray(horizon, step.dtype))
    info = MetaGradientInfo(mean(task_losses), task_losses, ~finite)
    return grad, step, info


def batch_init(inner: InnerLoop) -> Callable[..., UnrollState]:
    """An ``init(key, phi, num_tasks, horizon)`` returning ``init_unrolls``' staggered batch."""

    def init(key: jax.Array, phi: Any, num_tasks: int, horizon: Any) -> UnrollState:
        return init_unrolls(key, phi, inner=inner, num_tasks=num_tasks, horizon=horizon)

    return init


def over_tasks(task_estimate: Callable[..., tuple[Any, jax.Array, Any]]) -> Callable[..., tuple]:
    """Lift a one-task estimate to a batch: ``vmap`` over the tasks, then ``task_average``.

    ``task_estimate(key, phi, task_state, horizon) -> (meta_gradient, meta_loss, task_state)``
    acts on one task's slice of a state with a ``step`` field.
    """

    def estimate(key: jax.Array, phi: Any, state: Any, horizon: Any) -> tuple:
        keys = jax.random.split(key, state.step.shape[0])
        grads, losses, state = jax.vmap(task_estimate, in_axes=(0, None, 0, None))(
            keys, phi, state, horizon
        )
        grad, step, info = task_average(grads, losses, state.step, horizon)
        return grad, state._replace(step=step), info

    return estimate


def antithetic_perturbations(key: jax.Array, phi: Any, num_pairs: int, sigma: float) -> Any:
    """``num_pairs`` Gaussian perturbations ``N(0, sigma^2 I)`` of ``phi`` (leading axis)."""
    leaves, treedef = jax.tree.flatten(phi)
    keys = jax.random.split(key, len(leaves))
    noise = [
        sigma * jax.random.normal(k, (num_pairs, *jnp.shape(x)), jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


def pair_mean(weights: jax.Array, x: jax.Array) -> jax.Array:
    """``mean_p weights[p] * x[p]`` over the leading (pair) axis of ``x``."""
    return jnp.mean(weights.reshape((-1,) + (1,) * (x.ndim - 1)) * x, axis=0)


def check_meta_loss(meta_loss: Any) -> None:
    """``TypeError`` / ``ValueError`` unless ``meta_loss`` is one of ``META_LOSSES``."""
    if not isinstance(meta_loss, str):
        raise TypeError(f"meta_loss must be a str, got {type(meta_loss).__name__}")
    check_choice(meta_loss, META_LOSSES, "meta_loss")


def check_estimator_args(
    inner: Any, num_steps: Any, meta_loss: Any, steps_name: str, **positive: Any
) -> None:
    """Validate the arguments every estimator constructor takes."""
    check_meta_loss(meta_loss)
    check_inner(inner)
    check_int_at_least(num_steps, 1, steps_name)
    for name, value in positive.items():
        check_positive(value, name)


def check_num_particles(num_particles: Any) -> int:
    """Validate an even number of antithetic particles (>= 2); return the number of pairs."""
    check_int_at_least(num_particles, 2, "num_particles")
    if num_particles % 2:
        raise ValueError(
            f"num_particles must be even (antithetic +eps / -eps pairs), got {num_particles}"
        )
    return num_particles // 2
