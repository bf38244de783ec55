"""What the meta-learner façades share: training on a family or a task pool, adaptation.

``MAMLOptimizer``, ``ReptileOptimizer``, ``GradientBasedMetaLearner`` and
``MetaL2OIntegration`` each hold a config and differ only in the inner loop they build and
the ``MetaTrainConfig`` they train it with. Training is ``opifex.core.metatrain.meta_train``
(vmapped, shardable meta-batches, validation, early stopping, checkpoints with exact resume,
a progress bar); nothing here is a second outer loop.

Parameters may be a pytree of arrays or a Flax NNX module (``flax.nnx``; split with
``opifex.core.split_nnx``, and given back as a module by ``model_from``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax

from opifex.core import check_task_family
from opifex.core._checks import check_int_at_least, check_positive
from opifex.core.metatrain import (
    InnerLoop,
    LearnedInit,
    MetaTrainConfig,
    MetaTrainResult,
    meta_train,
)
from opifex.meta._adapt import AdaptationCurve, adapt, evaluate_adaptation
from opifex.meta._tasks import TaskPool


def check_meta_settings(config: Any, *names: str) -> None:
    """Validate the fields every façade config shares (learning rates > 0, counts >= 1)."""
    for name in names:
        value = getattr(config, name)
        if name.endswith("learning_rate"):
            check_positive(value, name)
        else:
            check_int_at_least(value, 1, name)


def _is_nnx_module(params: Any) -> bool:
    return any(c.__module__.startswith("flax.nnx") for c in type(params).__mro__)


class MetaLearner:
    """The shared façade (see the module docstring); subclasses set the inner loop.

    A subclass sets ``config_type`` (its config class), ``steps_field`` (the config field of
    the inner steps), ``inner_optimizer`` (or overrides ``inner_loop(family)``),
    ``estimator`` (the ``MetaTrainConfig`` estimator it trains with) and, where they differ
    from the defaults, ``outer_settings()``, ``meta_parameters`` and ``initialization``.
    """

    config_type: type = type(None)
    steps_field = "inner_steps"

    def __init__(self, config: Any = None, loss_fn: Callable[..., Any] | None = None):
        config = self.config_type() if config is None else config
        if not isinstance(config, self.config_type):
            raise TypeError(
                f"config must be a {self.config_type.__name__}, got {type(config).__name__}"
            )
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
        self.config = config
        self.loss_fn = loss_fn
        # (graphdef, rest) of the NNX module last trained from, or None for a pytree
        self._nnx: tuple[Any, Any] | None = None

    # -- what subclasses define -------------------------------------------------------------

    inner_optimizer: optax.GradientTransformation | None = None

    def inner_loop(self, family: Any) -> InnerLoop:
        """The ``InnerLoop`` meta-trained on ``family``.

        By default the learned start ``LearnedInit(family, inner_optimizer)``.
        """
        return LearnedInit(family, self.inner_optimizer)

    @property
    def estimator(self) -> str:
        """The ``MetaTrainConfig.estimator`` of training."""
        raise NotImplementedError

    def outer_settings(self) -> dict[str, Any]:
        """``MetaTrainConfig`` fields the method sets besides the shared ones (none)."""
        return {}

    def meta_parameters(self, params: Any) -> Any:
        """``phi`` for a start ``params`` (the start itself, unless a subclass adds more)."""
        return params

    def initialization(self, phi: Any) -> Any:
        """The start of the inner loop within ``phi``."""
        return phi

    # -- shared -----------------------------------------------------------------------------

    @property
    def inner_steps(self) -> int:
        """The inner steps of training (and the default of ``adapt``)."""
        return getattr(self.config, self.steps_field)

    def train_config(self, num_outer_steps: int, **overrides: Any) -> MetaTrainConfig:
        """The ``MetaTrainConfig`` of a run of ``num_outer_steps`` meta-iterations.

        Whole unrolls of ``inner_steps`` steps, the query loss after them as the meta-loss and
        its final value on held-out tasks as the validation metric, no clipping; ``overrides``
        (``MetaTrainConfig`` fields) win.
        """
        settings = {
            "estimator": self.estimator,
            "horizon": self.inner_steps,
            "truncation_length": self.inner_steps,
            "num_tasks": self.config.meta_batch_size,
            "num_outer_steps": num_outer_steps,
            "outer_learning_rate": self.config.meta_learning_rate,
            "meta_loss": "final_query",
            "validation_metric": "final_loss",
            "clip_norm": None,
            "validation_every": min(num_outer_steps, 1000),
            "num_validation_tasks": 100,
            **self.outer_settings(),
        }
        return MetaTrainConfig(**{**settings, **overrides})

    def meta_train_family(
        self,
        family: Any,
        params: Any,
        num_meta_iterations: int,
        *,
        key: jax.Array | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        devices: Sequence[Any] | None = None,
        progress: bool | Callable[[int, int, dict[str, float]], None] = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        **config_overrides: Any,
    ) -> MetaTrainResult:
        """Meta-train from the start ``params`` on tasks drawn from ``family``.

        Args:
            family: a ``TaskFamily`` (e.g. ``FewShotFamily(SinusoidFamily())``).
            params: the initial parameters (a pytree or an NNX module).
            num_meta_iterations: outer steps.
            key: the run's key (default ``key(0)``).
            checkpoint_path: where to checkpoint (and resume from), as in ``meta_train``.
            devices: the devices to shard the meta-batch over (default: all).
            progress: show a progress bar, or a function ``progress(done, total, metrics)``
                called after each chunk of meta-iterations (as in ``meta_train``).
            callback: ``callback(step, metrics)`` after each meta-iteration.
            **config_overrides: ``MetaTrainConfig`` fields to set (e.g. ``validation_every``,
                ``num_validation_tasks``, ``patience``, ``clip_norm``).

        Returns:
            ``meta_train``'s ``MetaTrainResult``; ``initialization(result.phi)`` is the
            learned start (``model_from`` turns it back into an NNX module).
        """
        check_task_family(family)
        params = self._as_pytree(params)
        config = self.train_config(num_meta_iterations, **config_overrides)
        return meta_train(
            jax.random.key(0) if key is None else key,
            self.meta_parameters(params),
            self.inner_loop(family),
            config,
            checkpoint_path=checkpoint_path,
            devices=devices,
            progress=progress,
            callback=callback,
        )

    def meta_train(
        self,
        params: Any,
        support_tasks: tuple[Any, Any],
        query_tasks: tuple[Any, Any],
        num_meta_epochs: int,
        *,
        key: jax.Array | None = None,
        **options: Any,
    ) -> MetaTrainResult:
        """Meta-train on a fixed pool of tasks given as arrays (``TaskPool``).

        Args:
            params: the initial parameters (a pytree or an NNX module); also the pool's
                ``init``.
            support_tasks: ``(inputs, targets)`` with a leading task axis.
            query_tasks: ``(inputs, targets)``, the same tasks' query sets.
            num_meta_epochs: passes over the pool: ``ceil(num_tasks / meta_batch_size)``
                meta-iterations each (tasks are drawn uniformly with replacement).
            key: the run's key.
            **options: as for ``meta_train_family``.

        Raises:
            ValueError: no ``loss_fn`` was given to the constructor.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from opifex.meta import MAMLConfig, MAMLOptimizer
            >>> def loss_fn(w, x, y):
            ...     return jnp.mean((x @ w - y) ** 2)
            >>> slopes = jax.random.normal(jax.random.key(0), (20, 2))  # 20 linear tasks
            >>> x = jax.random.normal(jax.random.key(1), (20, 10, 2))
            >>> y = jnp.einsum("tnd,td->tn", x, slopes)
            >>> maml = MAMLOptimizer(MAMLConfig(inner_learning_rate=0.1, meta_batch_size=4),
            ...                      loss_fn=loss_fn)
            >>> result = maml.meta_train(jnp.zeros(2), (x[:, :5], y[:, :5]), (x[:, 5:], y[:, 5:]),
            ...                          num_meta_epochs=2, progress=False)
            >>> result.history.meta_loss.shape  # 2 epochs of 5 meta-batches
            (10,)
        """
        if self.loss_fn is None:
            raise ValueError(
                f"meta_train on task arrays needs the loss: {type(self).__name__}(config, "
                "loss_fn=lambda params, inputs, targets: ...)"
            )
        check_int_at_least(num_meta_epochs, 1, "num_meta_epochs")
        loss_fn, start = self.loss_fn, self._as_pytree(params)
        if self._nnx is not None:
            from opifex.core import nnx_objective

            loss_fn = nnx_objective(self.loss_fn, *self._nnx)
        pool = TaskPool(loss_fn, support_tasks, query_tasks, lambda key: start)
        batches = -(-pool.num_tasks // self.config.meta_batch_size)
        return self.meta_train_family(pool, start, num_meta_epochs * batches, key=key, **options)

    def adapt(self, phi: Any, task: Any, steps: int | None = None, *, family: Any = None) -> Any:
        """Adapt to one task: ``steps`` inner steps from the start within ``phi``.

        Args:
            phi: the meta-parameters (``result.phi`` of training; for MAML, Reptile and
                ``MetaL2OIntegration`` simply the start's parameters; for Meta-SGD they
                include the learned rates).
            task: ``(inputs, targets)`` of the task's support set (with the constructor's
                ``loss_fn``), or a task of ``family``.
            steps: inner steps (default: the config's inner steps).
            family: the ``TaskFamily`` of ``task``, if it is one.

        Returns:
            The adapted parameters.
        """
        steps = self.inner_steps if steps is None else steps
        if family is None:
            if self.loss_fn is None:
                raise ValueError("adapt needs a family, or a loss_fn given to the constructor")
            start = self.initialization(phi)
            family = TaskPool(self.loss_fn, _one_task(task), _one_task(task), lambda key: start)
            task = family.sample(jax.random.key(0))
        inner = self.inner_loop(family)
        return adapt(
            inner.start(phi, jax.random.key(0), task),
            task,
            family=family,
            optimizer=inner.optimizer(phi),
            num_steps=steps,
        )

    def evaluate(
        self,
        key: jax.Array,
        phi: Any,
        family: Any,
        *,
        num_tasks: int = 600,
        steps: Sequence[int] = (0, 1, 10),
    ) -> AdaptationCurve:
        """Held-out query losses after 0, 1, 10 (``steps``) adaptation steps, with 95 % CIs.

        See ``evaluate_adaptation``; ``phi`` is ``result.phi`` or ``result.best_phi``.
        """
        return evaluate_adaptation(
            key, phi, self.inner_loop(family), num_tasks=num_tasks, steps=steps
        )

    def model_from(self, phi: Any) -> Any:
        """The learned start as the NNX module given to training (or as a pytree)."""
        start = self.initialization(phi)
        if self._nnx is None:
            return start
        from opifex.core import merge_nnx

        graphdef, rest = self._nnx
        return merge_nnx(graphdef, start, rest)

    def _as_pytree(self, params: Any) -> Any:
        """``params`` as a pytree; an NNX module is split once, its static parts kept.

        ``graphdef`` and ``rest`` (``split_nnx``) serve the loss and ``model_from``.
        """
        if _is_nnx_module(params):
            from opifex.core import split_nnx

            graphdef, params, rest = split_nnx(params)
            self._nnx = (graphdef, rest)
        return params


class SGDStartLearner(MetaLearner):
    """A learned start adapted by SGD at ``config.inner_learning_rate`` (MAML, Reptile)."""

    def __init__(self, config: Any = None, loss_fn: Callable[..., Any] | None = None):
        super().__init__(config, loss_fn)
        # one transformation object, so that every run shares meta_train's compiled programs
        self.inner_optimizer = optax.sgd(self.config.inner_learning_rate)


def _one_task(pair: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` with a task axis of one added."""
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError("task must be a pair (inputs, targets), or pass its family=")
    return tuple(jax.numpy.asarray(a)[None] for a in pair)
