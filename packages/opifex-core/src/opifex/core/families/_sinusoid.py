"""Sinusoid regression, the few-shot meta-learning benchmark of MAML."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_int_at_least
from opifex.core.families import _random
from opifex.core.families._networks import apply_mlp, init_mlp
from opifex.core.families._validation import check_interval, check_sizes, set_field

ACTIVATION = "relu"


class SinusoidTask(NamedTuple):
    """One sinusoid ``y = amplitude * sin(x - phase)``.

    Attributes:
        amplitude: 0-d.
        phase: 0-d.
    """

    amplitude: jax.Array
    phase: jax.Array


@dataclasses.dataclass(frozen=True)
class SinusoidFamily:
    """Regress ``y = A sin(x - phase)`` from a few points (Finn et al., 2017, MAML).

    A task draws ``A ~ U[amplitude_range]`` (default ``[0.1, 5]``) and
    ``phase ~ U[phase_range]`` (default ``[0, pi]``). The model is a ReLU MLP
    ``1 -> hidden_sizes -> 1`` (default ``1-40-40-1``) with parameters
    ``{"weights": [...], "biases": [...]}`` (He-normal weights, zero biases). ``loss`` draws
    ``num_points`` inputs ``x ~ U[input_range]`` (default ``[-5, 5]``) with its key and returns
    the mean squared error there. Inputs and outputs have shape ``(n, 1)``.

    For MAML-style use, ``support_query`` draws a support and a query set of one task and
    ``mse`` evaluates the network on a given set.

    Args:
        num_points: points per loss evaluation (>= 1), e.g. ``K`` of K-shot regression.
        hidden_sizes: hidden layer widths (ints >= 1; may be empty for a linear model).
        amplitude_range: ``(low, high)`` for the amplitude ``A``.
        phase_range: ``(low, high)`` for the phase.
        input_range: ``(low, high)`` for the inputs ``x``.

    Example:
        >>> import jax
        >>> from opifex.core.families import SinusoidFamily
        >>> family = SinusoidFamily(num_points=10)
        >>> task = family.sample(jax.random.key(0))
        >>> params = family.init(jax.random.key(1), task)
        >>> [w.shape for w in params["weights"]]
        [(1, 40), (40, 40), (40, 1)]
        >>> x_s, y_s, x_q, y_q = family.support_query(jax.random.key(2), task, 5, 20)
        >>> x_s.shape, y_q.shape
        ((5, 1), (20, 1))
        >>> family.loss(params, task, jax.random.key(3)).shape
        ()
    """

    num_points: int = 10
    hidden_sizes: tuple[int, ...] = (40, 40)
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    input_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self) -> None:
        check_int_at_least(self.num_points, 1, "num_points")
        set_field(
            self, "hidden_sizes", check_sizes(self.hidden_sizes, "hidden_sizes", min_length=0)
        )
        set_field(
            self,
            "amplitude_range",
            check_interval(self.amplitude_range, "amplitude_range", lower=0.0),
        )
        set_field(self, "phase_range", check_interval(self.phase_range, "phase_range"))
        set_field(self, "input_range", check_interval(self.input_range, "input_range"))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(1, *hidden_sizes, 1)``."""
        return (1, *self.hidden_sizes, 1)

    def sample(self, key: jax.Array) -> SinusoidTask:
        """Draw an amplitude and a phase."""
        u_amplitude, u_phase = _random.uniforms(key, [(), ()])
        low, high = self.amplitude_range
        amplitude = low + (high - low) * u_amplitude
        low, high = self.phase_range
        return SinusoidTask(amplitude, low + (high - low) * u_phase)

    def init(self, key: jax.Array, task: SinusoidTask) -> Any:
        """Draw MLP parameters (He-normal weights, zero biases)."""
        del task
        return init_mlp(key, self.layer_sizes, ACTIVATION)

    def target(self, task: SinusoidTask, inputs: jax.Array) -> jax.Array:
        """``amplitude * sin(inputs - phase)`` (elementwise)."""
        return task.amplitude * jnp.sin(inputs - task.phase)

    def apply(self, params: Any, inputs: jax.Array) -> jax.Array:
        """The network on inputs of shape ``(..., 1)``."""
        return apply_mlp(params, inputs, ACTIVATION)

    def sample_points(
        self, key: jax.Array, task: SinusoidTask, num_points: int | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(x, y)`` of shape ``(num_points, 1)`` each, ``x ~ U[input_range]``."""
        n = self.num_points if num_points is None else num_points
        check_int_at_least(n, 1, "num_points")
        low, high = self.input_range
        inputs = _random.uniform(key, (n, 1), minval=low, maxval=high)
        return inputs, self.target(task, inputs)

    def support_query(
        self,
        key: jax.Array,
        task: SinusoidTask,
        num_support: int | None = None,
        num_query: int | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Independent support and query sets: ``(x_support, y_support, x_query, y_query)``.

        Sizes default to ``num_points`` each.
        """
        num_support = self.num_points if num_support is None else num_support
        num_query = self.num_points if num_query is None else num_query
        check_int_at_least(num_support, 1, "num_support")
        check_int_at_least(num_query, 1, "num_query")
        inputs, _ = self.sample_points(key, task, num_support + num_query)
        x_support, x_query = inputs[:num_support], inputs[num_support:]
        return x_support, self.target(task, x_support), x_query, self.target(task, x_query)

    def mse(self, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean squared error of the network on ``(inputs, targets)``."""
        return jnp.mean((self.apply(params, inputs) - targets) ** 2)

    def loss(self, params: Any, task: SinusoidTask, key: jax.Array) -> jax.Array:
        """MSE on ``num_points`` points drawn with ``key``."""
        inputs, targets = self.sample_points(key, task)
        return self.mse(params, inputs, targets)
