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
    """A box QP's solution and what the caller needs from it.

    ``x``, its free components, the Hessian with clamped rows made identity, and whether every
    Newton system met was positive definite (``x`` is NaN where not).
    """

    x: Array
    free: Array
    free_hessian: Array
    positive_definite: Array


def _free_mask(x: Array, grad: Array, lower: Array, upper: Array) -> Array:
    clamped = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
    return ~clamped


def _restrict(hessian: Array, free: Array) -> Array:
    both = free[:, None] & free[None, :]
    return jnp.where(both, hessian, jnp.eye(hessian.shape[0], dtype=hessian.dtype))


def _box_qp_scalar(
    hessian: Array, gradient: Array, lower: Array, upper: Array, x0: Array
) -> BoxQPSolution:
    """One variable in closed form: what one projected-Newton iteration returns.

    That is the clipped Newton step (no shorter length of the search improves on it), here
    without the search.
    """
    h = hessian[0, 0]
    start = jnp.clip(x0, lower, upper)
    clamped = ~_free_mask(start, gradient + h * start, lower, upper)
    positive = clamped | (h > 0)
    # divide by a safe value where h <= 0: no inf or NaN in what derivatives flow through
    newton = jnp.clip(-gradient / jnp.where(h > 0, h, 1.0), lower, upper)
    x = jnp.where(clamped, start, newton)
    free = _free_mask(x, gradient + h * x, lower, upper)
    return BoxQPSolution(jnp.where(positive, x, jnp.nan), free, _restrict(hessian, free), positive)


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
        A ``BoxQPSolution``; ``x`` is NaN and ``positive_definite`` false if ``H`` restricted
        to the free set is not positive definite (the caller treats that as a failed backward
        pass). The arithmetic itself stays finite (the failing system is replaced by the
        identity), so that derivatives through a discarded failed solve are not NaN.

    Example:
        >>> import jax.numpy as jnp
        >>> sol = box_qp(jnp.eye(2), jnp.array([-2.0, 0.5]), -jnp.ones(2), jnp.ones(2),
        ...              jnp.zeros(2), iterations=3)
        >>> sol.x.tolist(), sol.free.tolist()
        ([1.0, -0.5], [False, True])
    """
    if hessian.shape[0] == 1:
        return _box_qp_scalar(hessian, gradient, lower, upper, x0)
    eye = jnp.eye(hessian.shape[0], dtype=hessian.dtype)

    def objective(x: Array) -> Array:
        return 0.5 * x @ hessian @ x + gradient @ x

    def iterate(_: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        x, positive = carry
        grad = gradient + hessian @ x
        free = _free_mask(x, grad, lower, upper)
        restricted = _restrict(hessian, free)
        definite = jnp.all(jnp.isfinite(jnp.linalg.cholesky(lax.stop_gradient(restricted))))
        factor = jnp.linalg.cholesky(jnp.where(definite, restricted, eye))
        direction = -jax.scipy.linalg.cho_solve((factor, True), jnp.where(free, grad, 0.0))
        lengths = 0.5 ** jnp.arange(BACKTRACK_STEPS, dtype=x.dtype)
        trials = jnp.clip(x + lengths[:, None] * direction, lower, upper)
        values = jax.vmap(objective)(trials)
        best = jnp.argmin(jnp.where(jnp.isfinite(values), values, jnp.inf))
        improved = values[best] <= objective(x)
        moved = definite & positive & improved
        return jnp.where(moved, trials[best], x), positive & definite

    x, positive = lax.fori_loop(
        0, iterations, iterate, (jnp.clip(x0, lower, upper), jnp.ones((), bool))
    )
    free = _free_mask(x, gradient + hessian @ x, lower, upper)
    return BoxQPSolution(jnp.where(positive, x, jnp.nan), free, _restrict(hessian, free), positive)
