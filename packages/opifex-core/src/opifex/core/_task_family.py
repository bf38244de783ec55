"""The ``TaskFamily`` protocol shared by learned optimisers, meta-learning and benchmarks."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax


@runtime_checkable
class TaskFamily(Protocol):
    """A distribution over optimisation tasks, written as pure functions.

    A family is a static, hashable object (a frozen dataclass of Python scalars), so it can be
    closed over by ``jit`` and a batch of tasks is ``jax.vmap(family.sample)(keys)``.

    * ``sample(key) -> task``: draw one task (a pytree of arrays, e.g. a matrix and a target).
    * ``init(key, task) -> params``: draw initial parameters for that task.
    * ``loss(params, task, key) -> scalar``: the training loss; ``key`` draws a minibatch
      (deterministic families ignore it).

    Optional: ``query_loss(params, task, key) -> scalar``, the loss on a task's query set,
    for few-shot families whose tasks carry fixed support and query sets
    (``opifex.meta.FewShotFamily``); meta-training and evaluation use it for the query,
    ``loss`` on another key when it is absent.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> family = QuadraticFamily(dimension=4)
        >>> isinstance(family, TaskFamily)
        True
        >>> task = family.sample(jax.random.key(0))
        >>> params = family.init(jax.random.key(1), task)
        >>> family.loss(params, task, jax.random.key(2)).shape
        ()
    """

    def sample(self, key: jax.Array) -> Any:
        """Draw one task."""

    def init(self, key: jax.Array, task: Any) -> Any:
        """Draw initial parameters for ``task``."""

    def loss(self, params: Any, task: Any, key: jax.Array) -> jax.Array:
        """The loss of ``params`` on ``task`` (``key`` draws a minibatch)."""


def check_task_family(family: Any, name: str = "family") -> None:
    """Raise ``TypeError`` unless ``family`` is a ``TaskFamily`` (``sample``, ``init``, ``loss``).

    Example:
        >>> check_task_family(object(), "base")
        Traceback (most recent call last):
        ...
        TypeError: base must be a TaskFamily (sample, init and loss methods), got object
    """
    if not isinstance(family, TaskFamily):
        raise TypeError(
            f"{name} must be a TaskFamily (sample, init and loss methods), got "
            f"{type(family).__name__}"
        )
