"""``InnerLoop``: what the meta-parameters ``phi`` build, the inner loop's start and its rule.

Meta-learning fits meta-parameters ``phi`` so that a short inner optimisation on a new task of
a ``TaskFamily`` goes well. An inner loop is described by three things:

* ``family``: the ``TaskFamily`` of the inner problems;
* ``start(phi, key, task) -> params``: the parameters the inner loop starts from;
* ``optimizer(phi) -> optax.GradientTransformation``: the update rule of its steps.

The common meta-learners are all instances:

* a learned optimiser (``LearnedOptimizer``): start ``family.init(key, task)``, rule
  ``make_optimizer(phi)``;
* MAML (``LearnedInit(family, optax.sgd(learning_rate))``): start ``phi``, rule SGD;
* an initialisation meta-learned for any optax optimiser (``LearnedInit``): start ``phi``,
  rule that optimiser;
* Meta-SGD: start ``phi["init"]``, rule SGD with the per-parameter learning rates
  ``phi["rates"]`` (a few lines: an object with these two methods).

Any object with these three members is an ``InnerLoop`` (a protocol); it should be hashable
(a frozen dataclass) so that ``meta_train`` can reuse its compiled programs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import optax

from opifex.core._task_family import TaskFamily, check_task_family

MakeOptimizer = Callable[[Any], optax.GradientTransformation]


@runtime_checkable
class InnerLoop(Protocol):
    """The inner loop built from meta-parameters ``phi`` (see the module docstring).

    Example:
        >>> import optax
        >>> from opifex.core.families import QuadraticFamily
        >>> isinstance(LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.1)), InnerLoop)
        True
    """

    family: TaskFamily

    def start(self, phi: Any, key: jax.Array, task: Any) -> Any:
        """The parameters the inner loop starts from on ``task``."""

    def optimizer(self, phi: Any) -> optax.GradientTransformation:
        """The update rule of the inner steps."""


def check_inner(inner: Any) -> None:
    """``TypeError`` unless ``inner`` is an ``InnerLoop`` whose ``family`` is a ``TaskFamily``."""
    if not isinstance(inner, InnerLoop):
        raise TypeError(
            "inner must be an InnerLoop (family, start and optimizer members, e.g. "
            f"LearnedOptimizer or LearnedInit), got {type(inner).__name__}"
        )
    check_task_family(inner.family)


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer:
    """A learned optimiser: ``phi`` is the update rule; the start is the family's own.

    Args:
        family: the ``TaskFamily``; the inner loop starts from ``family.init(key, task)``.
        make_optimizer: ``phi -> optax transformation`` (e.g. ``opifex.l2o.mlp_optimizer``).

    Raises:
        TypeError: ``family`` is not a ``TaskFamily`` or ``make_optimizer`` is not callable.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi["log_lr"])))
        >>> inner.start({"log_lr": jnp.zeros(())}, jax.random.key(0), None).shape
        (3,)
    """

    family: TaskFamily
    make_optimizer: MakeOptimizer

    def __post_init__(self) -> None:
        check_task_family(self.family)
        if not callable(self.make_optimizer):
            raise TypeError(
                "make_optimizer must be callable (phi -> optax transformation), got "
                f"{type(self.make_optimizer).__name__}"
            )

    def start(self, phi: Any, key: jax.Array, task: Any) -> Any:
        """``family.init(key, task)`` (``phi`` is not used)."""
        del phi
        return self.family.init(key, task)

    def optimizer(self, phi: Any) -> optax.GradientTransformation:
        """``make_optimizer(phi)``."""
        return self.make_optimizer(phi)


@dataclasses.dataclass(frozen=True)
class LearnedInit:
    """A learned initialisation: the inner loop starts from ``phi`` and steps with a fixed rule.

    With ``optax.sgd(learning_rate)`` this is MAML (Finn et al., 2017); any other optax
    optimiser gives an initialisation meta-learned for that optimiser. ``phi`` has the
    structure of the family's parameters.

    Args:
        family: the ``TaskFamily``.
        inner_optimizer: the optax transformation of the inner steps.

    Raises:
        TypeError: ``family`` is not a ``TaskFamily`` or ``inner_optimizer`` is not an optax
            ``GradientTransformation``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> maml = LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.1))
        >>> maml.start(jnp.ones(3), jax.random.key(0), None)
        Array([1., 1., 1.], dtype=float32)
    """

    family: TaskFamily
    inner_optimizer: optax.GradientTransformation

    def __post_init__(self) -> None:
        check_task_family(self.family)
        if not isinstance(self.inner_optimizer, optax.GradientTransformation):
            raise TypeError(
                "inner_optimizer must be an optax GradientTransformation, got "
                f"{type(self.inner_optimizer).__name__}"
            )

    def start(self, phi: Any, key: jax.Array, task: Any) -> Any:
        """``phi`` itself (``key`` and ``task`` are not used)."""
        del key, task
        return phi

    def optimizer(self, phi: Any) -> optax.GradientTransformation:
        """``inner_optimizer`` (``phi`` is not used)."""
        del phi
        return self.inner_optimizer
