"""Random least-squares quadratics, the standard learned-optimiser training family."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_choice, check_int_at_least, check_positive
from opifex.core.families import _random
from opifex.core.families._validation import set_field

SAMPLERS = ("gaussian", "uniform")


class QuadraticTask(NamedTuple):
    """One quadratic ``f(theta) = ||W theta - y||^2``.

    Attributes:
        matrix: ``W``, shape ``(num_rows, dimension)``.
        target: ``y``, shape ``(num_rows,)``.
    """

    matrix: jax.Array
    target: jax.Array


def _haar_orthonormal(gaussian: jax.Array) -> jax.Array:
    """Orthonormal columns, Haar-distributed: the sign-fixed QR of a Gaussian matrix."""
    q, r = jnp.linalg.qr(gaussian)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(q.dtype)
    return q * signs


@dataclasses.dataclass(frozen=True)
class QuadraticFamily:
    """Quadratics ``f(theta) = ||W theta - y||^2`` with random ``W`` and ``y``.

    This is the quadratic family of the learned-optimisation literature (Andrychowicz et al.,
    2016, "Learning to learn by gradient descent by gradient descent": ``W`` and ``y`` i.i.d.
    Gaussian). The loss is the plain sum of squares, without a 1/2 or 1/num_rows factor.

    Args:
        dimension: size of ``theta`` (>= 1).
        num_rows: rows of ``W`` (>= 1); ``None`` means ``dimension`` (a square ``W``).
        sampler: entries of ``W`` and ``y`` are ``"gaussian"`` (``N(0, 1)``) or ``"uniform"``
            (``U[-1, 1]``).
        condition_number: if set (a number >= 1), ``W = U diag(s) V^T`` with Haar-random
            ``U`` (``num_rows x dimension``, orthonormal columns) and ``V`` (orthogonal), and
            singular values ``s`` log-spaced from 1 down to ``condition_number**-0.5``, so that
            ``cond(W^T W) = condition_number`` exactly and ``||W||_2 = 1``; ``sampler`` then only
            sets the distribution of ``y``. Needs ``num_rows >= dimension``.

    ``init`` draws ``theta ~ N(0, I)``; ``loss`` ignores its key (full batch). ``optimum(task)``
    is the least-squares solution (minimum-norm when ``num_rows < dimension``).

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> family = QuadraticFamily(dimension=10, condition_number=100.0)
        >>> tasks = jax.vmap(family.sample)(jax.random.split(jax.random.key(0), 8))
        >>> tasks.matrix.shape
        (8, 10, 10)
        >>> task = family.sample(jax.random.key(1))
        >>> theta = family.init(jax.random.key(2), task)
        >>> bool(family.loss(family.optimum(task), task, None) < 1e-6)
        True
    """

    dimension: int
    num_rows: int | None = None
    sampler: str = "gaussian"
    condition_number: float | None = None

    def __post_init__(self) -> None:
        check_int_at_least(self.dimension, 1, "dimension")
        if self.num_rows is None:
            set_field(self, "num_rows", self.dimension)
        check_int_at_least(self.num_rows, 1, "num_rows")
        check_choice(self.sampler, SAMPLERS, "sampler")
        if self.condition_number is not None:
            check_positive(self.condition_number, "condition_number")
            if self.condition_number < 1:
                raise ValueError(f"condition_number must be >= 1, got {self.condition_number!r}")
            if self.num_rows < self.dimension:
                raise ValueError(
                    "condition_number needs num_rows >= dimension (W^T W must be full rank); "
                    f"got num_rows={self.num_rows}, dimension={self.dimension}"
                )
            if self.dimension == 1 and self.condition_number != 1:
                raise ValueError(
                    f"condition_number must be 1 when dimension == 1, got {self.condition_number!r}"
                )

    def _draw(
        self, key: jax.Array, gaussian: list[tuple[int, ...]], entries: list[tuple[int, ...]]
    ) -> list[jax.Array]:
        """``N(0, 1)`` arrays of shapes ``gaussian``, then ``sampler`` arrays of ``entries``."""
        if self.sampler == "gaussian":
            return _random.normals(key, gaussian + entries)
        normals, uniforms = _random.draw(key, gaussian, entries)
        return normals + [2.0 * u - 1.0 for u in uniforms]

    def singular_values(self) -> jax.Array:
        """The prescribed singular values of ``W`` (only with ``condition_number`` set)."""
        if self.condition_number is None:
            raise ValueError("singular_values needs condition_number to be set")
        exponent = -0.5 * math.log(self.condition_number)
        return jnp.exp(jnp.linspace(0.0, exponent, self.dimension))

    def sample(self, key: jax.Array) -> QuadraticTask:
        """Draw ``W`` and ``y``."""
        rows, dim = self.num_rows, self.dimension
        if self.condition_number is None:
            matrix, target = self._draw(key, [], [(rows, dim), (rows,)])
            return QuadraticTask(matrix, target)
        left, right, target = self._draw(key, [(rows, dim), (dim, dim)], [(rows,)])
        left, right = _haar_orthonormal(left), _haar_orthonormal(right)
        matrix = (left * self.singular_values().astype(left.dtype)) @ right.T
        return QuadraticTask(matrix, target)

    def init(self, key: jax.Array, task: QuadraticTask) -> jax.Array:
        """Draw ``theta ~ N(0, I)``."""
        del task
        return _random.normal(key, (self.dimension,))

    def loss(self, params: jax.Array, task: QuadraticTask, key: jax.Array | None) -> jax.Array:
        """``||W theta - y||^2`` (``key`` is unused)."""
        del key
        residual = task.matrix @ params - task.target
        return jnp.sum(residual**2)

    def optimum(self, task: QuadraticTask) -> jax.Array:
        """The (minimum-norm) least-squares minimiser of ``task``."""
        return jnp.linalg.pinv(task.matrix) @ task.target
