"""SGD with momentum and Adam whose hyperparameters are a differentiable pytree ``phi``.

These are the standard baselines of learned optimisation: meta-training only a handful of
hyperparameters. Each is stored unconstrained, so that any value of ``phi`` is valid:

* ``learnable_sgd``: ``{"log_learning_rate", "momentum_logit"}``, with
  ``momentum = sigmoid(momentum_logit)``; the update is ``optax.sgd``'s heavy ball,
  ``trace <- g + momentum * trace``, ``u = -learning_rate * trace``.
* ``learnable_adam``: ``{"log_learning_rate", "b1_logit", "b2_logit", "log_eps"}``, with
  ``b = sigmoid(logit)``; the update is ``optax.adam``'s (bias-corrected moments,
  ``eps`` outside the square root).

Every entry is a 0-d floating-point array. ``init_learnable_sgd_params`` and
``init_learnable_adam_params`` map ordinary hyperparameters to ``phi``.

Adam's ``1 - b`` and bias corrections ``1 - b**t`` are computed from the logits
(``sigmoid(-x)``, ``-expm1(t log_sigmoid(x))``), not by subtracting a rounded ``b`` from 1: in
float32 with ``b2 = 0.999`` this keeps the updates within about 1e-6 (relative) of exact Adam,
where subtracting would cost 1e-5. The bias-corrected second moment is floored at the dtype's
smallest normal number before its square root, so the meta-gradient stays finite for
coordinates whose gradient is exactly zero; this moves the denominator ``sqrt(nu_hat) + eps`` by
at most ``1e-19`` (float32), negligible next to ``eps``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core import check_float_pytree, check_positive
from opifex.l2o._checks import check_array, check_keys, check_update_args

_SGD_KEYS = ("log_learning_rate", "momentum_logit")
_ADAM_KEYS = ("log_learning_rate", "b1_logit", "b2_logit", "log_eps")


class LearnableSGDState(NamedTuple):
    """State of ``learnable_sgd``: the momentum trace, like ``params``."""

    trace: Any


class LearnableAdamState(NamedTuple):
    """State of ``learnable_adam``.

    Attributes:
        count: updates so far (0-d int32).
        mu: first moment, like ``params``.
        nu: second moment, like ``params``.
    """

    count: jax.Array
    mu: Any
    nu: Any


def _check_unit(value: Any, name: str) -> None:
    check_positive(value, name)
    if value >= 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")


def _logit(x: float) -> float:
    return math.log(x) - math.log1p(-x)


def _scalars(dtype: Any, **values: float) -> dict[str, jax.Array]:
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
    return {name: jnp.asarray(v, dtype) for name, v in values.items()}


def _decay(logit: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``b = sigmoid(logit)``, ``1 - b`` and the bias correction ``1 - b**count``.

    ``1 - b`` and ``1 - b**count`` come from the logit directly, not by subtracting a rounded
    ``b`` from 1, so that they stay accurate (and consistent) when ``b`` is close to 1.
    """
    log_b = jax.nn.log_sigmoid(logit)
    return jnp.exp(log_b), jax.nn.sigmoid(-logit), -jnp.expm1(count.astype(log_b.dtype) * log_b)


def _check_phi(phi: Any, keys: tuple[str, ...], who: str) -> None:
    check_keys(phi, keys, f"{who}'s phi")
    for key in keys:
        check_array(phi[key], (), f"phi['{key}']")


def init_learnable_sgd_params(
    learning_rate: float = 1e-2, momentum: float = 0.9, *, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
    """``phi`` for ``learnable_sgd`` with the given hyperparameters.

    Args:
        learning_rate: > 0.
        momentum: in ``(0, 1)`` (a logit cannot represent 0 or 1).
        dtype: floating-point dtype of the entries.

    Example:
        >>> phi = init_learnable_sgd_params(0.1, 0.5)
        >>> round(float(phi["log_learning_rate"]), 4), float(phi["momentum_logit"])
        (-2.3026, 0.0)
    """
    check_positive(learning_rate, "learning_rate")
    _check_unit(momentum, "momentum")
    return _scalars(
        dtype, log_learning_rate=math.log(learning_rate), momentum_logit=_logit(momentum)
    )


def init_learnable_adam_params(
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """``phi`` for ``learnable_adam`` with the given hyperparameters (``optax.adam``'s defaults).

    Args:
        learning_rate: > 0.
        b1: in ``(0, 1)``.
        b2: in ``(0, 1)``.
        eps: > 0.
        dtype: floating-point dtype of the entries.

    Example:
        >>> sorted(init_learnable_adam_params())
        ['b1_logit', 'b2_logit', 'log_eps', 'log_learning_rate']
    """
    check_positive(learning_rate, "learning_rate")
    _check_unit(b1, "b1")
    _check_unit(b2, "b2")
    check_positive(eps, "eps")
    return _scalars(
        dtype,
        log_learning_rate=math.log(learning_rate),
        b1_logit=_logit(b1),
        b2_logit=_logit(b2),
        log_eps=math.log(eps),
    )


def learnable_sgd(phi: dict[str, jax.Array]) -> optax.GradientTransformationExtraArgs:
    """SGD with heavy-ball momentum, hyperparameters from ``phi`` (see the module docstring).

    With ``phi = init_learnable_sgd_params(lr, m)`` it matches ``optax.sgd(lr, momentum=m)``.

    Returns:
        A ``GradientTransformationExtraArgs``; ``params`` (checked against the gradients when
        given) and extra arguments do not enter the update.

    Raises:
        TypeError / ValueError: ``phi`` is not a dict of the two 0-d floating-point arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = learnable_sgd(init_learnable_sgd_params(0.1, 0.5))
        >>> state = opt.init(jnp.zeros(2))
        >>> updates, state = opt.update(jnp.ones(2), state)
        >>> updates, state = opt.update(jnp.ones(2), state)
        >>> [round(u, 6) for u in updates.tolist()]  # -0.1 * (1 + 0.5)
        [-0.15, -0.15]
    """
    _check_phi(phi, _SGD_KEYS, "learnable_sgd")

    def init_fn(params: Any) -> LearnableSGDState:
        check_float_pytree(params, "params")
        return LearnableSGDState(trace=optax.tree.zeros_like(params))

    def update_fn(
        updates: Any, state: LearnableSGDState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, LearnableSGDState]:
        del extra_args
        check_update_args(updates, params, "learnable_sgd.update", needs_params=False)
        learning_rate = jnp.exp(phi["log_learning_rate"])
        momentum = jax.nn.sigmoid(phi["momentum_logit"])
        trace = jax.tree.map(lambda g, t: g + momentum * t, updates, state.trace)
        steps = jax.tree.map(lambda t: -learning_rate * t, trace)
        new_state = LearnableSGDState(trace=trace)
        return optax.tree.cast_like(steps, updates), optax.tree.cast_like(new_state, state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def learnable_adam(phi: dict[str, jax.Array]) -> optax.GradientTransformationExtraArgs:
    """Adam with hyperparameters from ``phi`` (see the module docstring).

    With ``phi = init_learnable_adam_params(lr, b1, b2, eps)`` it matches
    ``optax.adam(lr, b1, b2, eps)``.

    Returns:
        A ``GradientTransformationExtraArgs``; ``params`` (checked against the gradients when
        given) and extra arguments do not enter the update.

    Raises:
        TypeError / ValueError: ``phi`` is not a dict of the four 0-d floating-point arrays.

    Example:
        >>> import jax.numpy as jnp
        >>> opt = learnable_adam(init_learnable_adam_params(learning_rate=0.1))
        >>> state = opt.init(jnp.zeros(2))
        >>> updates, state = opt.update(jnp.array([3.0, -0.5]), state)
        >>> [round(u, 4) for u in updates.tolist()]
        [-0.1, 0.1]
    """
    _check_phi(phi, _ADAM_KEYS, "learnable_adam")

    def init_fn(params: Any) -> LearnableAdamState:
        check_float_pytree(params, "params")
        zeros = optax.tree.zeros_like(params)
        return LearnableAdamState(count=jnp.zeros((), jnp.int32), mu=zeros, nu=zeros)

    def update_fn(
        updates: Any, state: LearnableAdamState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, LearnableAdamState]:
        del extra_args
        check_update_args(updates, params, "learnable_adam.update", needs_params=False)
        learning_rate = jnp.exp(phi["log_learning_rate"])
        eps = jnp.exp(phi["log_eps"])
        count = optax.safe_int32_increment(state.count)
        b1, c1, corr1 = _decay(phi["b1_logit"], count)
        b2, c2, corr2 = _decay(phi["b2_logit"], count)
        mu = jax.tree.map(lambda g, m: c1 * g + b1 * m, updates, state.mu)
        nu = jax.tree.map(lambda g, v: c2 * g**2 + b2 * v, updates, state.nu)

        def step(m: jax.Array, v: jax.Array) -> jax.Array:
            m_hat = m / corr1
            v_hat = v / corr2
            root = jnp.sqrt(jnp.maximum(v_hat, jnp.finfo(v_hat.dtype).tiny))
            return -learning_rate * (m_hat / (root + eps))

        steps = jax.tree.map(step, mu, nu)
        new_state = LearnableAdamState(count=count, mu=mu, nu=nu)
        return optax.tree.cast_like(steps, updates), optax.tree.cast_like(new_state, state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
