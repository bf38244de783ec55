"""The record of a meta-training run: its state, history and result, and its checkpoints.

A checkpoint is one ``opifex.core.save_pytree`` file holding ``{"state": MetaTrainState,
"history": MetaTrainHistory}`` (the history at full length, padded with NaN / -1), with the
run's ``MetaTrainConfig`` and ``Curriculum`` as metadata. ``load_checkpoint`` refuses a
file written with other settings or keys, so that a resumed run is the run it continues.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import jax
import numpy as np

from opifex.core._checkpoint import load_metadata, load_pytree, save_pytree
from opifex.core.metatrain._curriculum import Curriculum
from opifex.core.metatrain._meta_config import MetaTrainConfig


class MetaTrainHistory(NamedTuple):
    """Per-step and per-validation records of a meta-training run.

    Attributes:
        meta_loss: mean truncation meta-loss of each outer step over its finite tasks
            (NaN when none was finite).
        grad_norm: global norm of each step's meta-gradient before clipping.
        horizon: the training horizon of each step.
        skipped: whether each step was skipped (non-finite meta-gradient).
        nonfinite_tasks: tasks reset for a non-finite loss at each step.
        validation_step: the outer step of each validation (0: before training).
        validation_metric: the validation metric of each validation.
    """

    meta_loss: np.ndarray
    grad_norm: np.ndarray
    horizon: np.ndarray
    skipped: np.ndarray
    nonfinite_tasks: np.ndarray
    validation_step: np.ndarray
    validation_metric: np.ndarray

    @property
    def num_skipped_steps(self) -> int:
        """Outer steps skipped for a non-finite meta-gradient."""
        return int(np.sum(self.skipped))

    @property
    def num_nonfinite_resets(self) -> int:
        """Task unrolls reset for a non-finite loss or meta-gradient."""
        return int(np.sum(self.nonfinite_tasks))


class MetaTrainState(NamedTuple):
    """Everything a checkpoint holds besides the history.

    Attributes:
        step: outer steps done.
        phi: the current meta-parameters.
        outer_state: the outer optimiser's state.
        estimator_state: the estimator's persistent unrolls (sharded along ``"tasks"``).
        best_phi: the meta-parameters of the best validation so far.
        best_metric: the best validation metric so far (``inf`` before any).
        bad_validations: validations in a row without a new best (reset at promotion).
        num_validations: validations done.
        stopped_early: whether the patience ran out.
        key: the run's key.
        validation_key: the key of the validation tasks.
    """

    step: int
    phi: Any
    outer_state: Any
    estimator_state: Any
    best_phi: Any
    best_metric: float
    bad_validations: int
    num_validations: int
    stopped_early: bool
    key: jax.Array
    validation_key: jax.Array


class MetaTrainResult(NamedTuple):
    """What ``meta_train`` returns.

    Attributes:
        phi: the meta-parameters after the last outer step.
        best_phi: the meta-parameters with the best validation metric.
        history: the ``MetaTrainHistory`` of the steps and validations done.
        state: the final ``MetaTrainState``.
    """

    phi: Any
    best_phi: Any
    history: MetaTrainHistory
    state: MetaTrainState


def empty_history(config: MetaTrainConfig) -> MetaTrainHistory:
    """A full-length history for ``config``: NaN / -1 / 0 until recorded."""
    steps, validations = config.num_outer_steps, config.num_outer_steps // config.validation_every
    return MetaTrainHistory(
        meta_loss=np.full(steps, np.nan),
        grad_norm=np.full(steps, np.nan),
        horizon=np.zeros(steps, np.int64),
        skipped=np.zeros(steps, bool),
        nonfinite_tasks=np.zeros(steps, np.int64),
        validation_step=np.full(validations + 1, -1, np.int64),
        validation_metric=np.full(validations + 1, np.nan),
    )


def trim_history(history: MetaTrainHistory, state: MetaTrainState) -> MetaTrainHistory:
    """The records of the steps and validations done by ``state`` (copies)."""
    steps = [np.array(x[: state.step]) for x in history[:5]]
    validations = [np.array(x[: state.num_validations]) for x in history[5:]]
    return MetaTrainHistory(*steps, *validations)


def checkpoint_metadata(config: MetaTrainConfig, curriculum: Curriculum | None) -> dict[str, Any]:
    """The JSON metadata of a checkpoint: the settings a resumed run must share."""
    as_json = {
        "config": dataclasses.asdict(config),
        "curriculum": None if curriculum is None else dataclasses.asdict(curriculum),
    }
    return json.loads(json.dumps(as_json))


def save_checkpoint(
    path: Any, state: MetaTrainState, history: MetaTrainHistory, metadata: dict[str, Any]
) -> None:
    """Write ``state`` and ``history`` atomically to ``path``."""
    save_pytree(path, {"state": state, "history": history}, metadata=metadata)


def _key_bits(key: jax.Array) -> np.ndarray:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def load_checkpoint(
    path: Any, like_state: MetaTrainState, like_history: MetaTrainHistory, metadata: dict[str, Any]
) -> tuple[MetaTrainState, MetaTrainHistory]:
    """Read the checkpoint at ``path``, structured (and sharded) like the fresh ``like_*``.

    Raises:
        ValueError: the checkpoint was written with other ``metadata`` (config, curriculum)
            or other keys than ``like_state``'s, or is corrupt.
    """
    saved = load_metadata(path)
    for field in ("config", "curriculum"):
        if saved.get(field) != metadata[field]:
            raise ValueError(
                f"checkpoint {path!r} was written with a different {field}: "
                f"{saved.get(field)} (now {metadata[field]}); use another checkpoint_path "
                "or the same settings"
            )
    tree = load_pytree(path, like={"state": like_state, "history": like_history})
    state, history = tree["state"], MetaTrainHistory(*tree["history"])
    for name in ("key", "validation_key"):
        if not np.array_equal(
            _key_bits(getattr(state, name)), _key_bits(getattr(like_state, name))
        ):
            raise ValueError(f"checkpoint {path!r} was written with a different {name}")
    return state, history
