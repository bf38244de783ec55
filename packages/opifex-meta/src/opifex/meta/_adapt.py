"""Adaptation to a new task, and held-out evaluation of a meta-learned inner loop.

``adapt`` runs ``num_steps`` steps of an optax optimiser on one task's support loss (the same
data at every step: ``family.loss`` with one fixed key). ``evaluate_adaptation`` does it on
many held-out tasks at once (``vmap``) and reports the query loss after each requested number
of steps with a 95 % confidence interval: the few-shot evaluation of Finn et al. (2017).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core._checks import check_int_at_least
from opifex.core.metatrain import InnerLoop
from opifex.core.metatrain._inner import check_inner


class AdaptationCurve(NamedTuple):
    """Held-out query losses after adaptation.

    Attributes:
        steps: the numbers of adaptation steps, ``(S,)``.
        mean: the mean query loss over the tasks after each, ``(S,)``.
        ci95: the half-width of its 95 % confidence interval (``1.96`` standard errors).
        losses: every task's query loss, ``(num_tasks, S)``.
    """

    steps: np.ndarray
    mean: np.ndarray
    ci95: np.ndarray
    losses: np.ndarray


def adapt(
    params: Any,
    task: Any,
    *,
    family: Any,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    key: jax.Array | None = None,
) -> Any:
    """``num_steps`` steps of ``optimizer`` on ``family.loss(., task, key)`` from ``params``.

    Args:
        params: the start (e.g. a meta-learned initialisation).
        task: a task of ``family``.
        family: the ``TaskFamily``.
        optimizer: the optax transformation of the steps.
        num_steps: steps to take (>= 0; a Python int).
        key: the loss's key, fixed over the steps (default ``key(0)``; a few-shot family's
            loss ignores it).

    Returns:
        The adapted parameters.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> family = QuadraticFamily(dimension=2)
        >>> task = family.sample(jax.random.key(0))
        >>> x0 = jnp.ones(2)
        >>> x = adapt(x0, task, family=family, optimizer=optax.sgd(0.1), num_steps=20)
        >>> bool(family.loss(x, task, None) < family.loss(x0, task, None))
        True
    """
    check_int_at_least(num_steps, 0, "num_steps")
    key = jax.random.key(0) if key is None else key
    trajectory = _trajectory(params, task, key, key, family, optimizer, num_steps, False)
    return trajectory[0]


def _trajectory(
    params: Any,
    task: Any,
    support_key: jax.Array,
    query_key: jax.Array,
    family: Any,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    record: bool,
) -> tuple[Any, jax.Array | None]:
    """The parameters after ``num_steps`` steps and, if ``record``, the query loss after each."""
    optimizer = optax.with_extra_args_support(optimizer)
    query_fn = getattr(family, "query_loss", family.loss)

    def step(carry: tuple, _: Any) -> tuple:
        params, state = carry
        loss, grads = jax.value_and_grad(family.loss)(params, task, support_key)
        updates, state = optimizer.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
        return (params, state), query_fn(params, task, query_key) if record else None

    (params, _), after = jax.lax.scan(step, (params, optimizer.init(params)), None, num_steps)
    return params, after


@functools.partial(jax.jit, static_argnames=("inner", "num_tasks", "max_steps"))
def _query_curves(
    key: jax.Array, phi: Any, inner: InnerLoop, num_tasks: int, max_steps: int
) -> jax.Array:
    """``(num_tasks, max_steps + 1)`` query losses after 0, ..., ``max_steps`` steps."""
    family = inner.family
    query_fn = getattr(family, "query_loss", family.loss)

    def curve(task_key: jax.Array) -> jax.Array:
        sample_key, start_key, support_key, query_key = jax.random.split(task_key, 4)
        task = family.sample(sample_key)
        start = inner.start(phi, start_key, task)
        _, after = _trajectory(
            start, task, support_key, query_key, family, inner.optimizer(phi), max_steps, True
        )
        return jnp.concatenate([query_fn(start, task, query_key)[None], after])

    return jax.vmap(curve)(jax.random.split(key, num_tasks))


def evaluate_adaptation(
    key: jax.Array,
    phi: Any,
    inner: InnerLoop,
    *,
    num_tasks: int = 600,
    steps: Sequence[int] = (0, 1, 10),
) -> AdaptationCurve:
    """Query losses of held-out tasks after adapting with ``inner`` for each of ``steps``.

    Each task is drawn from ``inner.family`` with ``key``; its inner loop starts from
    ``inner.start(phi, ...)``, takes steps of ``inner.optimizer(phi)`` on the support loss
    (one fixed key) and is scored by ``family.query_loss`` (or ``family.loss`` on another key).

    Args:
        key: draws the held-out tasks (use a key never used in training).
        phi: the meta-parameters.
        inner: the ``InnerLoop`` (e.g. ``MAMLOptimizer.inner_loop(family)``).
        num_tasks: held-out tasks (>= 2).
        steps: the adaptation step counts to report (ints >= 0).

    Returns:
        An ``AdaptationCurve``.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> inner = LearnedInit(QuadraticFamily(dimension=2), optax.sgd(0.1))
        >>> curve = evaluate_adaptation(jax.random.key(0), jnp.zeros(2), inner, num_tasks=50)
        >>> curve.steps.tolist(), bool(curve.mean[2] < curve.mean[0])
        ([0, 1, 10], True)
    """
    check_inner(inner)
    check_int_at_least(num_tasks, 2, "num_tasks")
    if isinstance(steps, int | str) or not steps:
        raise TypeError(f"steps must be a non-empty sequence of ints, got {steps!r}")
    for i, s in enumerate(steps):
        check_int_at_least(s, 0, f"steps[{i}]")
    steps = np.asarray(steps)
    curves = np.asarray(_query_curves(key, phi, inner, num_tasks, int(steps.max())), np.float64)
    losses = curves[:, steps]
    ci95 = 1.96 * losses.std(axis=0, ddof=1) / np.sqrt(num_tasks)
    return AdaptationCurve(steps, losses.mean(axis=0), ci95, losses)
