"""Sparse regression (LASSO) tasks, and ISTA / FISTA as solvers on the core driver."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core._checks import check_int_at_least, check_positive, check_shape
from opifex.core._deprecation import renamed_arguments
from opifex.core._driver import run_solver
from opifex.core._result import SolveResult
from opifex.core._status import SolveStatus
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
    max_steps: int,
    x0: jax.Array | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    check_shape(matrix, (None, None), "matrix")
    check_shape(target, (np.shape(matrix)[0],), "target")
    check_int_at_least(max_steps, 0, "max_steps")
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


class ProximalGradientState(NamedTuple):
    """State of ``ProximalGradient``: arrays only.

    Attributes:
        params: the iterate ``x_k``.
        value: the LASSO objective at ``x_k``.
        grad_norm: the norm of the gradient mapping ``||x_k - y_k|| / t`` of the last step
            (``y_k`` the point the step started from: ``x_{k-1}`` for ISTA); at ``k = 0`` that
            of ``x_0``. It is zero exactly at a minimiser.
        num_steps: iterations taken.
        num_grad_evals: gradients of the smooth part (one per iteration, one at the start).
        extrapolated: FISTA's ``y_{k+1}`` (``x_k`` for ISTA).
        momentum: FISTA's ``t_{k+1}``.
        step_size: ``t = 1 / ||A||_2^2``.
    """

    params: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    num_grad_evals: jax.Array
    extrapolated: jax.Array
    momentum: jax.Array
    step_size: jax.Array


class ProximalGradient:
    """ISTA / FISTA on ``0.5 ||A x - b||^2 + l1_penalty ||x||_1`` as a ``run_solver`` solver.

    The solver's arguments are ``(matrix, target, l1_penalty)`` (arrays; traced). One step is
    ``x_k = soft_threshold(y_k - t A^T (A y_k - b), t l1_penalty)`` with ``t = 1 / ||A||_2^2``;
    ISTA takes ``y_k = x_{k-1}``, FISTA (Beck and Teboulle, 2009) extrapolates
    ``y_{k+1} = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1})``, ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2))
    / 2`` from ``y_1 = x_0``, ``t_1 = 1``.

    Args:
        accelerated: FISTA (``True``) or ISTA (``False``).
        atol: converged when the gradient mapping's norm is at most this (``None``: no test;
            the run takes its whole budget, as a baseline run should).

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import run_solver
        >>> A, b = jnp.eye(2), jnp.array([3.0, -0.5])
        >>> result = run_solver(ProximalGradient(atol=1e-6), jnp.zeros(2), A, b, 1.0,
        ...                     max_steps=10)
        >>> result.params, result.status_name
        (Array([2., 0.], dtype=float32), 'SUCCESS')
    """

    def __init__(self, accelerated: bool = True, atol: float | None = None):
        if atol is not None:
            check_positive(atol, "atol", allow_zero=True)
        self.accelerated = accelerated
        self.atol = atol

    def _prox_step(self, y, step, matrix, target, l1_penalty):
        gradient = matrix.T @ (matrix @ y - target)
        return soft_threshold(y - step * gradient, step * l1_penalty)

    def init(self, params, matrix, target, l1_penalty) -> ProximalGradientState:
        """The objective and the gradient mapping at ``params``."""
        step = _step_size(matrix)
        mapped = self._prox_step(params, step, matrix, target, l1_penalty)
        return ProximalGradientState(
            params=params,
            value=lasso_objective(params, matrix, target, l1_penalty),
            grad_norm=jnp.linalg.norm(params - mapped) / step,
            num_steps=jnp.zeros((), jnp.int32),
            num_grad_evals=jnp.ones((), jnp.int32),
            extrapolated=params,
            momentum=jnp.ones((), params.dtype),
            step_size=step,
        )

    def step(self, state, matrix, target, l1_penalty) -> ProximalGradientState:
        """One proximal-gradient step from the extrapolated point."""
        y, t = state.extrapolated, state.momentum
        x = self._prox_step(y, state.step_size, matrix, target, l1_penalty)
        if self.accelerated:
            t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t**2))
            y_next = x + ((t - 1.0) / t_next) * (x - state.params)
        else:
            t_next, y_next = t, x
        return ProximalGradientState(
            params=x,
            value=lasso_objective(x, matrix, target, l1_penalty),
            grad_norm=jnp.linalg.norm(x - y) / state.step_size,
            num_steps=state.num_steps + 1,
            num_grad_evals=state.num_grad_evals + 1,
            extrapolated=y_next,
            momentum=t_next,
            step_size=state.step_size,
        )

    def terminate(self, state, *args) -> tuple[jax.Array, jax.Array]:
        """Converged when the gradient mapping is at most ``atol`` (never without ``atol``)."""
        done = jnp.zeros((), bool) if self.atol is None else state.grad_norm <= self.atol
        return done, jnp.asarray(SolveStatus.SUCCESS, jnp.int32)


def _proximal(
    accelerated: bool,
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    max_steps: int,
    x0: jax.Array | None,
) -> SolveResult:
    matrix, target, x0 = _check_lasso_args(matrix, target, l1_penalty, max_steps, x0)
    l1_penalty = jnp.asarray(l1_penalty, matrix.dtype)
    return run_solver(
        ProximalGradient(accelerated), x0, matrix, target, l1_penalty, max_steps=max_steps
    )


@renamed_arguments(num_iterations="max_steps")
def ista(
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    max_steps: int,
    x0: jax.Array | None = None,
) -> SolveResult:
    """ISTA (proximal gradient descent): ``max_steps`` iterations of ``ProximalGradient(False)``.

    The objective decreases monotonically, at rate ``O(1/k)``.

    Args:
        matrix: ``A``, shape ``(m, n)``.
        target: ``b``, shape ``(m,)``.
        l1_penalty: ``lambda >= 0`` (may be a traced scalar).
        max_steps: ``K >= 0`` iterations, all taken (a Python int: it fixes the trace length).
        x0: starting point, shape ``(n,)``; zeros by default.

    Returns:
        A ``SolveResult``: ``params = x_K``, ``trace["value"]`` the objective at
        ``x_0 .. x_K`` (entry ``k`` after ``k`` iterations), status ``MAX_STEPS_REACHED``.

    Example:
        >>> import jax.numpy as jnp
        >>> result = ista(jnp.eye(2), jnp.array([3.0, -0.5]), 1.0, max_steps=5)
        >>> result.params
        Array([2., 0.], dtype=float32)
        >>> result.trace["value"].shape
        (6,)
    """
    return _proximal(False, matrix, target, l1_penalty, max_steps, x0)


@renamed_arguments(num_iterations="max_steps")
def fista(
    matrix: jax.Array,
    target: jax.Array,
    l1_penalty: float | jax.Array,
    max_steps: int,
    x0: jax.Array | None = None,
) -> SolveResult:
    """FISTA (Beck and Teboulle, 2009): ``max_steps`` iterations of ``ProximalGradient()``.

    The objective gap falls as ``O(1/k^2)`` (not monotonically). Arguments and result as
    ``ista``.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[1.0, 0.5], [0.0, 1.0], [0.3, 0.0]])
        >>> result = fista(A, jnp.array([1.0, 2.0, 0.0]), 0.1, max_steps=200)
        >>> bool(result.trace["value"][-1] <= result.trace["value"][0])
        True
    """
    return _proximal(True, matrix, target, l1_penalty, max_steps, x0)


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
        >>> result = fista(task.matrix, task.target, family.l1_penalty, max_steps=500)
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
