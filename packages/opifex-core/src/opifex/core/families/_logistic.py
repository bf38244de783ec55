"""L2-regularised binary logistic regression on random, nearly separable data."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_int_at_least, check_positive
from opifex.core.families import _random
from opifex.core.families._batching import take_minibatch


class LogisticTask(NamedTuple):
    """One data set.

    Attributes:
        inputs: ``X``, shape ``(num_points, dimension)``.
        labels: ``y`` in ``{0, 1}`` (floating point), shape ``(num_points,)``.
    """

    inputs: jax.Array
    labels: jax.Array


@dataclasses.dataclass(frozen=True)
class LogisticRegressionFamily:
    """Binary logistic regression with an L2 penalty on random data.

    Data: a unit direction ``w*`` (uniform on the sphere), inputs ``x_i ~ N(0, I)`` and labels
    ``y_i = 1[x_i . w* + noise_std * eps_i > 0]`` with ``eps_i ~ N(0, 1)``: separable when
    ``noise_std = 0``, nearly so for small ``noise_std``.

    Parameters are ``{"weights": (dimension,), "bias": ()}``; with logits
    ``z_i = x_i . weights + bias`` the loss is::

        mean_i [ log(1 + exp(z_i)) - y_i z_i ] + 0.5 * l2_penalty * ||weights||^2

    (mean log-loss; the bias is not penalised). It is strictly convex when ``l2_penalty > 0``
    and both labels occur. ``init`` draws ``weights ~ N(0, I / dimension)``, ``bias = 0``.

    Args:
        num_points: number of examples (>= 1).
        dimension: number of features (>= 1).
        l2_penalty: ``>= 0``.
        noise_std: label noise (>= 0).
        batch_size: examples per loss evaluation, drawn without replacement with the loss key;
            ``None`` (default) is the full batch and the key is then unused.

    Example:
        >>> import jax
        >>> from opifex.core.families import LogisticRegressionFamily
        >>> family = LogisticRegressionFamily(num_points=64, dimension=5)
        >>> task = family.sample(jax.random.key(0))
        >>> params = family.init(jax.random.key(1), task)
        >>> sorted(params)
        ['bias', 'weights']
        >>> family.loss(params, task, None).shape
        ()
    """

    num_points: int = 100
    dimension: int = 10
    l2_penalty: float = 1e-2
    noise_std: float = 0.1
    batch_size: int | None = None

    def __post_init__(self) -> None:
        check_int_at_least(self.num_points, 1, "num_points")
        check_int_at_least(self.dimension, 1, "dimension")
        check_positive(self.l2_penalty, "l2_penalty", allow_zero=True)
        check_positive(self.noise_std, "noise_std", allow_zero=True)
        if self.batch_size is not None:
            check_int_at_least(self.batch_size, 1, "batch_size")
            if self.batch_size > self.num_points:
                raise ValueError(
                    f"batch_size must be <= num_points={self.num_points}, got {self.batch_size}"
                )

    def sample(self, key: jax.Array) -> LogisticTask:
        """Draw inputs and labels from a random hyperplane."""
        direction, inputs, noise = _random.normals(
            key, [(self.dimension,), (self.num_points, self.dimension), (self.num_points,)]
        )
        direction = direction / jnp.linalg.norm(direction)
        noise = self.noise_std * noise
        labels = (inputs @ direction + noise > 0).astype(inputs.dtype)
        return LogisticTask(inputs, labels)

    def init(self, key: jax.Array, task: LogisticTask) -> dict[str, jax.Array]:
        """Draw ``weights ~ N(0, I / dimension)`` and ``bias = 0``."""
        weights = _random.normal(key, (self.dimension,)) / jnp.sqrt(self.dimension)
        return {"weights": weights, "bias": jnp.zeros((), task.inputs.dtype)}

    def loss(
        self, params: dict[str, jax.Array], task: LogisticTask, key: jax.Array | None
    ) -> jax.Array:
        """Mean log-loss on a minibatch (or all points) plus ``0.5 l2_penalty ||w||^2``."""
        inputs, labels = take_minibatch(key, (task.inputs, task.labels), self.batch_size)
        logits = inputs @ params["weights"] + params["bias"]
        log_loss = jnp.mean(jax.nn.softplus(logits) - labels * logits)
        return log_loss + 0.5 * self.l2_penalty * jnp.sum(params["weights"] ** 2)

    def predict_proba(self, params: dict[str, jax.Array], inputs: jax.Array) -> jax.Array:
        """``P(y = 1 | x) = sigmoid(x . weights + bias)`` for inputs of shape ``(..., dim)``."""
        return jax.nn.sigmoid(inputs @ params["weights"] + params["bias"])
