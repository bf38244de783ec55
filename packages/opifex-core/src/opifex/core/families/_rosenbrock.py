"""The extended Rosenbrock function with a random starting point and coefficient."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_int_at_least, check_positive
from opifex.core.families import _random
from opifex.core.families._validation import check_interval, set_field


class RosenbrockTask(NamedTuple):
    """One Rosenbrock task.

    Attributes:
        start: the starting point, shape ``(dimension,)``.
        coefficient: ``a`` (0-d); the minimiser is ``(a, a^2, a, a^2, ...)``.
    """

    start: jax.Array
    coefficient: jax.Array


@dataclasses.dataclass(frozen=True)
class RosenbrockFamily:
    """The extended Rosenbrock function (Moré, Garbow and Hillstrom, 1981), randomised.

    ``f(x) = sum_{i=1}^{n/2} [ b (x_{2i} - x_{2i-1}^2)^2 + (a - x_{2i-1})^2 ]``

    i.e. ``n/2`` independent copies of the 2-d Rosenbrock valley, so the minimum is 0 at
    ``(a, a^2, a, a^2, ...)`` (``optimum(task)``). A task is the starting point, the classic
    ``(-1.2, 1, -1.2, 1, ...)`` shifted by ``N(0, start_noise^2)`` noise per coordinate, and
    the coefficient ``a ~ U[coefficient_range]``; ``b = curvature`` is fixed.

    Args:
        dimension: ``n``, an even int >= 2.
        coefficient_range: ``(low, high)`` for ``a``; equal ends fix ``a`` (``(1, 1)`` gives the
            textbook function).
        curvature: ``b`` (> 0), default 100.
        start_noise: standard deviation of the shift of the starting point (>= 0).

    ``init(key, task)`` returns ``task.start`` (the key is unused: the start is the task);
    ``loss`` ignores its key.

    Example:
        >>> import jax
        >>> from opifex.core.families import RosenbrockFamily
        >>> family = RosenbrockFamily(dimension=4)
        >>> task = family.sample(jax.random.key(0))
        >>> x0 = family.init(jax.random.key(1), task)
        >>> x0.shape
        (4,)
        >>> float(family.loss(family.optimum(task), task, None))
        0.0
    """

    dimension: int = 2
    coefficient_range: tuple[float, float] = (0.5, 1.5)
    curvature: float = 100.0
    start_noise: float = 0.1

    def __post_init__(self) -> None:
        check_int_at_least(self.dimension, 2, "dimension")
        if self.dimension % 2:
            raise ValueError(f"dimension must be even, got {self.dimension}")
        set_field(
            self, "coefficient_range", check_interval(self.coefficient_range, "coefficient_range")
        )
        check_positive(self.curvature, "curvature")
        check_positive(self.start_noise, "start_noise", allow_zero=True)

    def sample(self, key: jax.Array) -> RosenbrockTask:
        """Draw a starting point and ``a``."""
        (noise,), (u,) = _random.draw(key, [(self.dimension,)], [()])
        base = jnp.tile(jnp.array([-1.2, 1.0], noise.dtype), self.dimension // 2)
        low, high = self.coefficient_range
        return RosenbrockTask(base + self.start_noise * noise, low + (high - low) * u)

    def init(self, key: jax.Array, task: RosenbrockTask) -> jax.Array:
        """The task's starting point (``key`` is unused)."""
        del key
        return task.start

    def loss(self, params: jax.Array, task: RosenbrockTask, key: jax.Array | None) -> jax.Array:
        """The extended Rosenbrock function at ``params`` (``key`` is unused)."""
        del key
        odd, even = params[0::2], params[1::2]
        return jnp.sum(self.curvature * (even - odd**2) ** 2 + (task.coefficient - odd) ** 2)

    def optimum(self, task: RosenbrockTask) -> jax.Array:
        """The minimiser ``(a, a^2, a, a^2, ...)`` (minimum value 0)."""
        a = task.coefficient
        return jnp.tile(jnp.stack([a, a**2]), self.dimension // 2)
