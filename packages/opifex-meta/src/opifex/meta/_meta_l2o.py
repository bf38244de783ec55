"""A start meta-learned for any optax optimiser, a learned optimiser included.

``MetaL2OIntegration(inner_optimizer)`` meta-learns the initialisation that adapts best in
``inner_steps`` steps of ``inner_optimizer``: ``LearnedInit(family, inner_optimizer)``,
trained on the query loss after the steps. ``inner_optimizer`` is any optax
``GradientTransformation`` (Adam, a schedule, L-BFGS, or a learned optimiser from
``opifex.l2o``, e.g. ``load_pretrained(...).optimizer``): the two packages meet through the
optax interface and never import each other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from opifex.meta._learner import MetaLearner, check_meta_settings


@dataclasses.dataclass(frozen=True)
class MetaL2OConfig:
    """The outer settings of ``MetaL2OIntegration`` (frozen; checked on creation).

    Args:
        meta_learning_rate: Adam's learning rate on the start (> 0).
        inner_steps: steps of the inner optimiser per task in training (>= 1).
        meta_batch_size: tasks per meta-iteration (>= 1).
        second_order: differentiate through the inner optimiser's gradients (exact), or
            hold them constant (first order: cheaper, and the only choice for an inner
            optimiser whose update is not differentiable).

    Example:
        >>> MetaL2OConfig().inner_steps
        5
    """

    meta_learning_rate: float = 1e-3
    inner_steps: int = 5
    meta_batch_size: int = 16
    second_order: bool = False

    def __post_init__(self) -> None:
        check_meta_settings(self, "meta_learning_rate", "inner_steps", "meta_batch_size")
        if not isinstance(self.second_order, bool):
            raise TypeError(f"second_order must be a bool, got {self.second_order!r}")


class MetaL2OIntegration(MetaLearner):
    """Meta-learn a start for ``inner_optimizer`` (see the module docstring).

    Args:
        inner_optimizer: the optax ``GradientTransformation`` of the inner steps.
        config: a ``MetaL2OConfig``.
        loss_fn: ``(params, inputs, targets) -> scalar``, for task arrays (``meta_train``).

    Raises:
        TypeError: ``inner_optimizer`` is not an optax ``GradientTransformation``.

    Example:
        >>> import jax, optax
        >>> from opifex.core.families import SinusoidFamily
        >>> from opifex.meta import FewShotFamily
        >>> family = FewShotFamily(SinusoidFamily(hidden_sizes=(8,)))
        >>> meta = MetaL2OIntegration(optax.adam(0.01), MetaL2OConfig(meta_batch_size=4))
        >>> result = meta.meta_train_family(
        ...     family, family.base.init(jax.random.key(0), None), 10, progress=False)
        >>> result.history.meta_loss.shape
        (10,)
    """

    config_type = MetaL2OConfig

    def __init__(
        self,
        inner_optimizer: optax.GradientTransformation,
        config: MetaL2OConfig | None = None,
        loss_fn: Any = None,
    ):
        if not isinstance(inner_optimizer, optax.GradientTransformation):
            raise TypeError(
                "inner_optimizer must be an optax GradientTransformation, got "
                f"{type(inner_optimizer).__name__}"
            )
        super().__init__(config, loss_fn)
        self.inner_optimizer = inner_optimizer

    @property
    def estimator(self) -> str:
        """``"full_backprop"`` or ``"first_order"``."""
        return "full_backprop" if self.config.second_order else "first_order"
