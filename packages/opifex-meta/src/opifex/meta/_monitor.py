"""``PerformanceMonitor``: convergence rate, speed and stability of a run, from its losses.

The functional core keeps the last ``capacity`` records in fixed-size ring buffers (a
``MonitorState`` of arrays), so that ``monitor_update`` runs inside ``jit`` and
``lax.scan``; ``monitor_metrics`` reads them back, oldest first, and is pure too.

Metrics (``monitor_metrics``, from the records kept):

* ``log_loss_slope``: the least-squares slope of ``log(loss - loss_floor)`` against the step,
  over the finite records above the floor; ``convergence_rate = exp(log_loss_slope)`` is the
  factor by which ``loss - loss_floor`` shrinks per step (a linear-convergence rate: below 1
  converges, 1 stalls, above 1 diverges). NaN with fewer than two usable records.
* ``oscillation``: the fraction of consecutive pairs of loss differences that change sign
  (0 for a monotone curve, 1 for a zig-zag), over the records whose three losses are finite.
* ``relative_std``: the standard deviation (``ddof=0``) of the finite losses among the last
  ``window`` records divided by the absolute value of their mean.
* ``loss`` (the last recorded, possibly NaN), ``best_loss`` (the smallest finite; NaN if none),
  ``num_steps`` (records made, also those the ring buffer has dropped) and ``num_nonfinite``
  (NaN / inf losses recorded: they are kept in the buffer and skipped by every metric).

``PerformanceMonitor`` is the façade: it adds the wall-clock speed (``steps_per_second``, from
the step numbers and the times of the first and last ``update``), returns Python numbers and,
with ``save_trajectory``, the recorded parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import check_float_pytree, check_int_at_least, check_same_structure


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """Settings of ``PerformanceMonitor`` (frozen, validated, hashable).

    Attributes:
        track_convergence: report ``log_loss_slope`` and ``convergence_rate``.
        track_efficiency: report ``steps_per_second`` and ``elapsed_seconds``.
        track_stability: report ``oscillation`` and ``relative_std``.
        save_trajectory: record the parameters at every update (``capacity`` copies).
        capacity: the most records kept (>= 2); older ones are dropped first.
        window: the number of last records ``relative_std`` uses (>= 2).
        loss_floor: the loss the run converges to (the optimum, when known), subtracted
            before the logarithm of the convergence fit.

    Example:
        >>> MonitorConfig(capacity=100).window
        20
    """

    track_convergence: bool = True
    track_efficiency: bool = True
    track_stability: bool = True
    save_trajectory: bool = False
    capacity: int = 1000
    window: int = 20
    loss_floor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("track_convergence", "track_efficiency", "track_stability"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.save_trajectory, bool):
            raise TypeError(
                f"save_trajectory must be a bool, got {type(self.save_trajectory).__name__}"
            )
        check_int_at_least(self.capacity, 2, "capacity")
        check_int_at_least(self.window, 2, "window")
        floor = self.loss_floor
        if isinstance(floor, bool) or not isinstance(floor, int | float | np.number):
            raise TypeError(f"loss_floor must be a number, got {type(floor).__name__}")
        if not np.isfinite(floor):
            raise ValueError(f"loss_floor must be finite, got {floor!r}")


class MonitorState(NamedTuple):
    """Ring buffers of the last ``capacity`` records: arrays only.

    Attributes:
        steps: ``(capacity,)`` int32 step numbers (-1 where nothing is recorded yet).
        losses: ``(capacity,)`` float losses (NaN where nothing is recorded yet).
        trajectory: the parameters' pytree with a leading ``capacity`` axis on every leaf, or
            ``None`` when the parameters are not recorded.
        num_steps: records made so far (0-d int32); the next goes to ``num_steps % capacity``.
        num_nonfinite: NaN / inf losses recorded (0-d int32).
    """

    steps: jax.Array
    losses: jax.Array
    trajectory: Any
    num_steps: jax.Array
    num_nonfinite: jax.Array


def monitor_init(capacity: int, params: Any = None) -> MonitorState:
    """Empty buffers for ``capacity`` records; ``params`` (if given) shapes the trajectory.

    Args:
        capacity: the most records kept (a Python int >= 2).
        params: a pytree of arrays like the parameters to record, or ``None`` to record none.

    Example:
        >>> import jax.numpy as jnp
        >>> state = monitor_init(4, {"w": jnp.zeros(3)})
        >>> state.losses.shape, state.trajectory["w"].shape
        ((4,), (4, 3))
    """
    check_int_at_least(capacity, 2, "capacity")
    trajectory = None
    if params is not None:
        check_float_pytree(params, "params")
        trajectory = jax.tree.map(
            lambda leaf: jnp.zeros((capacity, *jnp.shape(leaf)), jnp.result_type(leaf)), params
        )
    return MonitorState(
        steps=jnp.full((capacity,), -1, jnp.int32),
        losses=jnp.full((capacity,), jnp.nan, jnp.result_type(float)),
        trajectory=trajectory,
        num_steps=jnp.zeros((), jnp.int32),
        num_nonfinite=jnp.zeros((), jnp.int32),  # its own buffer: the façade donates the state
    )


def monitor_update(state: MonitorState, step: Any, loss: Any, params: Any = None) -> MonitorState:
    """``state`` with one more record (pure; runs under ``jit`` and inside ``lax.scan``).

    Args:
        state: the current ``MonitorState``.
        step: the step number (an integer scalar).
        loss: the loss at that step (a scalar; NaN / inf is recorded and counted).
        params: the parameters at that step; needed (and only used) when ``state`` records
            a trajectory.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> def body(state, step):
        ...     return monitor_update(state, step, 0.5 ** step), None
        >>> state, _ = jax.lax.scan(body, monitor_init(8), jnp.arange(5))
        >>> int(state.num_steps), state.losses[:5].tolist()
        (5, [1.0, 0.5, 0.25, 0.125, 0.0625])
    """
    capacity = state.losses.shape[0]
    index = state.num_steps % capacity
    loss = jnp.asarray(loss, state.losses.dtype)
    trajectory = state.trajectory
    if trajectory is not None:
        if params is None:
            raise ValueError("params is required: this monitor records the trajectory")
        check_same_structure(
            params, jax.tree.map(lambda buffer: buffer[0], trajectory), "params", "the trajectory"
        )
        trajectory = jax.tree.map(
            lambda buffer, leaf: buffer.at[index].set(jnp.asarray(leaf, buffer.dtype)),
            trajectory,
            params,
        )
    return MonitorState(
        steps=state.steps.at[index].set(jnp.asarray(step, jnp.int32)),
        losses=state.losses.at[index].set(loss),
        trajectory=trajectory,
        num_steps=state.num_steps + 1,
        num_nonfinite=state.num_nonfinite + (~jnp.isfinite(loss)).astype(jnp.int32),
    )


def _ordered(state: MonitorState) -> tuple[jax.Array, jax.Array, jax.Array, Any]:
    """Buffers oldest first, and the mask of the slots that hold a record."""
    capacity = state.losses.shape[0]
    count = jnp.minimum(state.num_steps, capacity)
    start = jnp.where(state.num_steps > capacity, state.num_steps % capacity, 0)
    order = (start + jnp.arange(capacity)) % capacity
    valid = jnp.arange(capacity) < count
    trajectory = None
    if state.trajectory is not None:
        trajectory = jax.tree.map(lambda buffer: buffer[order], state.trajectory)
    return state.steps[order], state.losses[order], valid, trajectory


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    count = jnp.sum(mask)
    return jnp.where(count > 0, jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(count, 1), jnp.nan)


def monitor_metrics(
    state: MonitorState, window: int = 20, loss_floor: float = 0.0
) -> dict[str, jax.Array]:
    """The metrics of the module docstring, as 0-d arrays (pure; every argument may be traced).

    Args:
        state: a ``MonitorState``.
        window: the number of last records ``relative_std`` uses.
        loss_floor: subtracted from the losses before the convergence fit's logarithm.

    Returns:
        a dict with ``num_steps``, ``num_nonfinite``, ``loss``, ``best_loss``,
        ``log_loss_slope``, ``convergence_rate``, ``oscillation`` and ``relative_std``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> update = jax.jit(monitor_update)
        >>> state = monitor_init(16)
        >>> for step in range(10):
        ...     state = update(state, step, 3.0 * 0.8**step)
        >>> metrics = jax.jit(monitor_metrics)(state)
        >>> round(float(metrics["convergence_rate"]), 4), float(metrics["oscillation"])
        (0.8, 0.0)
    """
    steps, losses, valid, _ = _ordered(state)
    dtype = losses.dtype
    finite = valid & jnp.isfinite(losses)
    count = jnp.minimum(state.num_steps, losses.shape[0])

    # least-squares line through (step, log(loss - floor)), centred for accuracy
    usable = finite & (losses > loss_floor)
    x = steps.astype(dtype)
    y = jnp.log(jnp.where(usable, losses - loss_floor, 1.0))
    x_centred = jnp.where(usable, x - _masked_mean(x, usable), 0.0)
    y_centred = jnp.where(usable, y - _masked_mean(y, usable), 0.0)
    sxx = jnp.sum(x_centred**2)
    fit = (jnp.sum(usable) >= 2) & (sxx > 0)
    slope = jnp.where(fit, jnp.sum(x_centred * y_centred) / jnp.where(fit, sxx, 1.0), jnp.nan)

    # sign changes of successive differences, over triples of finite records
    differences = jnp.diff(jnp.where(finite, losses, 0.0))
    finite_difference = finite[1:] & finite[:-1]
    pair = finite_difference[1:] & finite_difference[:-1]
    change = jnp.sign(differences[1:]) * jnp.sign(differences[:-1]) < 0
    num_pairs = jnp.sum(pair)
    oscillation = jnp.where(
        num_pairs > 0, jnp.sum(change & pair) / jnp.maximum(num_pairs, 1), jnp.nan
    )

    # relative spread of the last ``window`` finite records
    recent = finite & (jnp.arange(losses.shape[0]) >= count - window)
    mean = _masked_mean(losses, recent)
    spread = jnp.sqrt(_masked_mean((jnp.where(recent, losses, 0.0) - mean) ** 2, recent))
    relative_std = jnp.where(jnp.sum(recent) >= 2, spread / jnp.abs(mean), jnp.nan)

    last = losses[jnp.maximum(count - 1, 0)]
    return {
        "num_steps": state.num_steps,
        "num_nonfinite": state.num_nonfinite,
        "loss": jnp.where(count > 0, last, jnp.nan).astype(dtype),
        "best_loss": jnp.where(
            jnp.any(finite), jnp.min(jnp.where(finite, losses, jnp.inf)), jnp.nan
        ).astype(dtype),
        "log_loss_slope": slope.astype(dtype),
        "convergence_rate": jnp.exp(slope).astype(dtype),
        "oscillation": oscillation.astype(dtype),
        "relative_std": relative_std.astype(dtype),
    }


# compiled once per buffer shape and dtype, shared by every PerformanceMonitor
@functools.partial(jax.jit, donate_argnums=0)
def _update(state, step, loss, params):
    return monitor_update(state, step, loss, params)


@jax.jit
def _metrics_and_trace(state, window, loss_floor):
    return monitor_metrics(state, window, loss_floor), _ordered(state)


class PerformanceMonitor:
    """Convergence, speed and stability of a run, updated step by step (a thin façade).

    Args:
        track_convergence: report ``log_loss_slope`` and ``convergence_rate``.
        track_efficiency: report ``steps_per_second`` and ``elapsed_seconds``.
        track_stability: report ``oscillation`` and ``relative_std``.
        save_trajectory: record the parameters at every update; ``get_metrics`` then
            returns them under ``"trajectory"`` (``capacity`` copies are kept).
        capacity: the most records kept (>= 2); older ones are dropped first.
        window: the number of last records ``relative_std`` uses (>= 2).
        loss_floor: the loss the run converges to, for the convergence fit.
        clock: the wall clock in seconds (``time.perf_counter``).

    Example:
        >>> monitor = PerformanceMonitor(capacity=50)
        >>> x = 4.0
        >>> for step in range(20):
        ...     monitor.update(step, x**2)
        ...     x = x - 0.05 * 2 * x  # gradient descent on x**2 with learning rate 0.05
        >>> metrics = monitor.get_metrics()
        >>> round(metrics["convergence_rate"], 4), metrics["oscillation"]
        (0.81, 0.0)
    """

    def __init__(
        self,
        track_convergence: bool = True,
        track_efficiency: bool = True,
        track_stability: bool = True,
        save_trajectory: bool = False,
        capacity: int = 1000,
        *,
        window: int = 20,
        loss_floor: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.config = MonitorConfig(
            track_convergence=track_convergence,
            track_efficiency=track_efficiency,
            track_stability=track_stability,
            save_trajectory=save_trajectory,
            capacity=capacity,
            window=window,
            loss_floor=loss_floor,
        )
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every record."""
        self.state: MonitorState | None = None
        self._first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None

    def update(self, step: int, loss: Any, params: Any = None) -> None:
        """Record the loss (and, with ``save_trajectory``, the parameters) at ``step``.

        Args:
            step: the step number, an int >= 0.
            loss: a scalar loss (NaN / inf is recorded and counted, never raised on).
            params: the parameters at ``step``; required with ``save_trajectory``.
        """
        if isinstance(step, np.ndarray | jax.Array) and np.ndim(step) == 0:
            if not jnp.issubdtype(step.dtype, jnp.integer):
                raise TypeError(f"step must be an int, got dtype {step.dtype}")
            step = int(step)
        check_int_at_least(step, 0, "step")
        if isinstance(loss, bool) or not isinstance(
            loss, int | float | np.number | np.ndarray | jax.Array
        ):
            raise TypeError(f"loss must be a scalar number, got {type(loss).__name__}")
        if np.ndim(loss) != 0:
            raise ValueError(f"loss must be a scalar, got shape {np.shape(loss)}")
        record = None
        if self.config.save_trajectory:
            if params is None:
                raise ValueError("params is required when save_trajectory is True")
            record = params
        if self.state is None:
            self.state = monitor_init(self.config.capacity, record)
        self.state = _update(
            self.state,
            jnp.asarray(step, jnp.int32),
            jnp.asarray(loss, self.state.losses.dtype),
            record,
        )
        now = self._clock()
        if self._first is None:
            self._first = (step, now)
        self._last = (step, now)

    def get_metrics(self) -> dict[str, Any]:
        """The metrics chosen by the ``track_*`` flags, as Python numbers.

        Always: ``num_steps``, ``num_nonfinite``, ``loss``, ``best_loss`` and ``trace`` (a
        dict of NumPy arrays ``step`` and ``loss``, oldest first). With
        ``track_convergence``: ``log_loss_slope``, ``convergence_rate``; with
        ``track_efficiency``: ``steps_per_second`` (steps advanced per second of wall
        clock between the first and the last update; NaN before two updates) and
        ``elapsed_seconds``; with ``track_stability``: ``oscillation``, ``relative_std``;
        with ``save_trajectory``: ``trajectory`` (the parameters' pytree, a leading axis
        over the records, oldest first). Undefined values are NaN.
        """
        state = self.state if self.state is not None else monitor_init(self.config.capacity)
        values, (steps, losses, valid, trajectory) = _metrics_and_trace(
            state,
            jnp.asarray(self.config.window, jnp.int32),
            jnp.asarray(self.config.loss_floor, state.losses.dtype),
        )
        values = {name: value.item() for name, value in values.items()}
        valid = np.asarray(valid)
        metrics: dict[str, Any] = {
            name: values[name] for name in ("num_steps", "num_nonfinite", "loss", "best_loss")
        }
        metrics["trace"] = {"step": np.asarray(steps)[valid], "loss": np.asarray(losses)[valid]}
        if self.config.track_convergence:
            metrics["log_loss_slope"] = values["log_loss_slope"]
            metrics["convergence_rate"] = values["convergence_rate"]
        if self.config.track_efficiency:
            metrics.update(self._speed())
        if self.config.track_stability:
            metrics["oscillation"] = values["oscillation"]
            metrics["relative_std"] = values["relative_std"]
        if self.config.save_trajectory and trajectory is not None:
            metrics["trajectory"] = jax.tree.map(lambda buffer: buffer[valid], trajectory)
        return metrics

    def _speed(self) -> dict[str, float]:
        if self._first is None or self._last is None:
            return {"steps_per_second": float("nan"), "elapsed_seconds": 0.0}
        (first_step, first_time), (last_step, last_time) = self._first, self._last
        elapsed = last_time - first_time
        speed = (last_step - first_step) / elapsed if elapsed > 0 else float("nan")
        return {"steps_per_second": speed, "elapsed_seconds": elapsed}
