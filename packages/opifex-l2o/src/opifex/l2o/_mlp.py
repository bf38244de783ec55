"""The per-coordinate MLP learned optimiser (after Metz et al., 2019 and 2022).

A small MLP ``g_phi`` maps each coordinate's features (``FeatureConfig``) to two numbers, a
direction ``d`` and a log-magnitude ``m``; the same weights serve every coordinate of every
tensor. The update is::

    u = -lr_scale * d * exp(magnitude_scale * m)

the parameterisation of Metz et al. (2019), "Understanding and correcting pathologies in the
training of learned optimizers", also used by the small MLP optimisers of Metz et al. (2022),
"Practical tradeoffs between memory, compute, and performance in learned optimizers". With the
default scales (``1e-3``) an untrained ``phi`` takes steps of about ``1e-3`` per coordinate, so
meta-training starts from a stable optimiser.

``phi`` is a plain list of ``{"w": (fan_in, fan_out), "b": (fan_out,)}`` layers (ReLU between
them, two linear outputs), made by ``init_mlp_optimizer_params``. ``mlp_optimizer(phi)`` is
differentiable in ``phi``: build it inside the meta-loss and ``jax.grad`` the unrolled loss.
What ``phi`` learned holds only for the tasks and horizon it was meta-trained on (see
``opifex.l2o``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import check_int_at_least, check_positive
from opifex.l2o._checks import check_array, check_keys, check_layers, check_update_args
from opifex.l2o._features import (
    FeatureConfig,
    FeatureState,
    check_feature_config,
    init_features,
    update_features,
)

_OUTPUTS = 2  # direction, log-magnitude


def init_mlp_optimizer_params(
    key: jax.Array,
    *,
    features: FeatureConfig | None = None,
    hidden_sizes: Sequence[int] = (32, 32),
    dtype: Any = jnp.float32,
) -> list[dict[str, jax.Array]]:
    """Random ``phi`` for ``mlp_optimizer``: weights ``N(0, 1 / fan_in)``, zero biases.

    Args:
        key: a ``jax.random`` key.
        features: the ``FeatureConfig`` the optimiser will use (default ``FeatureConfig()``);
            it sets the input size.
        hidden_sizes: widths of the hidden layers (each >= 1; may be empty: a linear model).
        dtype: floating-point dtype of the weights.

    Returns:
        A list of ``{"w", "b"}`` layers, the last with two outputs.

    Example:
        >>> import jax
        >>> phi = init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=(8,))
        >>> [layer["w"].shape for layer in phi]
        [(20, 8), (8, 2)]
    """
    features = FeatureConfig() if features is None else features
    check_feature_config(features)
    if isinstance(hidden_sizes, str) or not isinstance(hidden_sizes, Sequence):
        raise TypeError(f"hidden_sizes must be a sequence of ints, got {hidden_sizes!r}")
    for i, size in enumerate(hidden_sizes):
        check_int_at_least(size, 1, f"hidden_sizes[{i}]")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
    sizes = (features.num_features, *hidden_sizes, _OUTPUTS)
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (fan_in, fan_out), dtype) / math.sqrt(fan_in),
            "b": jnp.zeros((fan_out,), dtype),
        }
        for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _check_mlp_phi(phi: Any, num_features: int) -> None:
    check_layers(phi, "phi")
    fan_in = num_features
    for i, layer in enumerate(phi):
        check_keys(layer, ("w", "b"), f"phi[{i}]")
        w = layer["w"]
        if i == 0 and np.ndim(w) == 2 and np.shape(w)[0] != num_features:
            raise ValueError(
                f"phi[0]['w'] has {np.shape(w)[0]} inputs but the FeatureConfig gives "
                f"{num_features} features: make phi with init_mlp_optimizer_params using the "
                "same features"
            )
        fan_out = _OUTPUTS if i == len(phi) - 1 else None
        check_array(w, (fan_in, fan_out), f"phi[{i}]['w']")
        fan_in = np.shape(w)[1]
        check_array(layer["b"], (fan_in,), f"phi[{i}]['b']")


def _apply_mlp(phi: Sequence[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in phi[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ phi[-1]["w"] + phi[-1]["b"]


def mlp_optimizer(
    phi: Sequence[dict[str, jax.Array]],
    *,
    features: FeatureConfig | None = None,
    lr_scale: float = 1e-3,
    magnitude_scale: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
    """The per-coordinate MLP learned optimiser with weights ``phi`` (see the module docstring).

    Args:
        phi: the MLP's layers, from ``init_mlp_optimizer_params`` (or meta-training).
        features: the ``FeatureConfig`` ``phi`` was made for (default ``FeatureConfig()``).
        lr_scale: multiplies the direction output (> 0).
        magnitude_scale: multiplies the log-magnitude output (> 0).

    Returns:
        A ``GradientTransformationExtraArgs``: ``init(params)`` returns a ``FeatureState``;
        ``update(grads, state, params, *, value=None, **extra)`` needs ``params``, and
        ``value`` (the loss) when ``features.use_loss``; other extra arguments are ignored.
        Updates have the gradient leaves' dtypes.

    Raises:
        TypeError / ValueError: ``phi`` does not fit ``features`` (structure, shapes, dtype),
            or an option is out of range.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> opt = mlp_optimizer(init_mlp_optimizer_params(jax.random.key(0)))
        >>> params = {"w": jnp.ones(3), "b": jnp.zeros(())}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + p["b"] ** 2)(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> bool(jnp.all(jnp.abs(updates["w"]) < 0.1)), updates["w"].dtype
        (True, dtype('float32'))
    """
    features = FeatureConfig() if features is None else features
    check_feature_config(features)
    _check_mlp_phi(phi, features.num_features)
    check_positive(lr_scale, "lr_scale")
    check_positive(magnitude_scale, "magnitude_scale")

    def init_fn(params: Any) -> FeatureState:
        return init_features(features, params)

    def update_fn(
        updates: Any,
        state: FeatureState,
        params: Any = None,
        *,
        value: jax.Array | None = None,
        **extra_args: Any,
    ) -> tuple[Any, FeatureState]:
        del extra_args  # meant for other transformations of a chain
        check_update_args(updates, params, "mlp_optimizer.update", needs_params=True)
        inputs, state = update_features(features, updates, state, params, value)

        def step(x: jax.Array, g: jax.Array) -> jax.Array:
            out = _apply_mlp(phi, x)
            direction, log_magnitude = out[..., 0], out[..., 1]
            return (-lr_scale * direction * jnp.exp(magnitude_scale * log_magnitude)).astype(
                g.dtype
            )

        return jax.tree.map(step, inputs, updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
