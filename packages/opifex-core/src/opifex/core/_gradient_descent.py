"""Fixed-step gradient descent: the smallest complete solver on the core driver.

It is the reference implementation of the solver protocol (and a baseline in tests); real
solvers live in ``opifex.second_order``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_positive
from opifex.core._deprecation import renamed_fields
from opifex.core._status import SolveStatus
from opifex.core._tree import tree_axpy, tree_l2_norm


class GradientDescentState(NamedTuple):
    """State of ``GradientDescent``: arrays only."""

    params: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    num_steps: jax.Array
    num_fun_evals: jax.Array


@renamed_fields(tolerance="atol")
class GradientDescent:
    """``x <- x - learning_rate * grad f(x)`` until ``||grad f|| <= atol``.

    The solution is differentiable with respect to ``args`` by the implicit function theorem
    on ``grad f = 0`` (``run_solver``'s default adjoint for this solver).

    Args:
        fun: objective ``fun(params, *args) -> scalar``.
        learning_rate: fixed step size (> 0).
        atol: gradient-norm tolerance (> 0; ``tolerance`` is its deprecated spelling).

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import run_solver
        >>> gd = GradientDescent(lambda x: jnp.sum(x**2), learning_rate=0.25)
        >>> float(run_solver(gd, jnp.ones(2), max_steps=100).value) < 1e-10
        True
    """

    def __init__(
        self,
        fun: Callable[..., jax.Array],
        learning_rate: float,
        atol: float = 1e-6,
    ) -> None:
        check_positive(learning_rate, "learning_rate")
        check_positive(atol, "atol")
        self.fun = fun
        self.learning_rate = learning_rate
        self.atol = atol
        self._value_and_grad = jax.value_and_grad(fun)

    implicit_symmetric = True  # the optimality condition is a gradient: its Jacobian is symmetric

    def init(self, params: Any, *args: Any) -> GradientDescentState:
        """Evaluate the objective at ``params``."""
        value, grad = self._value_and_grad(params, *args)
        return GradientDescentState(
            params,
            value,
            grad,
            tree_l2_norm(grad),
            jnp.zeros((), jnp.int32),
            jnp.ones((), jnp.int32),
        )

    def step(self, state: GradientDescentState, *args: Any) -> GradientDescentState:
        """Take one gradient step."""
        params = tree_axpy(-self.learning_rate, state.grad, state.params)
        value, grad = self._value_and_grad(params, *args)
        return GradientDescentState(
            params,
            value,
            grad,
            tree_l2_norm(grad),
            state.num_steps + 1,
            state.num_fun_evals + 1,
        )

    def terminate(self, state: GradientDescentState, *args: Any) -> tuple[jax.Array, jax.Array]:
        """Stop when the gradient norm is at most ``atol``."""
        done = state.grad_norm <= self.atol
        return done, jnp.asarray(SolveStatus.SUCCESS, jnp.int32)

    def optimality_fn(self, params: Any, *args: Any) -> Any:
        """``grad f(params, *args)``: zero at a solution."""
        return jax.grad(self.fun)(params, *args)

    def value_fn(self, params: Any, *args: Any) -> jax.Array:
        """The objective ``f(params, *args)``."""
        return self.fun(params, *args)
