"""Whole-unroll meta-gradients: full backpropagation and its first-order approximation.

At every estimate each task starts a fresh unroll (a new task, ``inner.start(phi, ...)``) and
runs it for the whole horizon; the meta-loss of the unroll (``"mean"`` / ``"log_mean"``: over
its steps, ``"final_query"``: the query loss after its last step) is differentiated with
respect to ``phi`` through every step, the start included:

* ``full_backprop``: ``jax.grad`` through the whole unroll: the exact meta-gradient (MAML's,
  with ``LearnedInit(family, optax.sgd(lr))`` and ``"final_query"``), with second derivatives
  of the loss. Memory grows with the horizon; no truncation bias.
* ``first_order``: the same with every inner gradient held constant (``stop_gradient``): no
  second derivatives. For MAML this is FOMAML (Finn et al., 2017): the query-loss gradient at
  the adapted parameters; for Meta-SGD, the first-order rule of Li et al. (2017).

* ``reptile``: no derivative at all: the "meta-gradient" is ``phi - theta_T``, the start
  minus the parameters after the unroll (Nichol et al., 2018, "On first-order
  meta-learning algorithms"); a step of SGD with learning rate ``epsilon`` on it moves
  ``phi`` towards the adapted parameters by ``epsilon (theta_T - phi)``. Only for inner
  loops that start from ``phi`` itself (``LearnedInit``).

Nothing persists from one estimate to the next. The state holds each task's unroll at the end
of the last estimate (its ``step`` axis sets the number of tasks). The unroll runs a static
number of steps, ``num_steps``; a smaller ``horizon`` passed to ``estimate`` (a curriculum
stage) ends it after ``horizon`` steps: the unroll restarts there, and the steps after the
restart are left out of the meta-loss (so the restart repeats the same task from the same
start rather than drawing a new one). A larger one is the same as ``num_steps``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from opifex.core.metatrain._estimator import (
    MetaGradientEstimator,
    check_estimator_args,
    over_tasks,
)
from opifex.core.metatrain._inner import InnerLoop
from opifex.core.metatrain._unroll import (
    UnrollOutput,
    UnrollState,
    init_unroll,
    step_meta_losses,
    unroll,
)


def unroll_meta_loss(output: UnrollOutput, meta_loss: str) -> jax.Array:
    """The meta-loss of one whole unroll: its steps up to the first restart.

    Example:
        >>> import jax.numpy as jnp
        >>> out = UnrollOutput(jnp.array([4.0, 2.0, 9.0]), jnp.array([False, False, True]))
        >>> float(unroll_meta_loss(out, "mean"))  # the third step belongs to a new unroll
        3.0
    """
    kept = ~output.restarted
    terms = jnp.where(kept, step_meta_losses(output, meta_loss), 0)
    if meta_loss == "final_query":
        return jnp.sum(terms)
    return jnp.sum(terms) / jnp.sum(kept)


def _whole_unroll(
    inner: InnerLoop, num_steps: int, meta_loss: str, rule: str
) -> MetaGradientEstimator:
    """``rule``: ``"exact"`` (``full_backprop``), ``"first_order"`` or ``"reptile"``."""
    check_estimator_args(inner, num_steps, meta_loss, "num_steps")
    query = meta_loss == "final_query"

    def init(key: jax.Array, phi: Any, num_tasks: int, horizon: Any) -> UnrollState:
        del horizon
        return jax.vmap(lambda k: init_unroll(k, phi, inner))(jax.random.split(key, num_tasks))

    def task_estimate(key: jax.Array, phi: Any, state: UnrollState, horizon: Any) -> tuple:
        del state  # every estimate starts afresh
        start_key, run_key = jax.random.split(key)
        horizon = jnp.minimum(horizon, num_steps)

        def objective(phi: Any) -> tuple[jax.Array, UnrollState]:
            start = init_unroll(start_key, phi, inner)
            end, output = unroll(
                run_key,
                phi,
                start,
                inner=inner,
                num_steps=num_steps,
                horizon=horizon,
                first_order=rule == "first_order",
                query=query,
                fresh=start,  # the steps after a restart do not count
            )
            return unroll_meta_loss(output, meta_loss), end

        if rule == "reptile":
            loss, end = objective(phi)
            return _reptile_direction(phi, end.params), loss, end
        (loss, end), grad = jax.value_and_grad(objective, has_aux=True)(phi)
        return grad, loss, end

    return MetaGradientEstimator(init, over_tasks(task_estimate))


def _reptile_direction(phi: Any, adapted: Any) -> Any:
    """``phi - adapted``; ``TypeError`` unless the inner parameters are shaped like ``phi``."""
    if jax.tree.structure(phi) != jax.tree.structure(adapted) or any(
        jnp.shape(a) != jnp.shape(b)
        for a, b in zip(jax.tree.leaves(phi), jax.tree.leaves(adapted), strict=True)
    ):
        raise TypeError(
            "reptile needs an inner loop that starts from phi itself (e.g. LearnedInit): "
            "its parameters must have phi's structure and shapes"
        )
    return jax.tree.map(lambda p, q: p - jax.lax.stop_gradient(q), phi, adapted)


def full_backprop(
    inner: InnerLoop, num_steps: int, *, meta_loss: str = "mean"
) -> MetaGradientEstimator:
    """The exact meta-gradient of whole unrolls of ``num_steps`` steps (see the module docstring).

    Args:
        inner: the ``InnerLoop``.
        num_steps: ``T``, the inner steps of every unroll (>= 1).
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"``.

    Returns:
        A ``MetaGradientEstimator`` whose state is an ``UnrollState`` batch.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> maml = LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.05))
        >>> estimator = full_backprop(maml, 5, meta_loss="final_query")
        >>> phi = jnp.zeros(3)  # the initialisation MAML learns
        >>> state = estimator.init(jax.random.key(0), phi, 4, 5)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 5)
        >>> grad.shape, info.task_meta_loss.shape
        ((3,), (4,))
    """
    return _whole_unroll(inner, num_steps, meta_loss, "exact")


def first_order(
    inner: InnerLoop, num_steps: int, *, meta_loss: str = "mean"
) -> MetaGradientEstimator:
    """``full_backprop`` with the inner gradients held constant: no second derivatives.

    Args:
        inner: the ``InnerLoop``.
        num_steps: ``T``, the inner steps of every unroll (>= 1).
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"``.

    Returns:
        A ``MetaGradientEstimator`` whose state is an ``UnrollState`` batch.

    Raises:
        TypeError / ValueError: a bad argument.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> fomaml = first_order(LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.05)), 5,
        ...                      meta_loss="final_query")
        >>> state = fomaml.init(jax.random.key(0), jnp.zeros(3), 4, 5)
        >>> grad, state, info = fomaml.estimate(jax.random.key(1), jnp.zeros(3), state, 5)
        >>> grad.shape
        (3,)
    """
    return _whole_unroll(inner, num_steps, meta_loss, "first_order")


def reptile(inner: InnerLoop, num_steps: int, *, meta_loss: str = "mean") -> MetaGradientEstimator:
    """Reptile's direction ``phi - theta_T`` over whole unrolls (see the module docstring).

    The meta-loss is computed and reported (``MetaGradientInfo``) but not differentiated.

    Args:
        inner: an ``InnerLoop`` that starts from ``phi`` (``LearnedInit``).
        num_steps: ``T``, the inner steps of every unroll (>= 1).
        meta_loss: ``"mean"``, ``"log_mean"`` or ``"final_query"`` (what is reported).

    Returns:
        A ``MetaGradientEstimator`` whose state is an ``UnrollState`` batch.

    Raises:
        TypeError / ValueError: a bad argument; ``TypeError`` (when traced) for an inner loop
            whose parameters are not shaped like ``phi``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit
        >>> inner = LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.05))
        >>> estimator = reptile(inner, 5)
        >>> state = estimator.init(jax.random.key(0), jnp.zeros(3), 4, 5)
        >>> direction, state, info = estimator.estimate(jax.random.key(1), jnp.zeros(3), state, 5)
        >>> direction.shape
        (3,)
    """
    return _whole_unroll(inner, num_steps, meta_loss, "reptile")
