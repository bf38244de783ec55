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

from opifex.core._tree import tree_where
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
from opifex.core.metatrain._unroll import UnrollState, reduce_steps, step_meta_losses, unroll


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
    inner: InnerLoop,
    truncation_length: int,
    *,
    sigma: float,
    num_particles: int,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """The antithetic PES meta-gradient estimator (see the module docstring).

    Args:
        inner: the ``InnerLoop``.
        truncation_length: ``K``, inner steps per truncation (>= 1).
        sigma: standard deviation of the perturbations (> 0).
        num_particles: particles per task, an even number >= 2 (``P = num_particles / 2``
            antithetic pairs).
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"``
            (``truncation_meta_loss``): the per-step terms of ``L`` above.

    Returns:
        A ``MetaGradientEstimator`` whose state is a ``PESState``.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedOptimizer
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi["log_lr"])))
        >>> estimator = pes(inner, 5, sigma=0.01, num_particles=8)
        >>> phi = {"log_lr": jnp.log(0.01)}
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> state.xi["log_lr"].shape
        (4, 4)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> grad["log_lr"].shape
        ()
    """
    check_estimator_args(inner, truncation_length, meta_loss, "truncation_length", sigma=sigma)
    num_pairs = check_num_particles(num_particles)
    query = meta_loss == "final_query"

    def init(key: jax.Array, phi: Any, num_tasks: int, horizon: Any) -> PESState:
        states = batch_init(inner)(key, phi, num_tasks, horizon)
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
                inner=inner,
                num_steps=truncation_length,
                horizon=horizon,
                query=query,
            )

        end, output = jax.vmap(jax.vmap(particle))(signed, state.params, state.opt_state)
        restarted = output.restarted[0, 0]  # the same for every particle of the task
        terms = step_meta_losses(output, meta_loss)  # (P, 2, K)
        diff = terms[:, 0] - terms[:, 1]  # (P, K)
        before = reduce_steps(jnp.where(restarted, 0, diff), meta_loss)  # weighted by xi + eps
        after = reduce_steps(jnp.where(restarted, diff, 0), meta_loss)  # weighted by eps alone

        grad = jax.tree.map(
            lambda x, e: (pair_mean(before, x + e) + pair_mean(after, e)) / (2 * sigma**2),
            state.xi,
            eps,
        )
        xi = tree_where(restarted[-1], eps, jax.tree.map(jnp.add, state.xi, eps))
        task = jax.tree.map(lambda x: x[0, 0], end.task)
        new = PESState(end.params, end.opt_state, task, end.step[0, 0], xi)
        # the particles' mean truncation meta-loss (a sum over steps is K means)
        scale = truncation_length if meta_loss == "final_query" else 1
        return grad, scale * jnp.mean(terms), new

    return MetaGradientEstimator(init, over_tasks(task_estimate))
