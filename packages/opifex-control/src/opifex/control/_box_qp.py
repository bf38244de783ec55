"""Small box-constrained quadratic programs, the inner problem of box-DDP.

``minimise 1/2 x' H x + g' x  subject to  lower <= x <= upper`` by projected Newton (Bertsekas
1982; the variant Tassa, Mansard and Todorov use in "Control-limited differential dynamic
programming", ICRA 2014): Newton steps on the free set, a projected backtracking search, and
the free set recomputed from the gradient's sign at the bounds. One iteration is exact for one
variable or no active bounds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

BACKTRACK_STEPS = 8  # projected search step lengths 1, 1/2, ... tried together


class BoxQPSolution(NamedTuple):
    """The solution ``x``, its free components, and the Hessian with clamped rows made identity."""

    x: Array
    free: Array
    free_hessian: Array


def _free_mask(x: Array, grad: Array, lower: Array, upper: Array) -> Array:
    clamped = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
    return ~clamped


def _restrict(hessian: Array, free: Array) -> Array:
    both = free[:, None] & free[None, :]
    return jnp.where(both, hessian, jnp.eye(hessian.shape[0], dtype=hessian.dtype))


def box_qp(
    hessian: Array, gradient: Array, lower: Array, upper: Array, x0: Array, iterations: int
) -> BoxQPSolution:
    """Solve the box QP from ``x0`` with a fixed number of projected-Newton iterations.

    Args:
        hessian: ``H`` (symmetric positive definite), shape ``(m, m)``.
        gradient: ``g``, shape ``(m,)``.
        lower: lower bounds (``-inf`` allowed).
        upper: upper bounds (``inf`` allowed).
        x0: starting point (projected onto the box).
        iterations: projected-Newton iterations (1 is exact when ``m == 1`` or nothing binds).

    Returns:
        A ``BoxQPSolution``; ``x`` is NaN if ``H`` restricted to the free set is not
        positive definite (the caller treats that as a failed backward pass).

    Example:
        >>> import jax.numpy as jnp
        >>> sol = box_qp(jnp.eye(2), jnp.array([-2.0, 0.5]), -jnp.ones(2), jnp.ones(2),
        ...              jnp.zeros(2), iterations=3)
        >>> sol.x.tolist(), sol.free.tolist()
        ([1.0, -0.5], [False, True])
    """

    def objective(x: Array) -> Array:
        return 0.5 * x @ hessian @ x + gradient @ x

    def iterate(_: int, x: Array) -> Array:
        grad = gradient + hessian @ x
        free = _free_mask(x, grad, lower, upper)
        factor = jnp.linalg.cholesky(_restrict(hessian, free))
        direction = -jax.scipy.linalg.cho_solve((factor, True), jnp.where(free, grad, 0.0))
        lengths = 0.5 ** jnp.arange(BACKTRACK_STEPS, dtype=x.dtype)
        trials = jnp.clip(x + lengths[:, None] * direction, lower, upper)
        values = jax.vmap(objective)(trials)
        best = jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))
        improved = values[best] <= objective(x)
        positive_definite = jnp.all(jnp.isfinite(direction))
        return jnp.where(positive_definite, jnp.where(improved, trials[best], x), jnp.nan)

    x = lax.fori_loop(0, iterations, iterate, jnp.clip(x0, lower, upper))
    free = _free_mask(x, gradient + hessian @ x, lower, upper)
    return BoxQPSolution(x, free, _restrict(hessian, free))
