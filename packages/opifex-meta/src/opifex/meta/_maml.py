"""MAML and first-order MAML (Finn et al., 2017): a start that adapts in a few SGD steps.

The inner loop is ``LearnedInit(family, optax.sgd(inner_learning_rate))`` from the start
``phi``; the meta-loss is the query loss after ``inner_steps`` steps on the support set. With
``second_order=True`` its exact gradient (``"full_backprop"``: through the inner gradients,
second derivatives included), else FOMAML's (``"first_order"``: the query gradient at the
adapted parameters). Adam applies it (``meta_learning_rate``).
"""

from __future__ import annotations

import dataclasses

from opifex.meta._learner import SGDStartLearner, check_meta_settings


@dataclasses.dataclass(frozen=True)
class MAMLConfig:
    """MAML's settings (frozen; checked on creation).

    Args:
        inner_learning_rate: the SGD step of adaptation (> 0).
        meta_learning_rate: Adam's learning rate on the start (> 0).
        inner_steps: SGD steps per task in training (>= 1).
        meta_batch_size: tasks per meta-iteration (>= 1).
        second_order: the exact meta-gradient (MAML) or the first-order one (FOMAML).

    Example:
        >>> MAMLConfig(second_order=False).inner_steps
        1
    """

    inner_learning_rate: float = 0.01
    meta_learning_rate: float = 1e-3
    inner_steps: int = 1
    meta_batch_size: int = 25
    second_order: bool = True

    def __post_init__(self) -> None:
        check_meta_settings(
            self, "inner_learning_rate", "meta_learning_rate", "inner_steps", "meta_batch_size"
        )
        if not isinstance(self.second_order, bool):
            raise TypeError(f"second_order must be a bool, got {self.second_order!r}")


class MAMLOptimizer(SGDStartLearner):
    """MAML / FOMAML (see the module docstring) over ``opifex.core.metatrain``.

    Args:
        config: a ``MAMLConfig``.
        loss_fn: ``(params, inputs, targets) -> scalar``, for training on task arrays
            (``meta_train``) and adapting to ``(inputs, targets)``; not needed with a family.

    Example:
        >>> import jax
        >>> from opifex.core.families import SinusoidFamily
        >>> from opifex.meta import FewShotFamily
        >>> family = FewShotFamily(SinusoidFamily(hidden_sizes=(8,)))
        >>> maml = MAMLOptimizer(MAMLConfig(meta_batch_size=4))
        >>> params = family.base.init(jax.random.key(0), None)
        >>> result = maml.meta_train_family(family, params, 20, progress=False)
        >>> curve = maml.evaluate(jax.random.key(1), result.phi, family, num_tasks=20)
        >>> curve.mean.shape  # query MSE after 0, 1 and 10 steps
        (3,)
    """

    config_type = MAMLConfig

    @property
    def estimator(self) -> str:
        """``"full_backprop"`` (MAML) or ``"first_order"`` (FOMAML)."""
        return "full_backprop" if self.config.second_order else "first_order"
