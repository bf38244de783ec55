"""The small multilayer perceptron shared by the network families (pure functions on pytrees).

Parameters are a dict of lists, ``{"weights": [W_1, ..., W_L], "biases": [b_1, ..., b_L]}``
with ``W_l`` of shape ``(n_{l-1}, n_l)``; the last layer is linear.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from opifex.core.families import _random

ACTIVATIONS = ("tanh", "relu")

_GAIN = {"tanh": 1.0, "relu": 2.0}


def mlp_normal_shapes(
    layer_sizes: Sequence[int], *, bias_scale: float = 0.0
) -> list[tuple[int, ...]]:
    """Shapes of the standard-normal arrays ``mlp_from_normals`` needs."""
    fans = list(itertools.pairwise(layer_sizes))
    shapes = [(fan_in, fan_out) for fan_in, fan_out in fans]
    return shapes + ([(fan_out,) for _, fan_out in fans] if bias_scale else [])


def mlp_from_normals(
    normals: Sequence[jax.Array],
    layer_sizes: Sequence[int],
    activation: str,
    *,
    bias_scale: float = 0.0,
) -> dict[str, list[jax.Array]]:
    """MLP parameters from standard normals of ``mlp_normal_shapes``: ``W ~ N(0, gain/fan_in)``.

    The gain is 1 for tanh (LeCun normal) and 2 for relu (He normal); biases are
    ``N(0, bias_scale**2)`` (zero when ``bias_scale == 0``).
    """
    gain = _GAIN[activation]
    num_layers = len(layer_sizes) - 1
    weights = [
        jnp.sqrt(gain / fan_in) * normal
        for fan_in, normal in zip(layer_sizes[:-1], normals[:num_layers], strict=True)
    ]
    if bias_scale:
        biases = [bias_scale * normal for normal in normals[num_layers:]]
    else:
        biases = [jnp.zeros((fan_out,), weights[0].dtype) for fan_out in layer_sizes[1:]]
    return {"weights": weights, "biases": biases}


def init_mlp(
    key: jax.Array,
    layer_sizes: Sequence[int],
    activation: str,
    *,
    bias_scale: float = 0.0,
) -> dict[str, list[jax.Array]]:
    """Draw MLP parameters (see ``mlp_from_normals``) with one random draw."""
    normals = _random.normals(key, mlp_normal_shapes(layer_sizes, bias_scale=bias_scale))
    return mlp_from_normals(normals, layer_sizes, activation, bias_scale=bias_scale)


def apply_mlp(params: Any, inputs: jax.Array, activation: str) -> jax.Array:
    """Evaluate the MLP on ``inputs`` of shape ``(..., n_0)``; returns ``(..., n_L)``."""
    act = jnp.tanh if activation == "tanh" else jax.nn.relu
    weights, biases = params["weights"], params["biases"]
    hidden = inputs
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        hidden = hidden @ weight + bias
        if i < len(weights) - 1:
            hidden = act(hidden)
    return hidden
