"""Physics-informed 1-D viscous Burgers problems with a random viscosity."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_int_at_least, check_positive
from opifex.core.families import _random
from opifex.core.families._networks import apply_mlp, init_mlp
from opifex.core.families._validation import check_interval, check_sizes, set_field

ACTIVATION = "tanh"


class BurgersTask(NamedTuple):
    """One Burgers problem.

    Attributes:
        viscosity: ``nu`` (0-d).
    """

    viscosity: jax.Array


class BurgersPoints(NamedTuple):
    """The points of one loss evaluation.

    Attributes:
        x, t: interior collocation points, ``x ~ U[-1, 1]``, ``t ~ U[0, 1]``, shape ``(n,)``.
        initial_x: points ``x ~ U[-1, 1]`` where ``u(x, 0) = -sin(pi x)`` is imposed.
        boundary_t: times ``t ~ U[0, 1]`` where ``u(-1, t) = u(1, t) = 0`` is imposed.
    """

    x: jax.Array
    t: jax.Array
    initial_x: jax.Array
    boundary_t: jax.Array


@dataclasses.dataclass(frozen=True)
class BurgersFamily:
    """Physics-informed training of ``u_theta(x, t)`` for the viscous Burgers equation.

    ``u_t + u u_x = nu u_xx`` on ``x in [-1, 1]``, ``t in [0, 1]``, with
    ``u(x, 0) = -sin(pi x)`` and ``u(-1, t) = u(1, t) = 0`` (the PINN benchmark of Raissi et
    al., 2019, there with ``nu = 0.01 / pi``). A task is the viscosity, drawn log-uniformly:
    ``log nu ~ U[log low, log high]`` with ``viscosity_range = (low, high)``, default
    ``(0.005, 0.05)``.

    The model is a tanh MLP ``(x, t) -> hidden_sizes -> u`` (LeCun-normal weights, zero
    biases; ``{"weights": [...], "biases": [...]}``). The loss key draws
    (``collocation_points``) ``num_collocation`` interior points
    ``(x, t) ~ U([-1, 1] x [0, 1])``, ``num_initial`` points ``x ~ U[-1, 1]`` at ``t = 0`` and
    ``num_boundary`` times ``t ~ U[0, 1]`` at each of ``x = -1`` and ``x = 1``::

        loss = mean r^2 + initial_weight * mean (u_theta(x, 0) + sin(pi x))^2
                        + boundary_weight * mean u_theta(+-1, t)^2,
        r = u_t + u u_x - nu u_xx     (derivatives by jax.grad: ``pde_residual``)

    Args:
        viscosity_range: ``(low, high)`` with ``0 < low <= high`` (equal ends fix ``nu``).
        num_collocation: interior points per loss evaluation (>= 1).
        num_initial: initial-condition points per loss evaluation (>= 1).
        num_boundary: boundary times per loss evaluation, at each end (>= 1).
        hidden_sizes: hidden widths (at least one layer).
        initial_weight: weight of the initial-condition penalty (>= 0).
        boundary_weight: weight of the boundary penalty (>= 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.core.families import BurgersFamily
        >>> family = BurgersFamily()
        >>> task = family.sample(jax.random.key(0))
        >>> bool(0.005 <= task.viscosity <= 0.05)
        True
        >>> params = family.init(jax.random.key(1), task)
        >>> family.apply(params, jnp.zeros(3), jnp.ones(3)).shape
        (3,)
        >>> family.loss(params, task, jax.random.key(2)).shape
        ()
    """

    viscosity_range: tuple[float, float] = (0.005, 0.05)
    num_collocation: int = 256
    num_initial: int = 64
    num_boundary: int = 64
    hidden_sizes: tuple[int, ...] = (32, 32, 32)
    initial_weight: float = 1.0
    boundary_weight: float = 1.0

    def __post_init__(self) -> None:
        set_field(
            self,
            "viscosity_range",
            check_interval(self.viscosity_range, "viscosity_range", lower=0.0, strict=True),
        )
        check_int_at_least(self.num_collocation, 1, "num_collocation")
        check_int_at_least(self.num_initial, 1, "num_initial")
        check_int_at_least(self.num_boundary, 1, "num_boundary")
        set_field(
            self, "hidden_sizes", check_sizes(self.hidden_sizes, "hidden_sizes", min_length=1)
        )
        check_positive(self.initial_weight, "initial_weight", allow_zero=True)
        check_positive(self.boundary_weight, "boundary_weight", allow_zero=True)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(2, *hidden_sizes, 1)``."""
        return (2, *self.hidden_sizes, 1)

    def sample(self, key: jax.Array) -> BurgersTask:
        """Draw ``nu`` log-uniformly from ``viscosity_range``."""
        low, high = self.viscosity_range
        log_nu = _random.uniform(key, (), minval=math.log(low), maxval=math.log(high))
        # clip: exp(log(high)) may round a hair above high
        return BurgersTask(jnp.clip(jnp.exp(log_nu), low, high))

    def init(self, key: jax.Array, task: BurgersTask) -> Any:
        """Draw the MLP parameters of ``u_theta``."""
        del task
        return init_mlp(key, self.layer_sizes, ACTIVATION)

    def apply(self, params: Any, x: jax.Array, t: jax.Array) -> jax.Array:
        """``u_theta(x, t)`` elementwise (``x`` and ``t`` broadcast together)."""
        x, t = jnp.broadcast_arrays(jnp.asarray(x), jnp.asarray(t))
        return apply_mlp(params, jnp.stack([x, t], axis=-1), ACTIVATION)[..., 0]

    @staticmethod
    def initial_condition(x: jax.Array) -> jax.Array:
        """``u(x, 0) = -sin(pi x)``."""
        return -jnp.sin(jnp.pi * x)

    def pde_residual(
        self,
        u_fn: Callable[[jax.Array, jax.Array], jax.Array],
        task: BurgersTask,
        x: jax.Array,
        t: jax.Array,
    ) -> jax.Array:
        """``u_t + u u_x - nu u_xx`` for a scalar function ``u_fn(x, t)``, elementwise."""
        x, t = jnp.broadcast_arrays(jnp.asarray(x), jnp.asarray(t))
        u_and_grad = jax.value_and_grad(u_fn, argnums=(0, 1))
        u_xx_fn = jax.grad(jax.grad(u_fn, argnums=0), argnums=0)

        def residual(xi: jax.Array, ti: jax.Array) -> jax.Array:
            u, (u_x, u_t) = u_and_grad(xi, ti)
            return u_t + u * u_x - task.viscosity * u_xx_fn(xi, ti)

        flat = jax.vmap(residual)(x.reshape(-1), t.reshape(-1))
        return flat.reshape(x.shape)

    def collocation_points(self, key: jax.Array) -> BurgersPoints:
        """The points ``loss`` uses with ``key`` (interior, initial and boundary)."""
        interior, x0, tb = _random.uniforms(
            key, [(2, self.num_collocation), (self.num_initial,), (self.num_boundary,)]
        )
        return BurgersPoints(2.0 * interior[0] - 1.0, interior[1], 2.0 * x0 - 1.0, tb)

    def loss(self, params: Any, task: BurgersTask, key: jax.Array) -> jax.Array:
        """PDE residual, initial-condition and boundary penalties on points drawn with ``key``."""
        x, t, x0, tb = self.collocation_points(key)
        residual = self.pde_residual(lambda xi, ti: self.apply(params, xi, ti), task, x, t)
        initial = self.apply(params, x0, jnp.zeros_like(x0)) - self.initial_condition(x0)

        boundary = jnp.concatenate(
            [self.apply(params, -jnp.ones_like(tb), tb), self.apply(params, jnp.ones_like(tb), tb)]
        )
        return (
            jnp.mean(residual**2)
            + self.initial_weight * jnp.mean(initial**2)
            + self.boundary_weight * jnp.mean(boundary**2)
        )
