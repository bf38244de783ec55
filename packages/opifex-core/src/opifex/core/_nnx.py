"""Optional Flax NNX adapter: minimise an ``nnx.Module``'s loss with any opifex optimiser.

opifex optimisers take an objective ``fun(params, *args)`` over a pytree of arrays. An NNX
model is a stateful Python object, so this module splits it (``nnx.split``) into

* ``graphdef``: the static structure (hashable, closed over by ``jit``);
* ``params``: the trainable arrays, as a plain nested ``dict`` of arrays (no ``Variable``
  wrappers; integer keys for list positions), which ``jax.grad``, optax, every opifex solver
  and ``save_pytree`` handle as they are;
* ``rest``: everything else (batch statistics, RNG state, non-trainable variables), held fixed;

and ``nnx_objective`` turns ``loss_fn(model, *args)`` into ``fun(params, *args)`` by merging
(``nnx.merge``) a fresh copy of the model for every evaluation. That objective is a pure
function: mutations the model makes to its non-parameter state while it runs (a ``BatchNorm``
in training mode updating its statistics, ``Dropout`` advancing its RNG counter) are
discarded, so use ``model.eval()`` (or deterministic layers) before splitting, or pass the
randomness as an argument.

Flax is optional: it is imported only when one of these functions is called, so
``import opifex.core`` works without it (``pip install "opifex-core[flax]"`` adds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_INSTALL_HINT = (
    "the Flax NNX adapter of opifex.core needs flax; install it with "
    "pip install 'opifex-core[flax]' (or pip install flax)"
)


def _nnx() -> Any:
    try:
        from flax import nnx
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return nnx


def split_nnx(model: Any, params_filter: Any = None) -> tuple[Any, dict, Any]:
    """Split an NNX model into ``(graphdef, params, rest)``.

    Args:
        model: an ``nnx.Module`` (any NNX ``Pytree`` graph node).
        params_filter: the NNX filter selecting the trainable variables; default
            ``nnx.Param``. E.g. ``nnx.All(nnx.Param, nnx.PathContains("head"))`` trains only
            the head and keeps the rest fixed.

    Returns:
        ``graphdef`` (static), ``params`` (a nested ``dict`` of arrays) and ``rest`` (an
        ``nnx.State`` of the remaining variables).

    Raises:
        TypeError: ``model`` is not an NNX module.
        ImportError: flax is not installed.

    Example:
        >>> from flax import nnx
        >>> graphdef, params, rest = split_nnx(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
        >>> sorted(params), params["kernel"].shape
        (['bias', 'kernel'], (2, 3))
    """
    nnx = _nnx()
    if not isinstance(model, nnx.Pytree):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    selected = nnx.Param if params_filter is None else params_filter
    graphdef, params, rest = nnx.split(model, selected, ...)
    return graphdef, nnx.to_pure_dict(params), rest


def merge_nnx(graphdef: Any, params: Any, rest: Any) -> Any:
    """Rebuild a model from ``split_nnx``'s parts (e.g. with optimised ``params``).

    The result is a new, independent model: it shares no ``Variable`` with the model that was
    split, so changing one never changes the other.

    Args:
        graphdef: the ``graphdef`` from ``split_nnx``.
        params: a nested ``dict`` of arrays with the structure of ``split_nnx``'s ``params``.
        rest: the ``rest`` from ``split_nnx``.

    Returns:
        The ``nnx.Module``.

    Raises:
        TypeError: ``graphdef`` is not an NNX ``GraphDef``.
        ImportError: flax is not installed.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> graphdef, params, rest = split_nnx(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
        >>> params = {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}
        >>> merge_nnx(graphdef, params, rest)(jnp.array([[1.0, 2.0]]))
        Array([[3.]], dtype=float32)
    """
    nnx = _nnx()
    if not isinstance(graphdef, nnx.GraphDef):
        raise TypeError(
            f"graphdef must be the flax.nnx.GraphDef returned by split_nnx, got "
            f"{type(graphdef).__name__}"
        )
    return nnx.merge(graphdef, params, rest, copy=True)


def nnx_params(model: Any, params_filter: Any = None) -> tuple[dict, Callable[[Any], Any]]:
    """Return ``(params, rebuild)``: the model's trainable arrays and ``params -> model``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> params, rebuild = nnx_params(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
        >>> rebuild({"kernel": jnp.zeros((2, 1)), "bias": jnp.ones(1)})(jnp.ones((1, 2)))
        Array([[1.]], dtype=float32)
    """
    graphdef, params, rest = split_nnx(model, params_filter)

    def rebuild(new_params: Any) -> Any:
        return merge_nnx(graphdef, new_params, rest)

    return params, rebuild


def nnx_objective(loss_fn: Callable[..., Any], graphdef: Any, rest: Any) -> Callable[..., Any]:
    """Turn ``loss_fn(model, *args) -> scalar`` into ``fun(params, *args) -> scalar``.

    ``fun`` is pure (see the module docstring): use it with ``jax.grad``, optax, any opifex
    solver (``GradientDescent``, L-BFGS, ...), under ``jit`` and ``vmap``.

    Args:
        loss_fn: the loss of a model on data, ``loss_fn(model, *args)``.
        graphdef: from ``split_nnx``.
        rest: from ``split_nnx``.

    Returns:
        ``fun(params, *args)``.

    Raises:
        TypeError: ``loss_fn`` is not callable or ``graphdef`` is not a ``GraphDef``.
        ValueError: (when ``fun`` is called) ``loss_fn`` did not return a scalar.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> graphdef, params, rest = split_nnx(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
        >>> def mse(model, x, y):
        ...     return jnp.mean((model(x) - y) ** 2)
        >>> fun = nnx_objective(mse, graphdef, rest)
        >>> sorted(jax.grad(fun)(params, jnp.ones((4, 2)), jnp.zeros((4, 1))))
        ['bias', 'kernel']
    """
    nnx = _nnx()
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(graphdef, nnx.GraphDef):
        raise TypeError(
            f"graphdef must be the flax.nnx.GraphDef returned by split_nnx, got "
            f"{type(graphdef).__name__}"
        )

    def fun(params: Any, *args: Any) -> Any:
        value = loss_fn(nnx.merge(graphdef, params, rest, copy=True), *args)
        if np.ndim(value) != 0:
            raise ValueError(
                f"loss_fn(model, *args) must return a scalar, got shape {np.shape(value)}"
            )
        return value

    return fun
