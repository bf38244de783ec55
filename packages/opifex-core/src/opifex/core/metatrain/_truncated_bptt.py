"""Truncated backpropagation through time (TBPTT).

The meta-gradient of a truncation is ``jax.grad`` of its meta-loss (``truncation_meta_loss``)
with respect to ``phi``, with the truncation's starting state held constant
(``stop_gradient``): the dependence of the starting state on ``phi`` through the earlier
truncations is dropped. The estimate is therefore biased towards short-horizon behaviour
(Wu et al., 2018, "Understanding short-horizon bias in stochastic meta-optimization") unless
the truncation covers the whole unroll (``truncation_length == horizon``), where it is the
exact gradient. Its cost is one forward and one backward pass of ``K`` inner steps per task.
"""

from __future__ import annotations

from typing import Any

import jax

from opifex.core.metatrain._estimator import (
    MetaGradientEstimator,
    batch_init,
    check_estimator_args,
    over_tasks,
)
from opifex.core.metatrain._inner import InnerLoop
from opifex.core.metatrain._unroll import UnrollState, truncation_meta_loss, unroll


def truncated_bptt(
    inner: InnerLoop, truncation_length: int, *, meta_loss: str = "mean"
) -> MetaGradientEstimator:
    """The truncated-backpropagation meta-gradient estimator.

    Its state is an ``UnrollState`` batch (``init_unrolls``): one persistent unroll per task.

    Args:
        inner: the ``InnerLoop`` (``LearnedOptimizer``, ``LearnedInit``, ...).
        truncation_length: ``K``, inner steps per truncation (>= 1).
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"`` (``truncation_meta_loss``).

    Returns:
        A ``MetaGradientEstimator``: ``init(key, phi, num_tasks, horizon)`` and
        ``estimate(key, phi, state, horizon) -> (meta_gradient, state, MetaGradientInfo)``.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedOptimizer
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi["log_lr"])))
        >>> estimator = truncated_bptt(inner, 5)
        >>> phi = {"log_lr": jnp.log(0.01)}
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> float(grad["log_lr"]) < 0  # a larger step would lower the loss
        True
    """
    check_estimator_args(inner, truncation_length, meta_loss, "truncation_length")
    query = meta_loss == "final_query"

    def task_estimate(key: jax.Array, phi: Any, state: UnrollState, horizon: Any) -> tuple:
        start = jax.lax.stop_gradient(state)

        def objective(phi: Any) -> tuple[jax.Array, UnrollState]:
            end, output = unroll(
                key,
                phi,
                start,
                inner=inner,
                num_steps=truncation_length,
                horizon=horizon,
                query=query,
            )
            return truncation_meta_loss(output, meta_loss), end

        (loss, end), grad = jax.value_and_grad(objective, has_aux=True)(phi)
        return grad, loss, end

    return MetaGradientEstimator(batch_init(inner), over_tasks(task_estimate))
