"""Antithetic Persistent Evolution Strategies (PES).

Vicol, Metz and Sohl-Dickstein (2021), "Unbiased gradient estimation in unrolled computation
graphs with persistent evolution strategies". Each task carries ``P`` antithetic pairs of
particles. Particle ``(p, +)`` unrolls with ``phi + eps_p`` and particle ``(p, -)`` with
``phi - eps_p``, where a new ``eps_p ~ N(0, sigma^2 I)`` is drawn at every truncation; each
particle keeps its own inner state across truncations. The pair accumulates its perturbations
``xi_p = sum of eps_p`` since its unroll started, and the estimate of a truncation is::

    g = 1 / (2 P sigma^2) * sum_p xi_p * (L_p+ - L_p-)

Summed over the truncations of an unroll it is an unbiased estimate of the gradient of the
Gaussian-smoothed full-unroll meta-loss (each truncation's ``phi`` perturbed independently),
which tends to the gradient of the full-unroll meta-loss as ``sigma -> 0``: unlike truncated
backpropagation, PES has no truncation bias. Its variance grows with the number of
truncations since the unroll started.

Resets. When an unroll reaches its horizon within a truncation, the losses of the steps after
the reset are weighted by ``eps_p`` alone (the new unroll has seen only this truncation's
perturbation) and ``xi_p`` restarts at ``eps_p``; all particles of a task share its task, its
fresh starts and its minibatches (common random numbers), so they reset together. The initial
state is built with the unperturbed ``phi`` (``xi = 0``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core import TaskFamily
from opifex.l2o._estimator import (
    MetaGradientEstimator,
    antithetic_perturbations,
    batch_init,
    check_estimator_args,
    check_num_particles,
    over_tasks,
    pair_mean,
)
from opifex.l2o._unroll import MakeOptimizer, UnrollState, step_meta_losses, unroll


class PESState(NamedTuple):
    """The persistent state of PES over a batch of tasks.

    Attributes:
        params: each particle's parameters, leading axes ``(num_tasks, P, 2)``.
        opt_state: each particle's optimiser state, leading axes ``(num_tasks, P, 2)``.
        task: each task, leading axis ``num_tasks``.
        step: steps taken in each task's current unroll, ``(num_tasks,)`` int32.
        xi: each pair's accumulated perturbation (like ``phi``), leading axes
            ``(num_tasks, P)``; the ``-`` particle's is ``-xi``.
    """

    params: Any
    opt_state: Any
    task: Any
    step: jax.Array
    xi: Any


def _pairs(tree: Any, num_pairs: int) -> Any:
    """Broadcast every leaf to leading axes ``(num_pairs, 2)``."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_pairs, 2, *jnp.shape(x))), tree)


def pes(
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    truncation_length: int,
    *,
    sigma: float,
    num_particles: int,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """The antithetic PES meta-gradient estimator (see the module docstring).

    Args:
        family: the ``TaskFamily`` of the inner problems.
        make_optimizer: ``phi -> optax.GradientTransformationExtraArgs``.
        truncation_length: ``K``, inner steps per truncation (>= 1).
        sigma: standard deviation of the perturbations (> 0).
        num_particles: particles per task, an even number >= 2 (``P = num_particles / 2``
            antithetic pairs).
        meta_loss: ``"mean"`` or ``"log_mean"`` (``truncation_meta_loss``): the per-step
            losses ``L`` above are the losses or their logs.

    Returns:
        A ``MetaGradientEstimator`` whose state is a ``PESState``.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> estimator = pes(QuadraticFamily(dimension=3), learnable_sgd, 5, sigma=0.01,
        ...                 num_particles=8)
        >>> phi = init_learnable_sgd_params(0.01)
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> state.xi["log_learning_rate"].shape
        (4, 4)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> grad["log_learning_rate"].shape
        ()
    """
    check_estimator_args(family, make_optimizer, truncation_length, meta_loss, sigma=sigma)
    num_pairs = check_num_particles(num_particles)

    def init(key: jax.Array, phi: Any, num_tasks: int, horizon: Any) -> PESState:
        states = batch_init(family, make_optimizer)(key, phi, num_tasks, horizon)
        particles = jax.vmap(lambda p, o: (_pairs(p, num_pairs), _pairs(o, num_pairs)))
        params, opt_state = particles(states.params, states.opt_state)
        xi = jax.tree.map(lambda x: jnp.zeros((num_tasks, num_pairs, *jnp.shape(x)), x.dtype), phi)
        return PESState(params, opt_state, states.task, states.step, xi)

    def task_estimate(key: jax.Array, phi: Any, state: PESState, horizon: Any) -> tuple:
        eps_key, unroll_key = jax.random.split(key)
        eps = antithetic_perturbations(eps_key, phi, num_pairs, sigma)
        signed = jax.tree.map(lambda e: jnp.stack([e, -e], axis=1), eps)

        def particle(delta: Any, params: Any, opt_state: Any) -> tuple[UnrollState, Any]:
            start = UnrollState(params, opt_state, state.task, state.step)
            perturbed = jax.tree.map(jnp.add, phi, delta)
            return unroll(
                unroll_key,
                perturbed,
                start,
                family=family,
                make_optimizer=make_optimizer,
                num_steps=truncation_length,
                horizon=horizon,
            )

        end, output = jax.vmap(jax.vmap(particle))(signed, state.params, state.opt_state)
        restarted = output.restarted[0, 0]  # the same for every particle of the task
        losses = step_meta_losses(output.losses, meta_loss)
        diff = losses[:, 0] - losses[:, 1]  # (P, K)
        before = jnp.mean(jnp.where(restarted, 0, diff), axis=-1)  # weighted by xi + eps
        after = jnp.mean(jnp.where(restarted, diff, 0), axis=-1)  # weighted by eps alone

        grad = jax.tree.map(
            lambda x, e: (pair_mean(before, x + e) + pair_mean(after, e)) / (2 * sigma**2),
            state.xi,
            eps,
        )
        xi = jax.tree.map(lambda x, e: jnp.where(restarted[-1], e, x + e), state.xi, eps)
        task = jax.tree.map(lambda x: x[0, 0], end.task)
        new = PESState(end.params, end.opt_state, task, end.step[0, 0], xi)
        return grad, jnp.mean(losses), new

    return MetaGradientEstimator(init, over_tasks(task_estimate))
