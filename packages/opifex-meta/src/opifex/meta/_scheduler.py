"""``AdaptiveLearningRateScheduler``: a learning rate that follows a schedule or the loss.

Five strategies, chosen by name:

* ``"cosine_annealing"``: ``min + (initial - min) * (1 + cos(pi * min(e, T) / T)) / 2``;
* ``"exponential"``: ``max(initial * decay_rate ** e, min)``;
* ``"linear"``: from ``initial`` at ``e = 0`` to ``min`` at ``e = T``, then ``min``;
* ``"plateau"``: multiply by ``factor`` (not below ``min``) once the loss has not improved on
  the best loss so far by more than ``performance_threshold`` (relative) for ``patience``
  adaptations in a row;
* ``"performance"``: multiply by ``growth_factor`` (not above ``max``) when the loss improved on
  the previous adaptation's loss by more than ``performance_threshold`` (relative), by
  ``factor`` (not below ``min``) when it rose, keep it otherwise.

``T`` is ``total_epochs`` and ``e`` the epoch rounded down to a multiple of
``adaptation_frequency``: the learning rate changes only every ``adaptation_frequency`` epochs.
The loss-driven strategies look at the loss only at those epochs (one *adaptation*); the
losses of the epochs between are not used. "Improved by more than ``rtol``" means
``loss < reference - rtol * |reference|``, which also holds for negative losses.

A NaN or inf loss never reaches the learning rate: ``"plateau"`` counts it as an adaptation
without improvement (the best loss stays), ``"performance"`` as a rise (the rate is multiplied
by ``factor``, the reference loss stays the last finite one), and the schedules ignore the loss.
Every non-finite loss is counted in ``SchedulerState.num_nonfinite``.

The functional core is optax-style: ``scheduler_init(config)`` gives a ``SchedulerState``
(0-d arrays only) and ``scheduler_update(config, state, loss, epoch)`` gives
``(learning_rate, state)``; the strategy is static (from the frozen ``SchedulerConfig``), the
rest is traced, so ``update`` runs under ``jit``, ``vmap`` and ``lax.scan`` without Python
branching on values. ``update`` expects ``loss`` to be the loss at the start of ``epoch`` and
returns the learning rate to use during ``epoch``; for the schedules that is exactly
``as_schedule()(epoch)``, as in optax. Two ways into an optax optimiser built with
``optax.inject_hyperparams``: ``set_learning_rate`` writes a value into its state, and
``as_stateful_schedule()`` is passed as its ``learning_rate`` and adapts to the ``value=`` its
``update`` receives.

``AdaptiveLearningRateScheduler`` is the façade: it keeps a state and exposes ``adapt(loss,
epoch) -> float``. It keeps the documented spelling ``initial_lr`` / ``min_lr`` / ``max_lr``;
the config uses the glossary's ``learning_rate``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import check_choice, check_int_at_least, check_positive

SCHEDULER_STRATEGIES = ("cosine_annealing", "exponential", "linear", "plateau", "performance")
"""Every strategy name ``SchedulerConfig.strategy`` accepts."""

DETERMINISTIC_STRATEGIES = ("cosine_annealing", "exponential", "linear")
"""The strategies whose learning rate depends on the epoch only (usable as optax schedules)."""


def _check_number(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def _check_open_unit(value: Any, name: str, *, include_one: bool) -> None:
    _check_number(value, name)
    upper_ok = value <= 1 if include_one else value < 1
    if not (value > 0 and upper_ok):
        interval = "(0, 1]" if include_one else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """Settings of an adaptive learning rate (frozen, validated, hashable).

    Attributes:
        initial_learning_rate: the learning rate at epoch 0 (> 0).
        strategy: one of ``SCHEDULER_STRATEGIES``.
        adaptation_frequency: the learning rate changes only every this many epochs (>= 1).
        performance_threshold: the relative improvement of the loss that counts as one, in
            ``[0, 1)`` (``"plateau"`` and ``"performance"``).
        total_epochs: the horizon ``T`` of ``"cosine_annealing"`` and ``"linear"`` (>= 1).
        decay_rate: the factor per epoch of ``"exponential"``, in ``(0, 1]``.
        min_learning_rate: the lower bound of every strategy, in ``[0, initial]``.
        patience: adaptations without improvement before ``"plateau"`` reduces (>= 1).
        factor: the reduction factor of ``"plateau"`` and ``"performance"``, in ``(0, 1)``.
        growth_factor: the increase factor of ``"performance"`` (>= 1).
        max_learning_rate: the upper bound of ``"performance"`` (>= initial; ``None``: none).

    Example:
        >>> SchedulerConfig(0.1, strategy="plateau").patience
        5
    """

    initial_learning_rate: float
    strategy: str = "cosine_annealing"
    adaptation_frequency: int = 1
    performance_threshold: float = 1e-3
    total_epochs: int = 100
    decay_rate: float = 0.95
    min_learning_rate: float = 0.0
    patience: int = 5
    factor: float = 0.5
    growth_factor: float = 1.05
    max_learning_rate: float | None = None

    def __post_init__(self) -> None:
        check_positive(self.initial_learning_rate, "initial_learning_rate")
        if not isinstance(self.strategy, str):
            raise TypeError(f"strategy must be a str, got {type(self.strategy).__name__}")
        check_choice(self.strategy, SCHEDULER_STRATEGIES, "strategy")
        check_int_at_least(self.adaptation_frequency, 1, "adaptation_frequency")
        check_positive(self.performance_threshold, "performance_threshold", allow_zero=True)
        if self.performance_threshold >= 1:
            raise ValueError(
                f"performance_threshold must be in [0, 1), got {self.performance_threshold!r}"
            )
        check_int_at_least(self.total_epochs, 1, "total_epochs")
        _check_open_unit(self.decay_rate, "decay_rate", include_one=True)
        check_positive(self.min_learning_rate, "min_learning_rate", allow_zero=True)
        if self.min_learning_rate > self.initial_learning_rate:
            raise ValueError(
                f"min_learning_rate ({self.min_learning_rate!r}) must be at most"
                f" initial_learning_rate ({self.initial_learning_rate!r})"
            )
        check_int_at_least(self.patience, 1, "patience")
        _check_open_unit(self.factor, "factor", include_one=False)
        _check_number(self.growth_factor, "growth_factor")
        if self.growth_factor < 1:
            raise ValueError(f"growth_factor must be >= 1, got {self.growth_factor!r}")
        if self.max_learning_rate is not None:
            _check_number(self.max_learning_rate, "max_learning_rate")
            if self.max_learning_rate < self.initial_learning_rate:
                raise ValueError(
                    f"max_learning_rate ({self.max_learning_rate!r}) must be at least"
                    f" initial_learning_rate ({self.initial_learning_rate!r})"
                )

    @property
    def deterministic(self) -> bool:
        """Whether the learning rate depends on the epoch only."""
        return self.strategy in DETERMINISTIC_STRATEGIES


class SchedulerState(NamedTuple):
    """State of an adaptive learning rate: 0-d arrays only.

    Attributes:
        learning_rate: the current learning rate (float).
        reference_loss: ``"plateau"``: the best loss so far; ``"performance"``: the last
            adaptation's finite loss; ``inf`` before the first (float).
        num_bad_adaptations: ``"plateau"``: adaptations without improvement since the last
            improvement or reduction (int32).
        num_adaptations: adaptations made, i.e. updates at a multiple of
            ``adaptation_frequency`` (int32).
        num_nonfinite: NaN / inf losses received (int32).
    """

    learning_rate: jax.Array
    reference_loss: jax.Array
    num_bad_adaptations: jax.Array
    num_adaptations: jax.Array
    num_nonfinite: jax.Array


def _float_dtype() -> jnp.dtype:
    return jnp.result_type(float)  # float32, or float64 with jax_enable_x64


def scheduler_init(config: SchedulerConfig) -> SchedulerState:
    """The state before the first update: the initial learning rate, no reference loss.

    Example:
        >>> float(scheduler_init(SchedulerConfig(0.1)).learning_rate)
        0.10000000149011612
    """
    dtype = _float_dtype()
    zero = jnp.zeros((), jnp.int32)
    return SchedulerState(
        learning_rate=jnp.asarray(config.initial_learning_rate, dtype),
        reference_loss=jnp.asarray(jnp.inf, dtype),
        num_bad_adaptations=zero,
        num_adaptations=zero,
        num_nonfinite=zero,
    )


def scheduled_learning_rate(config: SchedulerConfig, epoch: Any) -> jax.Array:
    """The learning rate of a deterministic strategy at ``epoch`` (traceable).

    Negative epochs count as epoch 0.

    Example:
        >>> config = SchedulerConfig(1.0, "linear", total_epochs=4)
        >>> [float(scheduled_learning_rate(config, e)) for e in range(6)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if not config.deterministic:
        raise ValueError(
            f"strategy {config.strategy!r} depends on the loss; a schedule needs one of"
            f" {', '.join(map(repr, DETERMINISTIC_STRATEGIES))}"
        )
    dtype = _float_dtype()
    frequency = config.adaptation_frequency
    epoch = jnp.maximum(jnp.asarray(epoch), 0)
    epoch = ((epoch // frequency) * frequency).astype(dtype)
    initial = jnp.asarray(config.initial_learning_rate, dtype)
    low = jnp.asarray(config.min_learning_rate, dtype)
    if config.strategy == "exponential":
        return jnp.maximum(initial * jnp.asarray(config.decay_rate, dtype) ** epoch, low)
    progress = jnp.minimum(epoch, config.total_epochs) / config.total_epochs
    if config.strategy == "cosine_annealing":
        return low + (initial - low) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return initial + (low - initial) * progress  # linear


def _improved(loss: jax.Array, reference: jax.Array, rtol: float) -> jax.Array:
    # the first finite loss improves on the initial inf reference; NaN / inf never improves
    has_reference = jnp.isfinite(reference)
    safe_reference = jnp.where(has_reference, reference, 0.0)
    below = loss < safe_reference - rtol * jnp.abs(safe_reference)
    return jnp.isfinite(loss) & (~has_reference | below)


def scheduler_update(
    config: SchedulerConfig, state: SchedulerState, loss: Any, epoch: Any
) -> tuple[jax.Array, SchedulerState]:
    """The learning rate for ``epoch``, given the loss at its start, and the new state.

    A pure function of arrays (``config`` is static): it runs under ``jit``, ``vmap`` and
    ``lax.scan``. See the module docstring for each strategy's rule.

    Args:
        config: the ``SchedulerConfig``.
        state: the current ``SchedulerState``.
        loss: a scalar loss (NaN / inf allowed: see the module docstring).
        epoch: the epoch number (an integer scalar, >= 0).

    Returns:
        ``(learning_rate, new_state)`` with ``learning_rate == new_state.learning_rate``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> config = SchedulerConfig(1.0, "plateau", patience=2, factor=0.5)
        >>> def step(state, inputs):
        ...     loss, epoch = inputs
        ...     return scheduler_update(config, state, loss, epoch)[::-1]
        >>> losses = jnp.array([3.0, 3.0, 3.0, 2.0])
        >>> state, rates = jax.lax.scan(step, scheduler_init(config), (losses, jnp.arange(4)))
        >>> rates.tolist()
        [1.0, 1.0, 0.5, 0.5]
    """
    dtype = state.learning_rate.dtype
    loss = jnp.asarray(loss, dtype)
    epoch = jnp.asarray(epoch)
    finite = jnp.isfinite(loss)
    num_nonfinite = state.num_nonfinite + (~finite).astype(jnp.int32)
    adapting = epoch % config.adaptation_frequency == 0
    num_adaptations = state.num_adaptations + adapting.astype(jnp.int32)
    low = jnp.asarray(config.min_learning_rate, dtype)
    learning_rate = state.learning_rate
    reference = state.reference_loss
    num_bad = state.num_bad_adaptations
    rtol = config.performance_threshold

    if config.deterministic:
        learning_rate = scheduled_learning_rate(config, epoch).astype(dtype)
    elif config.strategy == "plateau":
        improved = _improved(loss, reference, rtol)
        bad = jnp.where(improved, 0, num_bad + 1)
        reduce = bad >= config.patience
        reduced = jnp.where(reduce, jnp.maximum(learning_rate * config.factor, low), learning_rate)
        learning_rate = jnp.where(adapting, reduced, learning_rate)
        num_bad = jnp.where(adapting, jnp.where(reduce, 0, bad), num_bad).astype(jnp.int32)
        reference = jnp.where(adapting & improved, loss, reference)
    else:  # performance
        high = jnp.asarray(
            jnp.inf if config.max_learning_rate is None else config.max_learning_rate, dtype
        )
        improved = _improved(loss, reference, rtol) & jnp.isfinite(reference)
        rose = ~finite | (jnp.isfinite(reference) & (loss > reference))
        grown = jnp.minimum(learning_rate * config.growth_factor, high)
        shrunk = jnp.maximum(learning_rate * config.factor, low)
        adapted = jnp.where(improved, grown, jnp.where(rose, shrunk, learning_rate))
        learning_rate = jnp.where(adapting, adapted, learning_rate)
        reference = jnp.where(adapting & finite, loss, reference)

    new_state = SchedulerState(
        learning_rate=learning_rate.astype(dtype),
        reference_loss=reference.astype(dtype),
        num_bad_adaptations=num_bad,
        num_adaptations=num_adaptations,
        num_nonfinite=num_nonfinite,
    )
    return new_state.learning_rate, new_state


@functools.partial(jax.jit, static_argnums=0)
def _jitted_update(config, state, loss, epoch):
    return scheduler_update(config, state, loss, epoch)


_INJECT_STATES = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def set_learning_rate(opt_state: Any, learning_rate: Any) -> Any:
    """``opt_state`` with the ``learning_rate`` of its ``inject_hyperparams`` state replaced.

    A pure function (it works under ``jit``): it returns a new state and leaves
    ``opt_state`` as it was. The injected state may be nested (e.g. inside
    ``optax.chain``); every one that holds a ``learning_rate`` is set. The value keeps the
    dtype the state had.

    Args:
        opt_state: the state of an optimiser built with ``optax.inject_hyperparams(...)(
            learning_rate=<a number>)``.
        learning_rate: the new learning rate (a scalar).

    Returns:
        the new optimiser state.

    Raises:
        ValueError: if ``opt_state`` holds no injected ``learning_rate``, or it is driven by
            a schedule (which would overwrite the value at the next update).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> scheduler = AdaptiveLearningRateScheduler(0.1, "plateau", patience=1)
        >>> optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
        >>> params = jnp.array([1.0, -2.0])
        >>> opt_state = optimizer.init(params)
        >>> update = jax.jit(optimizer.update)
        >>> for epoch in range(3):
        ...     loss = 1.0  # no progress: the plateau rule halves the rate
        ...     opt_state = set_learning_rate(opt_state, scheduler.adapt(loss, epoch))
        ...     updates, opt_state = update(2 * params, opt_state)
        ...     params = optax.apply_updates(params, updates)
        >>> float(opt_state.hyperparams["learning_rate"])
        0.02500000037252903
    """
    found = []

    def replace(node: Any) -> Any:
        if not isinstance(node, _INJECT_STATES) or "learning_rate" not in node.hyperparams:
            return node
        if "learning_rate" in getattr(node, "hyperparams_states", {}):
            raise ValueError(
                "opt_state's learning_rate is driven by a schedule, which overwrites it at"
                " every update: build the optimiser with a number as learning_rate"
            )
        found.append(True)
        old = node.hyperparams["learning_rate"]
        hyperparams = dict(node.hyperparams)
        hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.result_type(old)).reshape(
            jnp.shape(old)
        )
        return node._replace(hyperparams=hyperparams)

    new_state = jax.tree.map(replace, opt_state, is_leaf=lambda n: isinstance(n, _INJECT_STATES))
    if not found:
        raise ValueError(
            "opt_state holds no injected learning_rate: build the optimiser with"
            " optax.inject_hyperparams(...)(learning_rate=...)"
        )
    return new_state


class InjectedScheduleState(NamedTuple):
    """State of ``as_stateful_schedule()``: the scheduler's state and the step count.

    Attributes:
        scheduler: the ``SchedulerState``.
        count: updates made so far (0-d int32): the epoch of the next update.
    """

    scheduler: SchedulerState
    count: jax.Array


class _StatefulSchedule:
    """An ``optax.StatefulSchedule``: ``init``, ``update`` and ``__call__`` (see optax)."""

    def __init__(self, config: SchedulerConfig):
        self.config = config

    def init(self) -> InjectedScheduleState:
        return InjectedScheduleState(scheduler_init(self.config), jnp.zeros((), jnp.int32))

    def __call__(self, state: InjectedScheduleState, value: Any = None, **extra: Any) -> Any:
        if value is None:  # optax's init asks for the value before any loss is known
            return state.scheduler.learning_rate
        learning_rate, _ = scheduler_update(self.config, state.scheduler, value, state.count)
        return learning_rate

    def update(
        self, state: InjectedScheduleState, value: Any = None, **extra: Any
    ) -> InjectedScheduleState:
        if value is None:
            raise ValueError(
                "an adaptive learning rate needs the loss: call the optimiser's update with"
                " value=loss"
            )
        _, scheduler = scheduler_update(self.config, state.scheduler, value, state.count)
        return InjectedScheduleState(scheduler, state.count + 1)


class AdaptiveLearningRateScheduler:
    """A learning rate that follows a schedule or adapts to the loss (a thin façade).

    ``init`` / ``update`` are the pure functional core (``scheduler_init`` /
    ``scheduler_update`` with this object's config); ``adapt`` keeps the state in the object.

    Args:
        initial_lr: the learning rate at epoch 0 (> 0).
        strategy: ``"cosine_annealing"``, ``"exponential"``, ``"linear"``, ``"plateau"`` or
            ``"performance"`` (see the module docstring).
        adaptation_frequency: the learning rate changes only every this many epochs (>= 1).
        performance_threshold: the relative loss improvement that counts, in ``[0, 1)``.
        total_epochs: the horizon of ``"cosine_annealing"`` and ``"linear"``.
        decay_rate: the factor per epoch of ``"exponential"``, in ``(0, 1]``.
        min_lr: the lower bound of every strategy (``0 <= min_lr <= initial_lr``).
        patience: adaptations without improvement before ``"plateau"`` reduces (>= 1).
        factor: the reduction factor of ``"plateau"`` and ``"performance"``, in ``(0, 1)``.
        growth_factor: the increase factor of ``"performance"`` (>= 1).
        max_lr: the upper bound of ``"performance"`` (``None``: unbounded).

    Example:
        >>> scheduler = AdaptiveLearningRateScheduler(0.1, "performance", growth_factor=2.0)
        >>> [round(scheduler.adapt(loss, epoch), 6) for epoch, loss in enumerate([4.0, 2.0, 3.0])]
        [0.1, 0.2, 0.1]
        >>> schedule = AdaptiveLearningRateScheduler(0.1, "cosine_annealing",
        ...                                          total_epochs=10).as_schedule()
        >>> round(float(schedule(5)), 6)
        0.05
    """

    def __init__(
        self,
        initial_lr: float,
        strategy: str = "cosine_annealing",
        adaptation_frequency: int = 1,
        performance_threshold: float = 1e-3,
        *,
        total_epochs: int = 100,
        decay_rate: float = 0.95,
        min_lr: float = 0.0,
        patience: int = 5,
        factor: float = 0.5,
        growth_factor: float = 1.05,
        max_lr: float | None = None,
    ):
        self.config = SchedulerConfig(
            initial_learning_rate=initial_lr,
            strategy=strategy,
            adaptation_frequency=adaptation_frequency,
            performance_threshold=performance_threshold,
            total_epochs=total_epochs,
            decay_rate=decay_rate,
            min_learning_rate=min_lr,
            patience=patience,
            factor=factor,
            growth_factor=growth_factor,
            max_learning_rate=max_lr,
        )
        self.state = self.init()

    @property
    def current_lr(self) -> float:
        """The learning rate of the kept state."""
        return float(self.state.learning_rate)

    def init(self) -> SchedulerState:
        """The initial ``SchedulerState`` (pure)."""
        return scheduler_init(self.config)

    def update(
        self, state: SchedulerState, loss: Any, epoch: Any
    ) -> tuple[jax.Array, SchedulerState]:
        """``scheduler_update`` with this config (pure; ``jax.jit(scheduler.update)`` works)."""
        return scheduler_update(self.config, state, loss, epoch)

    def adapt(self, loss: Any, epoch: int) -> float:
        """The learning rate for ``epoch``, given the loss at its start; keeps the new state.

        Args:
            loss: a scalar loss (NaN / inf allowed: see the module docstring).
            epoch: the epoch number, an int >= 0.

        Returns:
            the learning rate as a Python float.
        """
        if isinstance(epoch, np.ndarray | jax.Array) and np.ndim(epoch) == 0:
            if not jnp.issubdtype(epoch.dtype, jnp.integer):
                raise TypeError(f"epoch must be an int, got dtype {epoch.dtype}")
            epoch = int(epoch)
        check_int_at_least(epoch, 0, "epoch")
        if isinstance(loss, bool) or not isinstance(
            loss, int | float | np.number | np.ndarray | jax.Array
        ):
            raise TypeError(f"loss must be a scalar number, got {type(loss).__name__}")
        if np.ndim(loss) != 0:
            raise ValueError(f"loss must be a scalar, got shape {np.shape(loss)}")
        dtype = self.state.learning_rate.dtype
        learning_rate, self.state = _jitted_update(
            self.config, self.state, jnp.asarray(loss, dtype), jnp.asarray(epoch, jnp.int32)
        )
        return float(learning_rate)

    def reset(self) -> None:
        """Start again from the initial state."""
        self.state = self.init()

    def as_schedule(self) -> Callable[[Any], jax.Array]:
        """The deterministic strategy as an optax schedule ``count -> learning_rate``.

        Raises:
            ValueError: for ``"plateau"`` and ``"performance"``, which need the loss (use
                ``as_stateful_schedule`` or ``set_learning_rate``).

        Example:
            >>> import optax
            >>> scheduler = AdaptiveLearningRateScheduler(0.1, "exponential", decay_rate=0.5)
            >>> optimizer = optax.sgd(scheduler.as_schedule())
            >>> float(scheduler.as_schedule()(2))
            0.02500000037252903
        """
        config = self.config
        scheduled_learning_rate(config, 0)  # raises for the loss-driven strategies
        return functools.partial(scheduled_learning_rate, config)

    def as_stateful_schedule(self) -> Any:
        """Every strategy as an ``optax.StatefulSchedule`` for ``optax.inject_hyperparams``.

        Pass it as the ``learning_rate``; the optimiser's ``update`` then needs
        ``value=loss`` (the loss at the current parameters) and the ``k``-th update (from 0)
        is epoch ``k``. Its state is an ``InjectedScheduleState``, independent of this
        object's ``state``.

        Example:
            >>> import jax, jax.numpy as jnp, optax
            >>> scheduler = AdaptiveLearningRateScheduler(0.1, "plateau", patience=1)
            >>> optimizer = optax.inject_hyperparams(optax.sgd)(
            ...     learning_rate=scheduler.as_stateful_schedule())
            >>> params = jnp.array(1.0)
            >>> opt_state = optimizer.init(params)
            >>> update = jax.jit(optimizer.update)
            >>> for _ in range(3):  # a gradient of zero: the loss stays, the rate halves
            ...     updates, opt_state = update(jnp.array(0.0), opt_state, params,
            ...                                 value=jnp.array(1.0))
            >>> float(opt_state.hyperparams["learning_rate"])
            0.02500000037252903
        """
        return _StatefulSchedule(self.config)

    def __repr__(self) -> str:
        return f"AdaptiveLearningRateScheduler({self.config!r}, current_lr={self.current_lr!r})"
