"""``L2OEngineConfig``: the frozen, validated settings of ``L2OEngine``.

The engine's meta-training settings are ``MetaOptimizerConfig``, which *is*
``MetaTrainConfig`` (an alias, not a copy): ``L2OEngine.meta_train`` hands it to ``meta_train``
with ``num_outer_steps`` replaced by its ``num_meta_epochs``.

``optimizer_factory(config)`` and ``init_phi(config, key)`` turn a config into the learned
optimiser ``phi -> optax.GradientTransformationExtraArgs`` and its initial ``phi``. The factory
is cached per setting, so that engines with equal settings share the compiled runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import optax

from opifex.core import check_choice, check_int_at_least, check_positive
from opifex.core.metatrain import MetaTrainConfig
from opifex.l2o._features import FeatureConfig
from opifex.l2o._learnable import (
    init_learnable_adam_params,
    init_learnable_sgd_params,
    learnable_adam,
    learnable_sgd,
)
from opifex.l2o._lstm import init_lstm_optimizer_params, lstm_optimizer
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer

LEARNED_OPTIMIZERS = ("learnable_adam", "learnable_sgd", "lstm", "mlp")
FALLBACK_OPTIMIZERS = ("adam", "lbfgs")

MetaOptimizerConfig = MetaTrainConfig
"""The meta-training settings of ``L2OEngine``: an alias of ``MetaTrainConfig``."""


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class L2OEngineConfig:
    """Settings of ``L2OEngine`` (frozen and hashable; every field is checked on creation).

    Learned optimiser (fields of the other optimisers are ignored):

    Args:
        optimizer: ``"learnable_adam"`` (Adam whose learning rate, betas and eps are learned),
            ``"learnable_sgd"`` (heavy-ball SGD, learning rate and momentum learned),
            ``"mlp"`` (per-coordinate MLP, ``mlp_optimizer``) or ``"lstm"``
            (coordinate-wise LSTM, ``lstm_optimizer``).
        learning_rate: initial learning rate of ``learnable_adam`` / ``learnable_sgd`` (> 0).
        momentum: initial momentum of ``learnable_sgd``, in ``(0, 1)``.
        hidden_sizes: hidden widths of the ``mlp`` optimiser (a list is stored as a tuple).
        features: the ``mlp`` optimiser's ``FeatureConfig`` (``None``: the default).
        mlp_lr_scale: ``lr_scale`` of ``mlp_optimizer`` (> 0).
        mlp_magnitude_scale: ``magnitude_scale`` of ``mlp_optimizer`` (> 0).
        lstm_hidden_size: hidden units per ``lstm`` layer (>= 1).
        lstm_num_layers: ``lstm`` layers (>= 1).
        lstm_output_scale: ``output_scale`` of ``lstm_optimizer`` (> 0).

    Stopping, detection and fallback (checked after every step, inside ``jit``):

    Args:
        tolerance: converged when the gradient norm is at most this (>= 0).
        divergence_factor: diverged when the loss is non-finite, the gradient is non-finite,
            or the loss exceeds ``f_0 + divergence_factor * max(|f_0|, tiny)`` (``f_0`` the
            starting loss; > 0).
        stall_window: stalled after this many steps in a row (>= 1) without a relative
            improvement of ``stall_tolerance`` over the reference loss (the last loss that
            was such an improvement, initially ``f_0``).
        stall_tolerance: in ``[0, 1)``.
        use_traditional_fallback: when the learned optimiser diverges or stalls, continue with
            ``fallback_optimizer`` from the best parameters seen, for the remaining steps.
        fallback_optimizer: ``"adam"`` (``optax.adam(fallback_learning_rate)``, under the same
            detection) or ``"lbfgs"`` (``opifex.second_order.minimize``, for deterministic
            objectives).
        fallback_learning_rate: Adam's learning rate in the fallback and in
            ``solve_automatically``'s ``"adam"`` (> 0).

    Warm starts (``L2OEngine.solve_with_meta_learning``):

    Args:
        warm_start_size: solved problems kept (>= 1; the oldest is dropped first).
        similarity_threshold: a stored solution is used when its descriptor is within this
            Euclidean distance of the new problem's (>= 0).

    Raises:
        TypeError / ValueError: a field of the wrong type or out of range, naming it.

    Example:
        >>> config = L2OEngineConfig(optimizer="learnable_sgd", fallback_optimizer="lbfgs")
        >>> config.use_traditional_fallback, hash(config) == hash(L2OEngineConfig(**vars(config)))
        (True, True)
    """

    optimizer: str = "learnable_adam"
    learning_rate: float = 1e-2
    momentum: float = 0.9
    hidden_sizes: tuple[int, ...] = (32, 32)
    features: FeatureConfig | None = None
    mlp_lr_scale: float = 1e-3
    mlp_magnitude_scale: float = 1e-3
    lstm_hidden_size: int = 20
    lstm_num_layers: int = 2
    lstm_output_scale: float = 0.1
    tolerance: float = 1e-6
    divergence_factor: float = 1e3
    stall_window: int = 100
    stall_tolerance: float = 1e-3
    use_traditional_fallback: bool = True
    fallback_optimizer: str = "adam"
    fallback_learning_rate: float = 1e-2
    warm_start_size: int = 64
    similarity_threshold: float = 1.0

    def __post_init__(self) -> None:
        for name in ("optimizer", "fallback_optimizer"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        check_choice(self.optimizer, LEARNED_OPTIMIZERS, "optimizer")
        check_choice(self.fallback_optimizer, FALLBACK_OPTIMIZERS, "fallback_optimizer")
        for name in (
            "learning_rate",
            "mlp_lr_scale",
            "mlp_magnitude_scale",
            "lstm_output_scale",
            "divergence_factor",
            "fallback_learning_rate",
        ):
            check_positive(getattr(self, name), name)
        for name in ("tolerance", "similarity_threshold"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_positive(self.momentum, "momentum")
        if self.momentum >= 1:
            raise ValueError(f"momentum must lie in (0, 1), got {self.momentum!r}")
        check_positive(self.stall_tolerance, "stall_tolerance", allow_zero=True)
        if self.stall_tolerance >= 1:
            raise ValueError(f"stall_tolerance must lie in [0, 1), got {self.stall_tolerance!r}")
        if isinstance(self.hidden_sizes, str) or not isinstance(self.hidden_sizes, tuple | list):
            raise TypeError(f"hidden_sizes must be a tuple of ints, got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for i, size in enumerate(self.hidden_sizes):
            check_int_at_least(size, 1, f"hidden_sizes[{i}]")
        if self.features is not None and not isinstance(self.features, FeatureConfig):
            raise TypeError(
                f"features must be a FeatureConfig or None, got {type(self.features).__name__}"
            )
        for name in ("lstm_hidden_size", "lstm_num_layers", "stall_window", "warm_start_size"):
            check_int_at_least(getattr(self, name), 1, name)
        _check_bool(self.use_traditional_fallback, "use_traditional_fallback")

    @property
    def untrained_is_meaningful(self) -> bool:
        """Whether the initial ``phi`` is a hand-set optimiser (learnable Adam / SGD).

        The initial ``phi`` of ``"mlp"`` and ``"lstm"`` is random: an optimiser only after
        meta-training.
        """
        return self.optimizer in ("learnable_adam", "learnable_sgd")


@functools.lru_cache(maxsize=32)
def _factory(name: str, options: tuple) -> Callable[[Any], optax.GradientTransformationExtraArgs]:
    if name == "mlp":
        features, lr_scale, magnitude_scale = options
        return functools.partial(
            mlp_optimizer, features=features, lr_scale=lr_scale, magnitude_scale=magnitude_scale
        )
    if name == "lstm":
        return functools.partial(lstm_optimizer, output_scale=options[0])
    return learnable_adam if name == "learnable_adam" else learnable_sgd


def optimizer_factory(
    config: L2OEngineConfig,
) -> Callable[[Any], optax.GradientTransformationExtraArgs]:
    """``phi -> optimiser`` for ``config.optimizer`` (one object per setting: a stable jit key).

    Example:
        >>> factory = optimizer_factory(L2OEngineConfig(optimizer="learnable_sgd"))
        >>> factory is optimizer_factory(L2OEngineConfig(optimizer="learnable_sgd", tolerance=0.1))
        True
    """
    if config.optimizer == "mlp":
        options = (config.features, config.mlp_lr_scale, config.mlp_magnitude_scale)
    elif config.optimizer == "lstm":
        options = (config.lstm_output_scale,)
    else:
        options = ()
    return _factory(config.optimizer, options)


def init_phi(config: L2OEngineConfig, key: jax.Array) -> Any:
    """The initial ``phi`` of ``config.optimizer`` (``key`` is used by ``mlp`` / ``lstm`` only).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> phi = init_phi(L2OEngineConfig(learning_rate=0.1), jax.random.key(0))
        >>> round(float(jnp.exp(phi["log_learning_rate"])), 6)
        0.1
    """
    if config.optimizer == "mlp":
        return init_mlp_optimizer_params(
            key, features=config.features, hidden_sizes=config.hidden_sizes
        )
    if config.optimizer == "lstm":
        return init_lstm_optimizer_params(
            key, hidden_size=config.lstm_hidden_size, num_layers=config.lstm_num_layers
        )
    if config.optimizer == "learnable_adam":
        return init_learnable_adam_params(config.learning_rate)
    return init_learnable_sgd_params(config.learning_rate, config.momentum)
