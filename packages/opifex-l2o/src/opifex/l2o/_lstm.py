"""The coordinate-wise LSTM learned optimiser of Andrychowicz et al. (2016).

"Learning to learn by gradient descent by gradient descent" (NeurIPS 2016): one small LSTM,
shared by every coordinate of every tensor, reads that coordinate's preprocessed gradient and
emits its update; each coordinate keeps its own hidden and cell state. The gradient ``g`` is
preprocessed into two inputs (the paper's Appendix A, with ``p = 10``)::

    (log|g| / p, sign(g))   if |g| >= exp(-p)
    (-1, exp(p) g)          otherwise

and the update is ``output_scale`` times a linear read-out of the last layer's hidden state (the
update is added to the parameters; the LSTM learns its sign).

``phi`` is a dict ``{"cells": [...], "out": {"w": (hidden, 1), "b": (1,)}}``; each cell is
``{"w_x": (inputs, 4 hidden), "w_h": (hidden, 4 hidden), "b": (4 hidden,)}`` with the gates in
the order input, forget, candidate, output. ``lstm_optimizer(phi)`` is differentiable in
``phi`` (the preprocessing is written so that its gradient is finite at ``g = 0``). What ``phi``
learned holds only for the tasks and horizon it was meta-trained on (see ``opifex.l2o``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import check_float_pytree, check_int_at_least, check_positive
from opifex.l2o._checks import check_array, check_keys, check_layers, check_update_args

_INPUTS = 2  # the two preprocessed gradient channels
_GATES = 4


class LSTMOptimizerState(NamedTuple):
    """Per-coordinate LSTM state: arrays only.

    Attributes:
        hidden: like ``params``, each leaf of shape ``(*leaf.shape, num_layers, hidden_size)``.
        cell: the cell states, shaped as ``hidden``.
    """

    hidden: Any
    cell: Any


def preprocess_gradient(g: jax.Array, p: float = 10.0) -> jax.Array:
    """The log / sign gradient preprocessing of Andrychowicz et al. (2016), Appendix A.

    Returns an array of shape ``(*g.shape, 2)``; its gradient with respect to ``g`` is finite
    everywhere (the unused branch never sees ``log 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> preprocess_gradient(jnp.array([-jnp.e, 0.0]), p=1.0).tolist()
        [[1.0, -1.0], [-1.0, 0.0]]
    """
    threshold = math.exp(-p)
    large = jnp.abs(g) >= threshold
    log_part = jnp.log(jnp.maximum(jnp.abs(g), threshold)) / p
    first = jnp.where(large, log_part, -1.0)
    second = jnp.where(large, jnp.sign(g), math.exp(p) * g)
    return jnp.stack([first, second], axis=-1).astype(g.dtype)


def init_lstm_optimizer_params(
    key: jax.Array, *, hidden_size: int = 20, num_layers: int = 2, dtype: Any = jnp.float32
) -> dict[str, Any]:
    """Random ``phi`` for ``lstm_optimizer`` (the paper's default: two layers of 20 units).

    Weights are ``N(0, 1 / fan_in)`` (``fan_in`` counts the input and the hidden state), the
    forget-gate biases 1 and the other biases 0.

    Example:
        >>> import jax
        >>> phi = init_lstm_optimizer_params(jax.random.key(0), hidden_size=4, num_layers=1)
        >>> phi["cells"][0]["w_x"].shape, phi["cells"][0]["w_h"].shape, phi["out"]["w"].shape
        ((2, 16), (4, 16), (4, 1))
    """
    check_int_at_least(hidden_size, 1, "hidden_size")
    check_int_at_least(num_layers, 1, "num_layers")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
    keys = jax.random.split(key, 2 * num_layers + 1)
    forget = jnp.zeros((_GATES, hidden_size), dtype).at[1].set(1.0).reshape(-1)
    cells = []
    for layer in range(num_layers):
        fan_in = (_INPUTS if layer == 0 else hidden_size) + hidden_size
        shape_x = (_INPUTS if layer == 0 else hidden_size, _GATES * hidden_size)
        cells.append(
            {
                "w_x": jax.random.normal(keys[2 * layer], shape_x, dtype) / math.sqrt(fan_in),
                "w_h": jax.random.normal(
                    keys[2 * layer + 1], (hidden_size, _GATES * hidden_size), dtype
                )
                / math.sqrt(fan_in),
                "b": forget,
            }
        )
    out = {
        "w": jax.random.normal(keys[-1], (hidden_size, 1), dtype) / math.sqrt(hidden_size),
        "b": jnp.zeros((1,), dtype),
    }
    return {"cells": cells, "out": out}


def _check_lstm_phi(phi: Any) -> tuple[int, int]:
    """Validate ``phi``; return ``(num_layers, hidden_size)``."""
    check_keys(phi, ("cells", "out"), "phi")
    cells = phi["cells"]
    check_layers(cells, "phi['cells']")
    check_keys(cells[0], ("w_x", "w_h", "b"), "phi['cells'][0]")
    check_array(cells[0]["w_h"], (None, None), "phi['cells'][0]['w_h']")
    hidden = np.shape(cells[0]["w_h"])[0]
    for i, cell in enumerate(cells):
        name = f"phi['cells'][{i}]"
        check_keys(cell, ("w_x", "w_h", "b"), name)
        fan_in = _INPUTS if i == 0 else hidden
        check_array(cell["w_x"], (fan_in, _GATES * hidden), f"{name}['w_x']")
        check_array(cell["w_h"], (hidden, _GATES * hidden), f"{name}['w_h']")
        check_array(cell["b"], (_GATES * hidden,), f"{name}['b']")
    check_keys(phi["out"], ("w", "b"), "phi['out']")
    check_array(phi["out"]["w"], (hidden, 1), "phi['out']['w']")
    check_array(phi["out"]["b"], (1,), "phi['out']['b']")
    return len(cells), hidden


def _lstm_cell(
    cell: dict[str, jax.Array], x: jax.Array, h: jax.Array, c: jax.Array
) -> tuple[jax.Array, jax.Array]:
    z = x @ cell["w_x"] + h @ cell["w_h"] + cell["b"]
    i, f, candidate, o = jnp.split(z, _GATES, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(candidate)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def lstm_optimizer(
    phi: dict[str, Any], *, output_scale: float = 0.1, preprocess_p: float = 10.0
) -> optax.GradientTransformationExtraArgs:
    """The coordinate-wise LSTM learned optimiser with weights ``phi`` (see the module docstring).

    Args:
        phi: the LSTM's weights, from ``init_lstm_optimizer_params`` (or meta-training).
        output_scale: multiplies the LSTM's read-out (> 0).
        preprocess_p: the ``p`` of the gradient preprocessing (> 0).

    Returns:
        A ``GradientTransformationExtraArgs``: ``init(params)`` returns an
        ``LSTMOptimizerState`` of zeros; ``update(grads, state, params=None, **extra)`` ignores
        ``params`` (checked against ``grads`` when given) and the extra arguments. Updates
        have the gradient leaves' dtypes.

    Raises:
        TypeError / ValueError: ``phi`` has the wrong structure, shapes or dtype, or an option
            is out of range.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> opt = lstm_optimizer(init_lstm_optimizer_params(jax.random.key(0)))
        >>> params = {"w": jnp.ones((2, 3))}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": 2.0 * params["w"]}, state, params)
        >>> updates["w"].shape, state.hidden["w"].shape
        ((2, 3), (2, 3, 2, 20))
    """
    num_layers, hidden_size = _check_lstm_phi(phi)
    check_positive(output_scale, "output_scale")
    check_positive(preprocess_p, "preprocess_p")

    def init_fn(params: Any) -> LSTMOptimizerState:
        check_float_pytree(params, "params")
        zeros = jax.tree.map(
            lambda p: jnp.zeros((*jnp.shape(p), num_layers, hidden_size), p.dtype), params
        )
        return LSTMOptimizerState(hidden=zeros, cell=zeros)

    def update_fn(
        updates: Any, state: LSTMOptimizerState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, LSTMOptimizerState]:
        del extra_args  # meant for other transformations of a chain
        check_update_args(updates, params, "lstm_optimizer.update", needs_params=False)

        def leaf(g: jax.Array, h: jax.Array, c: jax.Array) -> tuple[jax.Array, ...]:
            x = preprocess_gradient(g, preprocess_p)
            hs, cs = [], []
            for layer, cell in enumerate(phi["cells"]):
                x, c_new = _lstm_cell(cell, x, h[..., layer, :], c[..., layer, :])
                hs.append(x.astype(h.dtype))
                cs.append(c_new.astype(c.dtype))
            out = x @ phi["out"]["w"] + phi["out"]["b"]
            step = (output_scale * out[..., 0]).astype(g.dtype)
            return step, jnp.stack(hs, axis=-2), jnp.stack(cs, axis=-2)

        out = jax.tree.map(leaf, updates, state.hidden, state.cell)
        steps, hidden, cell = jax.tree.transpose(
            jax.tree.structure(updates), jax.tree.structure((0, 0, 0)), out
        )
        return steps, LSTMOptimizerState(hidden=hidden, cell=cell)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
