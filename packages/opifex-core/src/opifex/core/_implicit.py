"""Implicit differentiation of a solution defined by an optimality condition.

If ``x*(theta)`` solves ``F(x*, theta) = 0``, the implicit function theorem gives
``dx*/dtheta = -(dF/dx)^{-1} dF/dtheta``. ``implicit_root`` wraps any solver so that JAX
differentiates the *solution*, not the iterations: the solver's loop is never unrolled, and
the cost of a derivative is one linear solve with ``dF/dx``. It is written as a ``custom_jvp``
whose tangent is a ``lax.custom_linear_solve``, so forward mode (``jvp``, ``jacfwd``) and
reverse mode (``grad``, ``vjp``) both work, under ``jit`` and ``vmap``.

SCF energies, MPC layers, QP layers and the Gauss-Newton solvers all use this one helper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from opifex.core._checks import check_choice

LINEAR_SOLVERS = ("dense", "cg", "gmres")


def _dense_solve(matvec: Callable[[Any], Any], b: Any) -> Any:
    flat_b, unravel = ravel_pytree(b)

    def flat_matvec(v: jax.Array) -> jax.Array:
        return ravel_pytree(matvec(unravel(v)))[0]

    matrix = jax.jacfwd(flat_matvec)(flat_b)
    return unravel(jnp.linalg.solve(matrix, flat_b))


def _cg_solve(matvec: Callable[[Any], Any], b: Any) -> Any:
    return jax.scipy.sparse.linalg.cg(matvec, b)[0]


def _gmres_solve(matvec: Callable[[Any], Any], b: Any) -> Any:
    return jax.scipy.sparse.linalg.gmres(matvec, b, solve_method="batched")[0]


_SOLVE = {"dense": _dense_solve, "cg": _cg_solve, "gmres": _gmres_solve}


def implicit_root(
    optimality_fn: Callable[[Any, Any], Any],
    solve: Callable[[Any, Any], Any],
    *,
    linear_solver: str = "dense",
    symmetric: bool = False,
) -> Callable[[Any, Any], Any]:
    """Return ``root(init, theta)``: ``solve``'s answer, differentiated implicitly.

    Args:
        optimality_fn: ``F(x, theta) -> residual`` with the structure of ``x``; the solution
            satisfies ``F(x*, theta) = 0`` (for a minimiser of ``f``, ``F = grad_x f``).
        solve: ``solve(init, theta) -> x*``, any solver (its internals are not differentiated).
        linear_solver: ``"dense"`` (materialises ``dF/dx``; small problems), ``"cg"``
            (matrix-free, needs ``dF/dx`` symmetric positive definite) or ``"gmres"``.
        symmetric: set when ``dF/dx`` is symmetric (e.g. ``F`` is a gradient), which saves
            the transpose in reverse mode.

    Returns:
        ``root(init, theta) -> x*``; derivatives w.r.t. ``theta`` follow the implicit
        function theorem, and ``init`` receives no gradient.

    Raises:
        ValueError: if ``linear_solver`` is not one of ``"dense"``, ``"cg"``, ``"gmres"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> F = lambda x, a: x**2 - a          # x* = sqrt(a)
        >>> def newton(x, a):
        ...     return jax.lax.fori_loop(0, 30, lambda _, x: x - (x**2 - a) / (2 * x), x)
        >>> sqrt = implicit_root(F, newton)
        >>> round(float(jax.grad(lambda a: sqrt(jnp.ones(()), a))(4.0)), 6)   # 1/(2 sqrt(a))
        0.25
    """
    check_choice(linear_solver, LINEAR_SOLVERS, "linear_solver")
    linear_solve = _SOLVE[linear_solver]

    @jax.custom_jvp
    def root(init: Any, theta: Any) -> Any:
        return solve(init, theta)

    @root.defjvp
    def root_jvp(primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        init, theta = primals
        _, theta_dot = tangents
        x = lax.stop_gradient(solve(init, theta))
        _, rhs = jax.jvp(lambda t: optimality_fn(x, t), (theta,), (theta_dot,))

        def matvec(v: Any) -> Any:
            return jax.jvp(lambda y: optimality_fn(y, theta), (x,), (v,))[1]

        x_dot = lax.custom_linear_solve(
            matvec,
            jax.tree.map(jnp.negative, rhs),
            solve=linear_solve,
            transpose_solve=linear_solve,
            symmetric=symmetric,
        )
        return x, x_dot

    return root
