"""``meta_train``: fit the meta-parameters ``phi`` of an ``InnerLoop`` to a task family.

``phi`` builds the inner loop's start and its update rule (``InnerLoop``): the weights of a
learned optimiser (``LearnedOptimizer``), MAML's initialisation (``LearnedInit``), ... Each
outer step advances every task of the meta-batch by one truncation (or, for the whole-unroll
estimators, runs a fresh unroll of the whole horizon) and asks the estimator
(``MetaTrainConfig.estimator``) for a meta-gradient, which is clipped to a global norm and
applied to ``phi`` by Adam. Around this loop:

* **Non-finite values.** A task whose truncation gives a non-finite loss or meta-gradient is
  left out of the meta-gradient and its unroll is reset (a new task and new parameters); an
  outer step whose meta-gradient is non-finite anyway (every task failed) is skipped, leaving
  ``phi`` and Adam's state unchanged. Both are counted per step in ``MetaTrainHistory``
  (``nonfinite_tasks``, ``skipped``) and logged as warnings.
* **Validation** on ``num_validation_tasks`` held-out tasks (drawn once from a fixed key):
  fresh unrolls of ``horizon`` steps with the current ``phi``, before the first step and
  every ``validation_every`` steps. The best ``phi`` so far is kept (``best_phi``);
  ``patience`` validations in a row without a new best stop training early.
* **Curriculum** (optional ``Curriculum``): the training horizon grows stage by stage;
  promotion resets the patience count.
* **Checkpoints** (optional ``checkpoint_path``): the whole training state (``phi``, Adam's
  state, every persistent unroll, the history, the early-stopping counters and the keys) is
  saved with ``opifex.core.save_pytree`` every ``checkpoint_every`` steps, at the end, and on
  ``KeyboardInterrupt``. Calling ``meta_train`` again with the same arguments resumes from it,
  and reproduces the ``phi`` of an uninterrupted run exactly: each outer step's randomness is
  ``fold_in`` of the key and the step number.
* **Sharding.** The meta-batch is sharded over ``devices`` (default: all) along a 1-D mesh
  axis ``"tasks"`` (``NamedSharding``); ``phi`` and Adam's state are replicated. The results
  match a single-device run up to the order of floating-point reductions.
* **Progress** as a ``tqdm`` bar showing the meta-loss (``progress=False`` hides it), and
  ``logging`` (logger ``opifex.core.metatrain._meta_train``).

Keys: the estimator's initial state uses ``fold_in(key, 0)``, outer step ``s`` uses
``fold_in(fold_in(key, 1), s)`` and the validation tasks ``fold_in(key, 2)`` unless a
``validation_key`` is given.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from opifex.core._checks import check_finite, check_float_pytree
from opifex.core._tree import tree_where
from opifex.core.metatrain._curriculum import Curriculum
from opifex.core.metatrain._estimator import MetaGradientEstimator, all_finite
from opifex.core.metatrain._inner import InnerLoop, check_inner
from opifex.core.metatrain._meta_config import (
    TRUNCATED_ESTIMATORS,
    WHOLE_UNROLL_ESTIMATORS,
    MetaTrainConfig,
)
from opifex.core.metatrain._meta_state import (
    MetaTrainHistory,
    MetaTrainResult,
    MetaTrainState,
    checkpoint_metadata,
    empty_history,
    load_checkpoint,
    save_checkpoint,
    trim_history,
)
from opifex.core.metatrain._pes import pes
from opifex.core.metatrain._truncated_bptt import truncated_bptt
from opifex.core.metatrain._truncated_es import truncated_es
from opifex.core.metatrain._unroll import init_unroll, unroll
from opifex.core.metatrain._whole_unroll import first_order, full_backprop

logger = logging.getLogger(__name__)

TASK_AXIS = "tasks"


class _Programs(NamedTuple):
    """The outer optimiser and the jitted functions of a run (shared by runs of one setup)."""

    outer: optax.GradientTransformation
    init: Callable[..., Any]  # (key, phi, horizon) -> estimator state
    step: Callable[..., tuple]  # (phi, outer_state, est_state, key, index, horizon) -> ...
    validate: Callable[..., jax.Array]  # (phi, key) -> metric


def estimator_from_config(inner: InnerLoop, config: MetaTrainConfig) -> MetaGradientEstimator:
    """The ``MetaGradientEstimator`` that ``config.estimator`` names, with ``config``'s settings.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedInit, MetaTrainConfig
        >>> config = MetaTrainConfig(estimator="first_order", horizon=5, meta_loss="final_query",
        ...                          validation_metric="final_loss")
        >>> estimator = estimator_from_config(
        ...     LearnedInit(QuadraticFamily(dimension=3), optax.sgd(0.1)), config)
        >>> estimator.init(jax.random.key(0), jnp.zeros(3), 2, 5).params.shape  # 2 tasks
        (2, 3)
    """
    meta_loss = config.meta_loss
    if config.estimator in WHOLE_UNROLL_ESTIMATORS:
        build = full_backprop if config.estimator == "full_backprop" else first_order
        return build(inner, config.horizon, meta_loss=meta_loss)
    K = config.truncation_length
    if config.estimator == "truncated_bptt":
        return truncated_bptt(inner, K, meta_loss=meta_loss)
    build = pes if config.estimator == "pes" else truncated_es
    return build(
        inner, K, sigma=config.pes_sigma, num_particles=config.num_particles, meta_loss=meta_loss
    )


def _build_programs(
    inner: InnerLoop,
    config: MetaTrainConfig,
    tasks: NamedSharding,
    replicated: NamedSharding,
) -> _Programs:
    estimator = estimator_from_config(inner, config)
    outer = optax.adam(config.outer_learning_rate)
    if config.clip_norm is not None:
        outer = optax.chain(optax.clip_by_global_norm(config.clip_norm), outer)

    def init(key: jax.Array, phi: Any, horizon: Any) -> Any:
        return estimator.init(key, phi, config.num_tasks, horizon)

    def step(
        phi: Any, outer_state: Any, est_state: Any, key: Any, index: Any, horizon: Any
    ) -> tuple:
        grad, est_state, info = estimator.estimate(
            jax.random.fold_in(key, index), phi, est_state, horizon
        )
        finite = all_finite(grad)
        updates, new_outer_state = outer.update(grad, outer_state, phi)
        phi = tree_where(finite, optax.apply_updates(phi, updates), phi)
        outer_state = tree_where(finite, new_outer_state, outer_state)
        stats = (info.meta_loss, optax.tree.norm(grad), ~finite, jnp.sum(info.nonfinite))
        return phi, outer_state, est_state, stats

    query = config.meta_loss == "final_query"

    def validate(phi: Any, key: jax.Array) -> jax.Array:
        def losses(task_key: jax.Array) -> jax.Array:
            init_key, run_key = jax.random.split(task_key)
            start = init_unroll(init_key, phi, inner)
            kwargs = {"num_steps": config.horizon, "horizon": config.horizon, "query": query}
            _, output = unroll(run_key, phi, start, inner=inner, **kwargs)
            return output.query_losses if query else output.losses

        curves = jax.vmap(losses)(jax.random.split(key, config.num_validation_tasks))
        return curves[:, -1].mean() if config.validation_metric == "final_loss" else curves.mean()

    return _Programs(
        outer,
        jax.jit(init, out_shardings=tasks),
        jax.jit(step, out_shardings=(replicated, replicated, tasks, replicated)),
        jax.jit(validate),
    )


_cached_programs = functools.lru_cache(maxsize=8)(_build_programs)


def _programs(
    inner: InnerLoop,
    config: MetaTrainConfig,
    tasks: NamedSharding,
    replicated: NamedSharding,
) -> _Programs:
    """``_build_programs``, cached when ``inner`` is hashable.

    Runs that differ only in length, validation frequency, patience or checkpointing share
    the jitted functions, hence their compilations.
    """
    config = dataclasses.replace(
        config, num_outer_steps=1, validation_every=1, patience=None, checkpoint_every=None
    )
    try:
        hash(inner)
    except TypeError:
        return _build_programs(inner, config, tasks, replicated)
    return _cached_programs(inner, config, tasks, replicated)


def _shardings(devices: Sequence[Any] | None, num_tasks: int) -> tuple[Any, Any]:
    """``(tasks, replicated)`` shardings over a 1-D mesh of ``devices``."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    if num_tasks % len(devices):
        raise ValueError(
            f"num_tasks ({num_tasks}) must be divisible by the number of devices "
            f"({len(devices)}): the task batch is split evenly across them"
        )
    mesh = Mesh(np.asarray(devices), (TASK_AXIS,))
    return NamedSharding(mesh, PartitionSpec(TASK_AXIS)), NamedSharding(mesh, PartitionSpec())


def _check_args(
    phi: Any,
    inner: Any,
    config: Any,
    curriculum: Any,
    checkpoint_path: Any,
    callback: Any,
) -> None:
    if not isinstance(config, MetaTrainConfig):
        raise TypeError(f"config must be a MetaTrainConfig, got {type(config).__name__}")
    check_inner(inner)
    check_float_pytree(phi, "phi")
    check_finite(phi, "phi")
    inner.optimizer(phi)  # raises if phi does not fit the optimiser
    if curriculum is not None:
        if not isinstance(curriculum, Curriculum):
            raise TypeError(
                f"curriculum must be a Curriculum or None, got {type(curriculum).__name__}"
            )
        truncated = config.estimator in TRUNCATED_ESTIMATORS
        low = config.truncation_length if truncated else 1
        bad = [h for h in curriculum.horizons if not low <= h <= config.horizon]
        if bad:
            raise ValueError(
                f"curriculum horizons must lie in [{'truncation_length' if truncated else 1}, "
                f"horizon] = [{low}, {config.horizon}], got {bad}"
            )
    if checkpoint_path is not None and not isinstance(checkpoint_path, str | os.PathLike):
        raise TypeError(f"checkpoint_path must be a path, got {type(checkpoint_path).__name__}")
    if config.checkpoint_every is not None and checkpoint_path is None:
        raise ValueError("config.checkpoint_every needs a checkpoint_path")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")


def _record(history: MetaTrainHistory, step: int, horizon: int, stats: tuple) -> dict[str, float]:
    """Write outer step ``step``'s statistics into ``history``; log failures; return them."""
    meta_loss, grad_norm, skipped, nonfinite = (x.item() for x in jax.device_get(stats))
    history.meta_loss[step], history.grad_norm[step] = meta_loss, grad_norm
    history.horizon[step], history.skipped[step] = horizon, skipped
    history.nonfinite_tasks[step] = nonfinite
    if nonfinite:
        logger.warning("step %d: %d task(s) non-finite, reset", step + 1, nonfinite)
    if skipped:
        logger.warning("step %d: non-finite meta-gradient, step skipped", step + 1)
    return {
        "meta_loss": meta_loss,
        "grad_norm": grad_norm,
        "skipped": float(skipped),
        "nonfinite_tasks": float(nonfinite),
        "horizon": float(horizon),
    }


def _after_validation(state: MetaTrainState, metric: float, patience: int | None) -> MetaTrainState:
    """Keep the best ``phi`` (a NaN metric never improves) and count towards the patience."""
    improved = metric < state.best_metric
    bad = 0 if improved else state.bad_validations + 1
    return state._replace(
        best_phi=state.phi if improved else state.best_phi,
        best_metric=metric if improved else state.best_metric,
        bad_validations=bad,
        num_validations=state.num_validations + 1,
        stopped_early=patience is not None and bad >= patience,
    )


def meta_train(
    key: jax.Array,
    phi: Any,
    inner: InnerLoop,
    config: MetaTrainConfig,
    *,
    curriculum: Curriculum | None = None,
    validation_key: jax.Array | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    devices: Sequence[Any] | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> MetaTrainResult:
    """Meta-train ``phi`` for ``inner`` (see the module docstring for the whole procedure).

    Args:
        key: the run's ``jax.random`` key.
        phi: the initial meta-parameters (a pytree of floating-point arrays).
        inner: the ``InnerLoop`` that ``phi`` builds (``LearnedOptimizer``, ``LearnedInit``,
            ...), with its ``TaskFamily``.
        config: a ``MetaTrainConfig``.
        curriculum: an optional ``Curriculum`` of training horizons.
        validation_key: the key of the held-out tasks (default ``fold_in(key, 2)``).
        checkpoint_path: where to save checkpoints; if a checkpoint is there, training
            resumes from it (its config, curriculum and keys must match, and ``phi`` only
            gives the structure).
        devices: the devices to shard the task batch over (default ``jax.devices()``);
            ``config.num_tasks`` must be divisible by their number.
        progress: show a ``tqdm`` progress bar.
        callback: called as ``callback(step, metrics)`` after each outer step, with
            ``metrics`` holding ``meta_loss``, ``grad_norm``, ``skipped``,
            ``nonfinite_tasks``, ``horizon`` and, at a validation, ``validation_metric``.

    Returns:
        A ``MetaTrainResult``.

    Raises:
        TypeError / ValueError: a bad argument, a device count that does not divide
            ``num_tasks``, or a checkpoint written with other settings.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.core.metatrain import LearnedOptimizer
        >>> inner = LearnedOptimizer(QuadraticFamily(dimension=3),
        ...                          lambda phi: optax.sgd(jnp.exp(phi["log_lr"])))
        >>> config = MetaTrainConfig(estimator="truncated_bptt", num_tasks=4,
        ...     truncation_length=5, horizon=20, num_outer_steps=20, outer_learning_rate=0.1,
        ...     validation_every=10, num_validation_tasks=4)
        >>> result = meta_train(jax.random.key(0), {"log_lr": jnp.log(1e-3)}, inner, config,
        ...                     progress=False)
        >>> metric = result.history.validation_metric
        >>> bool(metric[-1] < metric[0])  # a larger learning rate was learned
        True
    """
    _check_args(phi, inner, config, curriculum, checkpoint_path, callback)
    metadata = checkpoint_metadata(config, curriculum)
    if curriculum is None:
        curriculum = Curriculum((config.horizon,), steps_per_stage=config.num_outer_steps)
    tasks, replicated = _shardings(devices, config.num_tasks)
    programs = _programs(inner, config, tasks, replicated)
    step_key = jax.random.fold_in(key, 1)
    phi = jax.device_put(phi, replicated)
    state = MetaTrainState(
        step=0,
        phi=phi,
        outer_state=jax.device_put(programs.outer.init(phi), replicated),
        estimator_state=programs.init(jax.random.fold_in(key, 0), phi, curriculum.horizon_at(0)),
        best_phi=phi,
        best_metric=float("inf"),
        bad_validations=0,
        num_validations=0,
        stopped_early=False,
        key=key,
        validation_key=jax.random.fold_in(key, 2) if validation_key is None else validation_key,
    )
    history = empty_history(config)
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state, history = load_checkpoint(checkpoint_path, state, history, metadata)
        logger.info("resuming meta-training from %s at step %d", checkpoint_path, state.step)

    def save() -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, state, history, metadata)

    def validate(state: MetaTrainState) -> MetaTrainState:
        metric = float(programs.validate(state.phi, state.validation_key))
        history.validation_step[state.num_validations] = state.step
        history.validation_metric[state.num_validations] = metric
        logger.info("step %d: validation %s = %.6g", state.step, config.validation_metric, metric)
        state = _after_validation(state, metric, config.patience)
        if state.stopped_early:
            logger.info("early stopping at step %d (patience %d)", state.step, config.patience)
        return state

    logger.info(
        "meta-training with %s: %d tasks, truncations of %d steps, horizon %d, %d outer steps",
        config.estimator,
        config.num_tasks,
        config.truncation_length,
        config.horizon,
        config.num_outer_steps,
    )
    bar = tqdm(
        total=config.num_outer_steps, initial=state.step, disable=not progress, desc="meta-train"
    )
    try:
        if state.num_validations == 0:
            state = validate(state)
        while state.step < config.num_outer_steps and not state.stopped_early:
            step, horizon = state.step, curriculum.horizon_at(state.step)
            phi, outer_state, estimator_state, stats = programs.step(
                state.phi,
                state.outer_state,
                state.estimator_state,
                step_key,
                jnp.int32(step),
                jnp.int32(horizon),
            )
            metrics = _record(history, step, horizon, stats)
            state = state._replace(
                step=step + 1, phi=phi, outer_state=outer_state, estimator_state=estimator_state
            )
            if curriculum.stage_at(state.step) != curriculum.stage_at(step):
                logger.info(
                    "step %d: horizon promoted to %d", state.step, curriculum.horizon_at(state.step)
                )
                state = state._replace(bad_validations=0)
            if state.step % config.validation_every == 0:
                state = validate(state)
                metrics["validation_metric"] = float(
                    history.validation_metric[state.num_validations - 1]
                )
            if config.checkpoint_every is not None and state.step % config.checkpoint_every == 0:
                save()
            bar.update(1)
            bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4g}", refresh=False)
            if callback is not None:
                callback(state.step, metrics)
    except KeyboardInterrupt:
        save()
        logger.warning("meta-training interrupted at step %d", state.step)
        raise
    finally:
        bar.close()
    save()
    return MetaTrainResult(state.phi, state.best_phi, trim_history(history, state), state)
