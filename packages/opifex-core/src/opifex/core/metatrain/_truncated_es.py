"""Truncated (non-persistent) antithetic evolution strategies.

Every particle starts the truncation from the task's shared state: particle ``(p, +)``
unrolls ``K`` steps with ``phi + eps_p`` and ``(p, -)`` with ``phi - eps_p``, fresh
``eps_p ~ N(0, sigma^2 I)``, and the estimate is::

    g = 1 / (2 P sigma^2) * sum_p eps_p * (L_p+ - L_p-)

an unbiased estimate of the gradient of the Gaussian-smoothed meta-loss of *this truncation
from this starting state*: like truncated backpropagation, it ignores how the starting state
depends on ``phi`` (truncation bias), but it needs no backward pass and tolerates
non-differentiable or chaotic inner dynamics. The shared state is then advanced by one more
unroll with the unperturbed ``phi``, whose meta-loss is reported.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from opifex.core.metatrain._estimator import (
    MetaGradientEstimator,
    antithetic_perturbations,
    batch_init,
    check_estimator_args,
    check_num_particles,
    over_tasks,
    pair_mean,
)
from opifex.core.metatrain._inner import InnerLoop
from opifex.core.metatrain._unroll import UnrollState, truncation_meta_loss, unroll


def truncated_es(
    inner: InnerLoop,
    truncation_length: int,
    *,
    sigma: float,
    num_particles: int,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """The truncated antithetic ES meta-gradient estimator (see the module docstring).

    Args:
        inner: the ``InnerLoop``.
        truncation_length: ``K``, inner steps per truncation (>= 1).
        sigma: standard deviation of the perturbations (> 0).
        num_particles: particles per task, an even number >= 2.
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"`` (``truncation_meta_loss``).

    Returns:
        A ``MetaGradientEstimator`` whose state is an ``UnrollState`` batch.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedOptimizer
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi["log_lr"])))
        >>> estimator = truncated_es(inner, 5, sigma=0.01, num_particles=8)
        >>> phi = {"log_lr": jnp.log(0.01)}
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> state.step.tolist()
        [5, 10, 15, 20]
    """
    check_estimator_args(inner, truncation_length, meta_loss, "truncation_length", sigma=sigma)
    num_pairs = check_num_particles(num_particles)
    query = meta_loss == "final_query"

    def run(key: jax.Array, phi: Any, state: UnrollState, horizon: Any) -> tuple:
        return unroll(
            key,
            phi,
            state,
            inner=inner,
            num_steps=truncation_length,
            horizon=horizon,
            query=query,
        )

    def task_estimate(key: jax.Array, phi: Any, state: UnrollState, horizon: Any) -> tuple:
        eps_key, unroll_key = jax.random.split(key)
        eps = antithetic_perturbations(eps_key, phi, num_pairs, sigma)
        signed = jax.tree.map(lambda e: jnp.stack([e, -e], axis=1), eps)

        def particle(delta: Any) -> jax.Array:
            perturbed = jax.tree.map(jnp.add, phi, delta)
            return truncation_meta_loss(run(unroll_key, perturbed, state, horizon)[1], meta_loss)

        losses = jax.vmap(jax.vmap(particle))(signed)  # (P, 2)
        diff = losses[:, 0] - losses[:, 1]
        grad = jax.tree.map(lambda e: pair_mean(diff, e) / (2 * sigma**2), eps)
        state, output = run(unroll_key, phi, state, horizon)
        return grad, truncation_meta_loss(output, meta_loss), state

    return MetaGradientEstimator(batch_init(inner), over_tasks(task_estimate))
