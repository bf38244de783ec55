"""Few-shot task families: every task carries its own fixed support and query sets.

In MAML's K-shot setting (Finn et al., 2017) a task is a handful of labelled points: the inner
steps all fit the same ``K`` support points, and the meta-loss is measured on a separate query
set of the same task. ``opifex.core.metatrain`` unrolls draw a new minibatch per inner step
from ``family.loss``'s key; these families ignore that key and fit the task's fixed support
set instead, and define ``query_loss`` (which the unrolls use for the query):

* ``FewShotFamily(base, num_support, num_query)``: tasks drawn from a family that can sample
  points (``SinusoidFamily``: ``support_query`` and ``mse``);
* ``TaskPool(loss_fn, support, query, init_fn)``: a fixed collection of tasks given as arrays
  (a dataset of tasks), sampled uniformly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core import check_task_family
from opifex.core._checks import check_int_at_least


class FewShotTask(NamedTuple):
    """One task with its data.

    Attributes:
        task: the underlying task (e.g. a ``SinusoidTask``), or its index in a ``TaskPool``.
        support: ``(inputs, targets)`` the inner steps fit.
        query: ``(inputs, targets)`` the adapted parameters are judged on.
    """

    task: Any
    support: tuple[jax.Array, jax.Array]
    query: tuple[jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class FewShotFamily:
    """K-shot tasks of a point-sampling family: fixed support and query sets per task.

    Args:
        base: a family with ``sample``, ``init``, ``support_query(key, task, num_support,
            num_query)`` and ``mse(params, inputs, targets)`` (e.g. ``SinusoidFamily``).
        num_support: ``K``, the support points of a task (>= 1).
        num_query: the query points of a task (>= 1).

    Raises:
        TypeError / ValueError: ``base`` lacks those members, or a bad size.

    Example:
        >>> import jax
        >>> from opifex.core.families import SinusoidFamily
        >>> family = FewShotFamily(SinusoidFamily(), num_support=10, num_query=10)
        >>> task = family.sample(jax.random.key(0))
        >>> task.support[0].shape, task.query[1].shape
        ((10, 1), (10, 1))
        >>> params = family.init(jax.random.key(1), task)
        >>> bool(family.loss(params, task, jax.random.key(2))
        ...      == family.loss(params, task, jax.random.key(3)))  # the same support set
        True
    """

    base: Any
    num_support: int = 10
    num_query: int = 10

    def __post_init__(self) -> None:
        check_task_family(self.base, "base")
        for member in ("support_query", "mse"):
            if not callable(getattr(self.base, member, None)):
                raise TypeError(
                    f"base must define {member}() (like SinusoidFamily), "
                    f"got {type(self.base).__name__}"
                )
        check_int_at_least(self.num_support, 1, "num_support")
        check_int_at_least(self.num_query, 1, "num_query")

    def sample(self, key: jax.Array) -> FewShotTask:
        """A task of ``base`` with its support and query sets."""
        task_key, data_key = jax.random.split(key)
        task = self.base.sample(task_key)
        x_s, y_s, x_q, y_q = self.base.support_query(
            data_key, task, self.num_support, self.num_query
        )
        return FewShotTask(task, (x_s, y_s), (x_q, y_q))

    def init(self, key: jax.Array, task: FewShotTask) -> Any:
        """``base.init`` of the underlying task."""
        return self.base.init(key, task.task)

    def loss(self, params: Any, task: FewShotTask, key: jax.Array) -> jax.Array:
        """The error on the support set (``key`` is not used)."""
        del key
        return self.base.mse(params, *task.support)

    def query_loss(self, params: Any, task: FewShotTask, key: jax.Array) -> jax.Array:
        """The error on the query set (``key`` is not used)."""
        del key
        return self.base.mse(params, *task.query)


def _check_sets(support: Any, query: Any) -> int:
    """The number of tasks of ``(inputs, targets)`` pairs with a shared leading task axis."""
    sizes = []
    for name, pair in (("support", support), ("query", query)):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"{name} must be a pair (inputs, targets) of arrays")
        for part in pair:
            array = jnp.asarray(part)
            if array.ndim < 1 or array.shape[0] == 0:
                raise ValueError(
                    f"{name} arrays need a leading task axis of size >= 1, got shape {array.shape}"
                )
            if not bool(jnp.all(jnp.isfinite(array))):
                raise ValueError(f"{name} contains NaN or inf")
            sizes.append(array.shape[0])
    if len(set(sizes)) != 1:
        raise ValueError(f"support and query must hold the same number of tasks, got {sizes}")
    return sizes[0]


@dataclasses.dataclass(frozen=True, eq=False)
class TaskPool:
    """A fixed pool of tasks given as arrays, each with its support and query set.

    ``sample`` draws a task uniformly (with replacement); the inner steps fit
    ``loss_fn(params, *support)`` and the query is ``loss_fn(params, *query)``. Compared by
    identity (the arrays are not hashable), so a pool reuses ``meta_train``'s compiled
    programs only as the same object.

    Args:
        loss_fn: ``(params, inputs, targets) -> scalar``.
        support: ``(inputs, targets)``, each with a leading axis over the tasks.
        query: ``(inputs, targets)`` with the same number of tasks.
        init_fn: ``key -> params``, the family's ``init`` (e.g. the network's initialiser).

    Raises:
        TypeError / ValueError: non-callable functions, mismatched task counts, empty or
            non-finite arrays.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> def loss_fn(w, x, y):
        ...     return jnp.mean((x * w - y) ** 2)
        >>> x = jnp.ones((3, 5))  # 3 tasks, 5 points each
        >>> y = jnp.arange(3.0)[:, None] * x  # task i: y = i * x
        >>> pool = TaskPool(loss_fn, (x, y), (x, y), lambda key: jnp.zeros(()))
        >>> pool.num_tasks
        3
        >>> task = pool.sample(jax.random.key(0))
        >>> float(pool.loss(task.task.astype(float), task, None))  # w = i fits task i
        0.0
    """

    loss_fn: Callable[..., jax.Array]
    support: tuple[Any, Any]
    query: tuple[Any, Any]
    init_fn: Callable[[jax.Array], Any]

    def __post_init__(self) -> None:
        for name in ("loss_fn", "init_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, got {type(getattr(self, name))}")
        _check_sets(self.support, self.query)
        for name in ("support", "query"):
            object.__setattr__(self, name, tuple(jnp.asarray(a) for a in getattr(self, name)))

    @property
    def num_tasks(self) -> int:
        """The number of tasks in the pool."""
        return int(self.support[0].shape[0])

    def sample(self, key: jax.Array) -> FewShotTask:
        """A task drawn uniformly from the pool."""
        index = jax.random.randint(key, (), 0, self.num_tasks)
        return FewShotTask(
            index,
            tuple(a[index] for a in self.support),
            tuple(a[index] for a in self.query),
        )

    def init(self, key: jax.Array, task: FewShotTask) -> Any:
        """``init_fn(key)``."""
        del task
        return self.init_fn(key)

    def loss(self, params: Any, task: FewShotTask, key: jax.Array) -> jax.Array:
        """The loss on the task's support set (``key`` is not used)."""
        del key
        return self.loss_fn(params, *task.support)

    def query_loss(self, params: Any, task: FewShotTask, key: jax.Array) -> jax.Array:
        """The loss on the task's query set (``key`` is not used)."""
        del key
        return self.loss_fn(params, *task.query)
