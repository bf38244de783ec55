"""Physics-informed 1-D Poisson problems with random sine-series forcing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_int_at_least, check_positive
from opifex.core.families import _random
from opifex.core.families._networks import apply_mlp, init_mlp
from opifex.core.families._validation import check_sizes, set_field

ACTIVATION = "tanh"


class PoissonTask(NamedTuple):
    """One forcing ``f(x) = sum_k a_k sin(k pi x)``.

    Attributes:
        coefficients: ``(a_1, ..., a_K)``, shape ``(num_modes,)``.
    """

    coefficients: jax.Array


def _sine_series(coefficients: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_k c_k sin(k pi x)`` for ``x`` of any shape."""
    x = jnp.asarray(x)
    wavenumbers = jnp.pi * jnp.arange(1, coefficients.shape[-1] + 1, dtype=x.dtype)
    return jnp.sin(x[..., None] * wavenumbers) @ coefficients


@dataclasses.dataclass(frozen=True)
class PoissonFamily:
    """Physics-informed ``u_theta`` for ``-u''(x) = f(x)`` on ``[0, 1]``, ``u(0) = u(1) = 0``.

    A task is a forcing ``f(x) = sum_{k=1}^{K} a_k sin(k pi x)`` with ``a_k ~ N(0, 1)``
    i.i.d.; its exact solution is ``u(x) = sum_k a_k / (k pi)^2 sin(k pi x)``
    (``exact_solution``).

    The model ``u_theta`` is a tanh MLP ``1 -> hidden_sizes -> 1`` (LeCun-normal weights, zero
    biases; parameters ``{"weights": [...], "biases": [...]}``). The loss draws
    ``num_collocation`` points ``x ~ U(0, 1)`` with its key (``collocation_points``)::

        loss = mean_i r(x_i)^2 + boundary_weight * (u_theta(0)^2 + u_theta(1)^2) / 2,
        r(x) = -u_theta''(x) - f(x)

    with ``u_theta''`` from nested ``jax.grad`` in ``x`` (``pde_residual``).

    Args:
        num_modes: ``K`` (>= 1).
        num_collocation: residual points per loss evaluation (>= 1).
        hidden_sizes: hidden widths of ``u_theta`` (at least one layer).
        boundary_weight: weight of the boundary penalty (>= 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.core.families import PoissonFamily
        >>> family = PoissonFamily(num_modes=3)
        >>> task = family.sample(jax.random.key(0))
        >>> x = jnp.linspace(0.0, 1.0, 5)
        >>> u = lambda s: family.exact_solution(task, s)
        >>> bool(jnp.max(jnp.abs(family.pde_residual(u, task, x))) < 1e-4)
        True
        >>> params = family.init(jax.random.key(1), task)
        >>> family.loss(params, task, jax.random.key(2)).shape
        ()
    """

    num_modes: int = 4
    num_collocation: int = 64
    hidden_sizes: tuple[int, ...] = (32, 32)
    boundary_weight: float = 1.0

    def __post_init__(self) -> None:
        check_int_at_least(self.num_modes, 1, "num_modes")
        check_int_at_least(self.num_collocation, 1, "num_collocation")
        set_field(
            self, "hidden_sizes", check_sizes(self.hidden_sizes, "hidden_sizes", min_length=1)
        )
        check_positive(self.boundary_weight, "boundary_weight", allow_zero=True)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(1, *hidden_sizes, 1)``."""
        return (1, *self.hidden_sizes, 1)

    def sample(self, key: jax.Array) -> PoissonTask:
        """Draw ``a_k ~ N(0, 1)``."""
        return PoissonTask(_random.normal(key, (self.num_modes,)))

    def init(self, key: jax.Array, task: PoissonTask) -> Any:
        """Draw the MLP parameters of ``u_theta``."""
        del task
        return init_mlp(key, self.layer_sizes, ACTIVATION)

    def apply(self, params: Any, x: jax.Array) -> jax.Array:
        """``u_theta(x)`` elementwise: ``x`` of any shape, result of the same shape."""
        return apply_mlp(params, jnp.asarray(x)[..., None], ACTIVATION)[..., 0]

    def forcing(self, task: PoissonTask, x: jax.Array) -> jax.Array:
        """``f(x) = sum_k a_k sin(k pi x)`` elementwise."""
        return _sine_series(task.coefficients, x)

    def exact_solution(self, task: PoissonTask, x: jax.Array) -> jax.Array:
        """``u(x) = sum_k a_k / (k pi)^2 sin(k pi x)`` elementwise."""
        k = jnp.arange(1, task.coefficients.shape[-1] + 1, dtype=task.coefficients.dtype)
        return _sine_series(task.coefficients / (k * jnp.pi) ** 2, x)

    def pde_residual(
        self, u_fn: Callable[[jax.Array], jax.Array], task: PoissonTask, x: jax.Array
    ) -> jax.Array:
        """``-u''(x) - f(x)`` for a scalar function ``u_fn(x)``, elementwise over ``x``."""
        x = jnp.asarray(x)
        second = jax.grad(jax.grad(u_fn))
        flat = x.reshape(-1)
        u_xx = jax.vmap(second)(flat).reshape(x.shape)
        return -u_xx - self.forcing(task, x)

    def collocation_points(self, key: jax.Array) -> jax.Array:
        """The ``num_collocation`` points ``x ~ U(0, 1)`` that ``loss`` uses with ``key``."""
        return _random.uniform(key, (self.num_collocation,))

    def loss(self, params: Any, task: PoissonTask, key: jax.Array) -> jax.Array:
        """Mean squared PDE residual at collocation points plus the boundary penalty."""
        x = self.collocation_points(key)
        residual = self.pde_residual(lambda s: self.apply(params, s), task, x)
        boundary = self.apply(params, jnp.array([0.0, 1.0], dtype=x.dtype))
        return jnp.mean(residual**2) + self.boundary_weight * jnp.mean(boundary**2)
