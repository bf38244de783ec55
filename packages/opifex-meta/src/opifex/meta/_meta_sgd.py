"""Meta-SGD (Li et al., 2017): a learned start and a learned step per parameter.

``phi = {"init": params, "rates": like params}``; an inner step is
``theta <- theta - rates * grad`` (elementwise). A rate may turn negative or differ between
parameters, so the learned rule has a per-parameter learning rate *and* direction. Both parts
are meta-trained on the query loss after ``trajectory_length`` steps, by the exact
meta-gradient (``use_second_order=True``) or the first-order one; ``regularization_strength``
adds decoupled weight decay (an L2 penalty) on ``phi``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from opifex.core import check_task_family
from opifex.core._checks import check_positive
from opifex.meta._learner import MetaLearner, check_meta_settings


def per_parameter_sgd(rates: Any) -> optax.GradientTransformation:
    """``updates = -rates * grads`` (elementwise; ``rates`` shaped like the parameters).

    Example:
        >>> import jax.numpy as jnp
        >>> update = per_parameter_sgd(jnp.array([0.1, -1.0]))
        >>> update.update(jnp.array([1.0, 1.0]), update.init(None))[0]
        Array([-0.1,  1. ], dtype=float32)
    """

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        return jax.tree.map(lambda g, r: -r * g, grads, rates), state

    return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True)
class MetaSGD:
    """Meta-SGD's ``InnerLoop``: start ``phi["init"]``, steps ``-phi["rates"] * grad``.

    Args:
        family: the ``TaskFamily``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.core.families import QuadraticFamily
        >>> inner = MetaSGD(QuadraticFamily(dimension=2))
        >>> phi = meta_sgd_parameters(jnp.ones(2), 0.1)
        >>> inner.start(phi, jax.random.key(0), None), phi["rates"]
        (Array([1., 1.], dtype=float32), Array([0.1, 0.1], dtype=float32))
    """

    family: Any

    def __post_init__(self) -> None:
        check_task_family(self.family)

    def start(self, phi: Any, key: jax.Array, task: Any) -> Any:
        """``phi["init"]``."""
        del key, task
        return phi["init"]

    def optimizer(self, phi: Any) -> optax.GradientTransformation:
        """``per_parameter_sgd(phi["rates"])``."""
        return per_parameter_sgd(phi["rates"])


def meta_sgd_parameters(params: Any, learning_rate: float) -> dict[str, Any]:
    """``{"init": params, "rates": learning_rate everywhere}``: Meta-SGD's starting ``phi``.

    Example:
        >>> import jax.numpy as jnp
        >>> meta_sgd_parameters({"w": jnp.zeros(2)}, 0.01)["rates"]["w"]
        Array([0.01, 0.01], dtype=float32)
    """
    check_positive(learning_rate, "learning_rate")
    rates = jax.tree.map(
        lambda p: jnp.full(jnp.shape(p), learning_rate, jnp.result_type(p)), params
    )
    return {"init": params, "rates": rates}


@dataclasses.dataclass(frozen=True)
class MetaSGDConfig:
    """Meta-SGD's settings (frozen; checked on creation).

    Args:
        inner_learning_rate: every rate's starting value (> 0).
        meta_learning_rate: Adam's learning rate on ``phi`` (> 0).
        trajectory_length: inner steps per task in training (>= 1).
        meta_batch_size: tasks per meta-iteration (>= 1).
        use_second_order: the exact meta-gradient, or the first-order one.
        regularization_strength: decoupled weight decay on ``phi`` (>= 0).

    Example:
        >>> MetaSGDConfig(trajectory_length=5).use_second_order
        True
    """

    inner_learning_rate: float = 0.01
    meta_learning_rate: float = 1e-3
    trajectory_length: int = 1
    meta_batch_size: int = 25
    use_second_order: bool = True
    regularization_strength: float = 0.0

    def __post_init__(self) -> None:
        check_meta_settings(
            self,
            "inner_learning_rate",
            "meta_learning_rate",
            "trajectory_length",
            "meta_batch_size",
        )
        if not isinstance(self.use_second_order, bool):
            raise TypeError(f"use_second_order must be a bool, got {self.use_second_order!r}")
        check_positive(self.regularization_strength, "regularization_strength", allow_zero=True)


class GradientBasedMetaLearner(MetaLearner):
    """Meta-SGD (see the module docstring) over ``opifex.core.metatrain``.

    ``phi`` is ``{"init", "rates"}``: pass the start's parameters to the training methods
    (the rates start at ``inner_learning_rate``), and ``result.phi`` to ``adapt`` and
    ``evaluate``; ``initialization(phi)`` is the learned start.

    Args:
        config: a ``MetaSGDConfig``.
        loss_fn: ``(params, inputs, targets) -> scalar``, for task arrays (``meta_train``).

    Example:
        >>> import jax
        >>> from opifex.core.families import SinusoidFamily
        >>> from opifex.meta import FewShotFamily
        >>> family = FewShotFamily(SinusoidFamily(hidden_sizes=(8,)))
        >>> learner = GradientBasedMetaLearner(MetaSGDConfig(meta_batch_size=4))
        >>> result = learner.meta_train_family(
        ...     family, family.base.init(jax.random.key(0), None), 20, progress=False)
        >>> sorted(result.phi)
        ['init', 'rates']
    """

    config_type = MetaSGDConfig
    steps_field = "trajectory_length"

    def inner_loop(self, family: Any) -> MetaSGD:
        """``MetaSGD(family)``."""
        return MetaSGD(family)

    def meta_parameters(self, params: Any) -> dict[str, Any]:
        """``meta_sgd_parameters(params, inner_learning_rate)``."""
        return meta_sgd_parameters(params, self.config.inner_learning_rate)

    def initialization(self, phi: Any) -> Any:
        """``phi["init"]``."""
        return phi["init"]

    @property
    def estimator(self) -> str:
        """``"full_backprop"`` or ``"first_order"``."""
        return "full_backprop" if self.config.use_second_order else "first_order"

    def outer_settings(self) -> dict[str, Any]:
        """Decoupled weight decay on ``phi`` (``regularization_strength``)."""
        return {"weight_decay": self.config.regularization_strength}
