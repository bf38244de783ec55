"""``MetaTrainConfig``: the frozen, validated settings of ``meta_train``."""

from __future__ import annotations

import dataclasses

from opifex.core._checks import check_choice, check_int_at_least, check_positive
from opifex.core.metatrain._unroll import META_LOSSES

TRUNCATED_ESTIMATORS = ("truncated_bptt", "pes", "truncated_es")
WHOLE_UNROLL_ESTIMATORS = ("full_backprop", "first_order", "reptile")
OUTER_OPTIMIZERS = ("adam", "sgd")
ESTIMATORS = TRUNCATED_ESTIMATORS + WHOLE_UNROLL_ESTIMATORS
VALIDATION_METRICS = ("final_loss", "mean_loss")


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """Settings of ``meta_train`` (frozen and hashable; every field is checked on creation).

    Args:
        estimator: the meta-gradient estimator. Truncated, over persistent unrolls:
            ``"truncated_bptt"`` (``truncated_bptt``), ``"pes"`` (``pes``) or
            ``"truncated_es"`` (``truncated_es``); over a whole fresh unroll per outer step:
            ``"full_backprop"`` (``full_backprop``), ``"first_order"`` (``first_order``) or
            ``"reptile"`` (``reptile``).
        num_tasks: tasks in the meta-batch (>= 1); divisible by the number of devices.
        truncation_length: ``K``, inner steps per truncation (one outer step), ``<= horizon``;
            used by the truncated estimators only (the whole-unroll ones run ``horizon``
            steps per outer step).
        horizon: ``T``, the inner steps of an unroll; also the length of the validation
            unrolls. With a ``Curriculum`` the training horizon follows the curriculum
            (each of its horizons ``<= horizon``).
        num_outer_steps: outer (meta-parameter) updates (>= 1).
        outer_learning_rate: the outer optimiser's learning rate on ``phi`` (> 0).
        outer_optimizer: ``"adam"`` or ``"sgd"`` (plain steps; Reptile's original outer
            update, ``phi += outer_learning_rate * (theta_T - phi)``).
        weight_decay: decoupled weight decay on ``phi`` (>= 0; Adam becomes AdamW): an L2
            regularisation of the meta-parameters.
        meta_loss: what a truncation minimises (``truncation_meta_loss``): ``"mean"`` (the mean
            of its per-step losses), ``"log_mean"`` (the mean of their logs, so that every
            task counts by its relative progress; for positive losses) or ``"final_query"``
            (the loss on a query draw after the unroll's last step, MAML's meta-loss; needs
            ``validation_metric="final_loss"``, which is then measured on the query draw
            too). Otherwise validation uses the plain losses (``validation_metric``).
        clip_norm: the meta-gradient is clipped to this global norm before Adam (> 0), or
            ``None`` for no clipping.
        pes_sigma: standard deviation of the perturbations of ``"pes"`` and
            ``"truncated_es"`` (> 0).
        num_particles: particles per task of ``"pes"`` / ``"truncated_es"`` (even, >= 2).
        validation_every: validate every this many outer steps (>= 1), and once before the
            first.
        num_validation_tasks: held-out tasks, drawn once from a fixed key (>= 1).
        validation_metric: ``"final_loss"`` (mean over the validation tasks of the loss after
            the last of ``horizon`` steps) or ``"mean_loss"`` (mean over tasks and steps).
        patience: stop after this many validations in a row without a new best (>= 1), or
            ``None`` to never stop early.
        checkpoint_every: save a checkpoint every this many outer steps (>= 1; needs a
            ``checkpoint_path``), or ``None`` to save only at the end and on interruption.

    Raises:
        TypeError / ValueError: a field of the wrong type or out of range, naming it.

    Example:
        >>> config = MetaTrainConfig(estimator="pes", num_tasks=4, truncation_length=5,
        ...                          horizon=20, num_particles=8)
        >>> config.estimator, hash(config) == hash(MetaTrainConfig(**vars(config)))
        ('pes', True)
    """

    estimator: str = "pes"
    num_tasks: int = 8
    truncation_length: int = 10
    horizon: int = 100
    num_outer_steps: int = 1000
    outer_learning_rate: float = 1e-3
    outer_optimizer: str = "adam"
    weight_decay: float = 0.0
    meta_loss: str = "mean"
    clip_norm: float | None = 1.0
    pes_sigma: float = 0.01
    num_particles: int = 2
    validation_every: int = 50
    num_validation_tasks: int = 16
    validation_metric: str = "mean_loss"
    patience: int | None = None
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("estimator", "validation_metric", "meta_loss", "outer_optimizer"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        check_choice(self.estimator, ESTIMATORS, "estimator")
        check_choice(self.validation_metric, VALIDATION_METRICS, "validation_metric")
        check_choice(self.meta_loss, META_LOSSES, "meta_loss")
        check_choice(self.outer_optimizer, OUTER_OPTIMIZERS, "outer_optimizer")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        if self.meta_loss == "final_query" and self.validation_metric != "final_loss":
            raise ValueError(
                'meta_loss="final_query" needs validation_metric="final_loss" (the query loss '
                f"after the last step), got validation_metric={self.validation_metric!r}"
            )
        for name in ("num_tasks", "truncation_length", "horizon", "num_outer_steps"):
            check_int_at_least(getattr(self, name), 1, name)
        for name in ("validation_every", "num_validation_tasks"):
            check_int_at_least(getattr(self, name), 1, name)
        if self.estimator in TRUNCATED_ESTIMATORS and self.truncation_length > self.horizon:
            raise ValueError(
                f"truncation_length ({self.truncation_length}) must be <= horizon ({self.horizon})"
            )
        check_positive(self.outer_learning_rate, "outer_learning_rate")
        check_positive(self.pes_sigma, "pes_sigma")
        if self.clip_norm is not None:
            check_positive(self.clip_norm, "clip_norm")
        check_int_at_least(self.num_particles, 2, "num_particles")
        if self.num_particles % 2:
            raise ValueError(f"num_particles must be even, got {self.num_particles}")
        for name in ("patience", "checkpoint_every"):
            if getattr(self, name) is not None:
                check_int_at_least(getattr(self, name), 1, name)
