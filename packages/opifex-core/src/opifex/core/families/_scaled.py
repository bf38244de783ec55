"""A family's tasks seen at another scale: the robustness check of a learned optimiser.

A learned optimiser meta-trained on a family sees its losses and parameters at that family's
scale. ``ScaledFamily`` changes the scale and nothing else, so that a benchmark can ask whether
a claim survives data it was not tuned on: the same tasks with the loss multiplied by
``loss_scale`` and the parameters by ``param_scale``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from opifex.core._checks import check_positive
from opifex.core._task_family import check_task_family


@dataclasses.dataclass(frozen=True)
class ScaledFamily:
    """``base``'s tasks, the loss scaled by ``loss_scale`` and the parameters by ``param_scale``.

    ``loss(params, task, key) = loss_scale * base.loss(params / param_scale, task, key)`` and
    ``init = param_scale * base.init``: the same tasks, minimiser ``param_scale`` times
    ``base``'s, minimum ``loss_scale`` times ``base``'s. An optimiser that is invariant to these
    scales (plain gradient descent is not; Adam is to ``loss_scale``) takes the same path.

    Args:
        base: a hashable ``TaskFamily``.
        loss_scale: > 0.
        param_scale: > 0.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> base = QuadraticFamily(dimension=4)
        >>> family = ScaledFamily(base, loss_scale=0.25)
        >>> task = family.sample(jax.random.key(0))
        >>> params = family.init(jax.random.key(1), task)
        >>> bool(family.loss(params, task, None) == 0.25 * base.loss(params, task, None))
        True
    """

    base: Any
    loss_scale: float = 1.0
    param_scale: float = 1.0

    def __post_init__(self) -> None:
        check_task_family(self.base, "base")
        check_positive(self.loss_scale, "loss_scale")
        check_positive(self.param_scale, "param_scale")

    def sample(self, key: jax.Array) -> Any:
        """``base.sample``: the same tasks."""
        return self.base.sample(key)

    def init(self, key: jax.Array, task: Any) -> Any:
        """``param_scale`` times ``base.init``."""
        return jax.tree.map(lambda p: self.param_scale * p, self.base.init(key, task))

    def loss(self, params: Any, task: Any, key: jax.Array | None) -> jax.Array:
        """``loss_scale * base.loss(params / param_scale, task, key)``."""
        unscaled = jax.tree.map(lambda p: p / self.param_scale, params)
        return self.loss_scale * self.base.loss(unscaled, task, key)
