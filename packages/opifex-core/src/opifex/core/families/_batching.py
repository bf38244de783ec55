"""Minibatches drawn with the loss key, shared by the data-set families."""

from __future__ import annotations

import jax

from opifex.core.families import _random


def take_minibatch(
    key: jax.Array | None, arrays: tuple[jax.Array, ...], batch_size: int | None
) -> tuple[jax.Array, ...]:
    """Rows of ``arrays`` (same leading size) at ``batch_size`` distinct random indices.

    The indices are a uniformly random subset (drawn without replacement with ``key``): those
    of the ``batch_size`` largest of i.i.d. uniform scores, which compiles faster than
    ``jax.random.choice(..., replace=False)``. ``batch_size=None`` returns ``arrays`` unchanged
    (full batch; ``key`` is then unused).
    """
    if batch_size is None:
        return arrays
    scores = _random.uniform(key, (arrays[0].shape[0],))
    _, indices = jax.lax.top_k(scores, batch_size)
    return tuple(array[indices] for array in arrays)
