"""``meta_train``: fit the meta-parameters ``phi`` of an ``InnerLoop`` to a task family.

``phi`` builds the inner loop's start and its update rule (``InnerLoop``): the weights of a
learned optimiser (``LearnedOptimizer``), MAML's initialisation (``LearnedInit``), ... Each
outer step advances every task of the meta-batch by one truncation (or, for the whole-unroll
estimators, runs a fresh unroll of the whole horizon) and asks the estimator
(``MetaTrainConfig.estimator``) for a meta-gradient, which is clipped to a global norm and
applied to ``phi`` by the outer optimiser (``MetaTrainConfig.outer_optimizer``: Adam by
default). Around this loop:

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
* **Progress** as a ``tqdm`` bar showing the meta-loss (``progress=False`` hides it; a
  callable ``progress(done, total, metrics)`` is called after each chunk instead), and
  ``logging`` (logger ``opifex.core.metatrain._meta_train``).
* **Chunks.** Outer steps run in compiled chunks (one ``lax.fori_loop`` of up to
  ``MAX_CHUNK`` steps, its length a traced argument, so no chunk recompiles): the host waits
  for the device once per chunk, not once per step. A chunk ends at the next validation,
  checkpoint or curriculum promotion, and is sized to take about ``CHUNK_SECONDS`` of wall
  time, so the progress bar stays live. With a ``callback``, chunks are one step long, so
  that the callback sees each step as it happens (and may stop the run by raising). The
  step inside a chunk is the same compiled step whatever the chunk's length: chunking never
  changes the results.

Keys: the estimator's initial state uses ``fold_in(key, 0)``, outer step ``s`` uses
``fold_in(fold_in(key, 1), s)`` and the validation tasks ``fold_in(key, 2)`` unless a
``validation_key`` is given.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
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
from opifex.core.metatrain._whole_unroll import first_order, full_backprop, reptile

logger = logging.getLogger(__name__)

TASK_AXIS = "tasks"
MAX_CHUNK = 256  # outer steps per compiled chunk, at most
CHUNK_SECONDS = 0.25  # the wall time a chunk is sized for


class _Programs(NamedTuple):
    """The outer optimiser and the jitted functions of a run (shared by runs of one setup)."""

    outer: optax.GradientTransformation
    init: Callable[..., Any]  # (key, phi, horizon) -> estimator state
    # (phi, outer_state, est_state, key, first, count, horizon) -> (..., per-step stats)
    run: Callable[..., tuple]
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
        build = {"full_backprop": full_backprop, "first_order": first_order, "reptile": reptile}
        return build[config.estimator](inner, config.horizon, meta_loss=meta_loss)
    K = config.truncation_length
    if config.estimator == "truncated_bptt":
        return truncated_bptt(inner, K, meta_loss=meta_loss)
    build = pes if config.estimator == "pes" else truncated_es
    return build(
        inner, K, sigma=config.pes_sigma, num_particles=config.num_particles, meta_loss=meta_loss
    )


def _outer_optimizer(config: MetaTrainConfig) -> optax.GradientTransformation:
    """Adam / AdamW or SGD (with decoupled weight decay) on ``phi``."""
    rate, decay = config.outer_learning_rate, config.weight_decay
    if config.outer_optimizer == "adam":
        return optax.adamw(rate, weight_decay=decay) if decay else optax.adam(rate)
    if decay:
        return optax.chain(optax.add_decayed_weights(decay), optax.sgd(rate))
    return optax.sgd(rate)


def _build_programs(
    inner: InnerLoop,
    config: MetaTrainConfig,
    tasks: NamedSharding,
    replicated: NamedSharding,
) -> _Programs:
    estimator = estimator_from_config(inner, config)
    outer = _outer_optimizer(config)
    if config.clip_norm is not None:
        outer = optax.chain(optax.clip_by_global_norm(config.clip_norm), outer)

    def init(key: jax.Array, phi: Any, horizon: Any) -> Any:
        return estimator.init(key, phi, config.num_tasks, horizon)

    def step(
        phi: Any, outer_state: Any, est_state: Any, key: Any, index: Any, horizon: Any
    ) -> tuple:
        grad, new_est_state, info = estimator.estimate(
            jax.random.fold_in(key, index), phi, est_state, horizon
        )
        # phi, Adam's state and the unrolls keep their dtypes (float32 phi stays float32
        # when the losses are computed in float64 under jax_enable_x64)
        grad = jax.tree.map(lambda g, p: g.astype(jnp.result_type(p)), grad, phi)
        est_state = jax.tree.map(
            lambda new, old: new.astype(jnp.result_type(old)), new_est_state, est_state
        )
        finite = all_finite(grad)
        updates, new_outer_state = outer.update(grad, outer_state, phi)
        phi = tree_where(finite, optax.apply_updates(phi, updates), phi)
        outer_state = tree_where(finite, new_outer_state, outer_state)
        stats = (info.meta_loss, optax.tree.norm(grad), ~finite, jnp.sum(info.nonfinite))
        return phi, outer_state, est_state, stats

    def run(
        phi: Any,
        outer_state: Any,
        est_state: Any,
        key: Any,
        first: Any,
        count: Any,
        horizon: Any,
    ) -> tuple:
        """Outer steps ``first, ..., first + count - 1`` (``count <= MAX_CHUNK``)."""
        dtype = jnp.result_type(float)
        stats = (
            jnp.full(MAX_CHUNK, jnp.nan, dtype),
            jnp.full(MAX_CHUNK, jnp.nan, dtype),
            jnp.zeros(MAX_CHUNK, bool),
            jnp.zeros(MAX_CHUNK, jnp.int32),
        )

        def body(i: jax.Array, carry: tuple) -> tuple:
            phi, outer_state, est_state, stats = carry
            phi, outer_state, est_state, new = step(
                phi, outer_state, est_state, key, first + i, horizon
            )
            stats = tuple(
                column.at[i].set(value.astype(column.dtype))
                for column, value in zip(stats, new, strict=True)
            )
            return phi, outer_state, est_state, stats

        return jax.lax.fori_loop(0, count, body, (phi, outer_state, est_state, stats))

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
        jax.jit(run, out_shardings=(replicated, replicated, tasks, replicated)),
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


def _record(
    history: MetaTrainHistory, first: int, count: int, horizon: int, stats: tuple
) -> dict[str, float]:
    """Write steps ``first, ..., first + count - 1`` into ``history``; return the last one's.

    The returned metrics are what the bar, ``progress`` and ``callback`` report. Steps with
    non-finite tasks or a skipped update are logged as warnings.
    """
    meta_loss, grad_norm, skipped, nonfinite = (np.asarray(x[:count]) for x in stats)
    done = slice(first, first + count)
    history.meta_loss[done], history.grad_norm[done] = meta_loss, grad_norm
    history.horizon[done], history.skipped[done] = horizon, skipped
    history.nonfinite_tasks[done] = nonfinite
    for i in np.flatnonzero((nonfinite > 0) | skipped):
        if nonfinite[i]:
            logger.warning("step %d: %d task(s) non-finite, reset", first + i + 1, nonfinite[i])
        if skipped[i]:
            logger.warning("step %d: non-finite meta-gradient, step skipped", first + i + 1)
    return {
        "meta_loss": float(meta_loss[-1]),
        "grad_norm": float(grad_norm[-1]),
        "skipped": float(skipped[-1]),
        "nonfinite_tasks": float(nonfinite[-1]),
        "horizon": float(horizon),
    }


def _chunk_length(
    step: int,
    config: MetaTrainConfig,
    curriculum: Curriculum,
    seconds_per_step: float | None,
    one_at_a_time: bool,
) -> int:
    """The length of the next chunk (see the module docstring).

    Up to the next validation, checkpoint, promotion or the end, at most ``MAX_CHUNK``, and
    sized for ``CHUNK_SECONDS`` once a step's time is known (one step until then).
    """
    if one_at_a_time or seconds_per_step is None:
        return 1
    ends = [
        config.num_outer_steps,
        (step // config.validation_every + 1) * config.validation_every,
        (curriculum.stage_at(step) + 1) * curriculum.steps_per_stage,
    ]
    if config.checkpoint_every is not None:
        ends.append((step // config.checkpoint_every + 1) * config.checkpoint_every)
    wanted = max(1, int(CHUNK_SECONDS / max(seconds_per_step, 1e-9)))
    return max(1, min(min(ends) - step, MAX_CHUNK, wanted))


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
    progress: bool | Callable[[int, int, dict[str, float]], None] = True,
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
        progress: show a ``tqdm`` progress bar; or a function ``progress(done, total,
            metrics)`` called after each chunk of steps (``metrics``: the last step's, as for
            ``callback``), e.g. to drive another progress bar without one-step chunks.
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
    report = progress if callable(progress) else None
    bar = tqdm(
        total=config.num_outer_steps,
        initial=state.step,
        disable=report is not None or not progress,
        desc="meta-train",
    )
    try:
        if state.num_validations == 0:
            state = validate(state)
        # a step's wall time, measured from the second chunk on (the first may compile)
        seconds_per_step, compiled = None, False
        while state.step < config.num_outer_steps and not state.stopped_early:
            first, horizon = state.step, curriculum.horizon_at(state.step)
            count = _chunk_length(first, config, curriculum, seconds_per_step, callback is not None)
            started = time.perf_counter()
            phi, outer_state, estimator_state, stats = programs.run(
                state.phi,
                state.outer_state,
                state.estimator_state,
                step_key,
                jnp.int32(first),
                jnp.int32(count),
                jnp.int32(horizon),
            )
            stats = jax.device_get(stats)  # waits for the chunk
            if compiled:
                seconds_per_step = (time.perf_counter() - started) / count
            compiled = True
            logger.debug("steps %d-%d: one chunk", first + 1, first + count)
            metrics = _record(history, first, count, horizon, stats)
            state = state._replace(
                step=first + count,
                phi=phi,
                outer_state=outer_state,
                estimator_state=estimator_state,
            )
            if curriculum.stage_at(state.step) != curriculum.stage_at(state.step - 1):
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
            bar.update(count)
            bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4g}", refresh=False)
            if report is not None:
                report(state.step, config.num_outer_steps, metrics)
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
