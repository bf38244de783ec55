"""Sparse regression (LASSO) tasks, and ISTA / FISTA as pure JAX baselines."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core._checks import check_int_at_least, check_positive, check_shape
from opifex.core.families import _random


class LassoTask(NamedTuple):
    """One LASSO problem ``min_x 0.5 ||A x - b||^2 + lambda ||x||_1``.

    Attributes:
        matrix: ``A``, shape ``(num_rows, dimension)``, unit-norm columns.
        target: ``b = A x_true + noise``, shape ``(num_rows,)``.
        ground_truth: the sparse ``x_true``, shape ``(dimension,)`` (for recovery metrics; it
            is not the LASSO minimiser).
    """

    matrix: jax.Array
    target: jax.Array
    ground_truth: jax.Array


class ProximalGradientResult(NamedTuple):
    """What ``ista`` / ``fista`` return.

    Attributes:
        params: the last iterate ``x_K``.
        losses: the LASSO objective at ``x_0, x_1, ..., x_K`` (``num_iterations + 1`` values:
            entry ``k`` is the objective after ``k`` iterations, the convention of
            ``steps_to_target``).
    """

    params: jax.Array
    losses: jax.Array


def lasso_objective(
    params: jax.Array, matrix: jax.Array, target: jax.Array, l1_penalty: float | jax.Array
) -> jax.Array:
    """``0.5 ||A x - b||^2 + l1_penalty ||x||_1``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(lasso_objective(jnp.array([1.0, -2.0]), jnp.eye(2), jnp.zeros(2), 0.5))
        4.0
    """
    residual = matrix @ params - target
    return 0.5 * jnp.sum(residual**2) + l1_penalty * jnp.sum(jnp.abs(params))


def soft_threshold(x: jax.Array, threshold: float | jax.Array) -> jax.Array:
    """The proximal operator of ``threshold * ||.||_1``: ``sign(x) max(|x| - threshold, 0)``.

    Computed as ``x - clip(x, -threshold, threshold)``, so entries in the dead zone are +0.

    Example:
        >>> import jax.numpy as jnp
        >>> soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0)
        Array([-1.,  0.,  2.], dtype=float32)
    """
    return x - jnp.clip(x, -threshold, threshold)


def _check_lasso_args(
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    num_iterations: int,
    x0: jax.Array | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    check_shape(matrix, (None, None), "matrix")
    check_shape(target, (np.shape(matrix)[0],), "target")
    check_int_at_least(num_iterations, 0, "num_iterations")
    if isinstance(l1_penalty, int | float):
        check_positive(l1_penalty, "l1_penalty", allow_zero=True)
    matrix = jnp.asarray(matrix)
    target = jnp.asarray(target, dtype=matrix.dtype)
    if x0 is None:
        x0 = jnp.zeros(matrix.shape[1], matrix.dtype)
    check_shape(x0, (np.shape(matrix)[1],), "x0")
    return matrix, target, jnp.asarray(x0, dtype=matrix.dtype)


def _step_size(matrix: jax.Array) -> jax.Array:
    """``1 / L`` with ``L = ||A||_2^2``, the Lipschitz constant of the smooth part's gradient."""
    lipschitz = jnp.linalg.norm(matrix, ord=2) ** 2
    return 1.0 / jnp.maximum(lipschitz, jnp.finfo(matrix.dtype).eps)


def ista(
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    num_iterations: int,
    x0: jax.Array | None = None,
) -> ProximalGradientResult:
    """ISTA (proximal gradient descent) on ``0.5 ||A x - b||^2 + l1_penalty ||x||_1``.

    ``x_{k+1} = soft_threshold(x_k - A^T (A x_k - b) / L, l1_penalty / L)`` with
    ``L = ||A||_2^2``. The objective decreases monotonically, at rate ``O(1/k)``.

    Args:
        matrix: ``A``, shape ``(m, n)``.
        target: ``b``, shape ``(m,)``.
        l1_penalty: ``lambda >= 0`` (may be a traced scalar).
        num_iterations: ``K >= 0`` (a Python int: it fixes the trace length).
        x0: starting point, shape ``(n,)``; zeros by default.

    Returns:
        ``ProximalGradientResult(params=x_K, losses)`` with ``K + 1`` objective values.

    Example:
        >>> import jax.numpy as jnp
        >>> result = ista(jnp.eye(2), jnp.array([3.0, -0.5]), 1.0, num_iterations=5)
        >>> result.params
        Array([2., 0.], dtype=float32)
        >>> result.losses.shape
        (6,)
    """
    matrix, target, x0 = _check_lasso_args(matrix, target, l1_penalty, num_iterations, x0)
    step = _step_size(matrix)

    def body(x: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        gradient = matrix.T @ (matrix @ x - target)
        x = soft_threshold(x - step * gradient, step * l1_penalty)
        return x, lasso_objective(x, matrix, target, l1_penalty)

    x, losses = jax.lax.scan(body, x0, None, length=num_iterations)
    initial = lasso_objective(x0, matrix, target, l1_penalty)
    return ProximalGradientResult(x, jnp.concatenate([initial[None], losses]))


def fista(
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    num_iterations: int,
    x0: jax.Array | None = None,
) -> ProximalGradientResult:
    """FISTA (Beck and Teboulle, 2009) on ``0.5 ||A x - b||^2 + l1_penalty ||x||_1``.

    The ISTA step taken at the extrapolated point ``y_k`` with step ``1/L``,
    ``L = ||A||_2^2``::

        x_k     = soft_threshold(y_k - A^T (A y_k - b) / L, l1_penalty / L)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        y_{k+1} = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1})

    from ``y_1 = x_0``, ``t_1 = 1``; the objective gap falls as ``O(1/k^2)`` (not monotonically).
    Arguments and result as ``ista``; ``losses`` is the objective at ``x_k``.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[1.0, 0.5], [0.0, 1.0], [0.3, 0.0]])
        >>> result = fista(A, jnp.array([1.0, 2.0, 0.0]), 0.1, num_iterations=200)
        >>> bool(result.losses[-1] <= result.losses[0])
        True
    """
    matrix, target, x0 = _check_lasso_args(matrix, target, l1_penalty, num_iterations, x0)
    step = _step_size(matrix)

    def body(
        carry: tuple[jax.Array, jax.Array, jax.Array], _: None
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], jax.Array]:
        x_previous, y, t = carry
        gradient = matrix.T @ (matrix @ y - target)
        x = soft_threshold(y - step * gradient, step * l1_penalty)
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t**2))
        y_next = x + ((t - 1.0) / t_next) * (x - x_previous)
        return (x, y_next, t_next), lasso_objective(x, matrix, target, l1_penalty)

    t0 = jnp.ones((), matrix.dtype)
    (x, _, _), losses = jax.lax.scan(body, (x0, x0, t0), None, length=num_iterations)
    initial = lasso_objective(x0, matrix, target, l1_penalty)
    return ProximalGradientResult(x, jnp.concatenate([initial[None], losses]))


@dataclasses.dataclass(frozen=True)
class LassoFamily:
    """Random LASSO problems ``min_x 0.5 ||A x - b||^2 + l1_penalty ||x||_1``.

    Scaling convention: the data term is ``0.5 * ||A x - b||^2``, a plain sum of squares (not
    divided by ``num_rows``), and the penalty is ``l1_penalty * sum_i |x_i|``.

    Sampling, in the style of the L2O LASSO benchmarks (LISTA papers; Chen et al., 2022,
    "Learning to Optimize: A Primer and A Benchmark"): ``A`` has i.i.d. Gaussian entries and
    each column is then normalised to unit Euclidean norm; the ground truth ``x_true`` has
    i.i.d. entries that are nonzero with probability ``sparsity``, and then ``N(0, 1)``;
    ``b = A x_true + noise_std * N(0, I)``.

    Args:
        num_rows: ``m`` (>= 1), number of measurements.
        dimension: ``n`` (>= 1), size of ``x``.
        l1_penalty: ``lambda`` (>= 0).
        sparsity: probability that an entry of ``x_true`` is nonzero, in ``(0, 1]``.
        noise_std: measurement noise standard deviation (>= 0).

    ``init`` returns ``x = 0`` (the usual LASSO start; the key is unused) and ``loss`` ignores
    its key. There is no closed-form minimiser: use ``fista`` as the reference solution, e.g.
    ``fista(task.matrix, task.target, family.l1_penalty, 5000).params``.

    Example:
        >>> import jax
        >>> from opifex.core.families import LassoFamily, fista
        >>> family = LassoFamily(num_rows=25, dimension=50)
        >>> task = family.sample(jax.random.key(0))
        >>> x0 = family.init(jax.random.key(1), task)
        >>> result = fista(task.matrix, task.target, family.l1_penalty, num_iterations=500)
        >>> bool(family.loss(result.params, task, None) < family.loss(x0, task, None))
        True
    """

    num_rows: int = 25
    dimension: int = 50
    l1_penalty: float = 0.005
    sparsity: float = 0.1
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        check_int_at_least(self.num_rows, 1, "num_rows")
        check_int_at_least(self.dimension, 1, "dimension")
        check_positive(self.l1_penalty, "l1_penalty", allow_zero=True)
        check_positive(self.sparsity, "sparsity")
        if self.sparsity > 1:
            raise ValueError(f"sparsity must be in (0, 1], got {self.sparsity!r}")
        check_positive(self.noise_std, "noise_std", allow_zero=True)

    def sample(self, key: jax.Array) -> LassoTask:
        """Draw ``A`` (unit-norm columns), a sparse ``x_true`` and ``b``."""
        (matrix, values, noise), (scores,) = _random.draw(
            key,
            normal_shapes=[(self.num_rows, self.dimension), (self.dimension,), (self.num_rows,)],
            uniform_shapes=[(self.dimension,)],
        )
        matrix = matrix / jnp.linalg.norm(matrix, axis=0, keepdims=True)
        support = scores < self.sparsity
        ground_truth = jnp.where(support, values, 0.0)
        noise = self.noise_std * noise
        return LassoTask(matrix, matrix @ ground_truth + noise, ground_truth)

    def init(self, key: jax.Array, task: LassoTask) -> jax.Array:
        """``x = 0`` (``key`` is unused)."""
        del key
        return jnp.zeros(self.dimension, task.matrix.dtype)

    def loss(self, params: jax.Array, task: LassoTask, key: jax.Array | None) -> jax.Array:
        """``0.5 ||A x - b||^2 + l1_penalty ||x||_1`` (``key`` is unused)."""
        del key
        return lasso_objective(params, task.matrix, task.target, self.l1_penalty)
