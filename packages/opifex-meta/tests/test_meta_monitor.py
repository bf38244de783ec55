"""PerformanceMonitor: the convergence rate of geometric sequences and against
scipy.stats.linregress, oscillation and relative spread against hand computations and NumPy,
the ring buffer, NaN / inf losses, wall-clock speed, the trajectory, jit / scan / vmap of the
functional core and bad input."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from opifex.meta._monitor import (
    MonitorConfig,
    PerformanceMonitor,
    monitor_init,
    monitor_metrics,
    monitor_update,
)

# float32 logarithms of float32 losses
RTOL = 1e-5
# one buffer size for most tests: the façade compiles once per size
CAPACITY = 32


def _record(losses, steps=None, **kwargs):
    monitor = PerformanceMonitor(**{"capacity": CAPACITY, **kwargs})
    steps = range(len(losses)) if steps is None else steps
    for step, loss in zip(steps, losses, strict=True):
        monitor.update(int(step), float(loss))
    return monitor.get_metrics()


def test_geometric_sequence_gives_its_ratio():
    losses = 5.0 * 0.7 ** np.arange(30)
    metrics = _record(losses)
    assert metrics["convergence_rate"] == pytest.approx(0.7, rel=RTOL)
    assert metrics["log_loss_slope"] == pytest.approx(math.log(0.7), rel=RTOL)
    assert metrics["num_steps"] == 30
    assert metrics["loss"] == pytest.approx(losses[-1], rel=RTOL)
    assert metrics["best_loss"] == pytest.approx(losses[-1], rel=RTOL)
    assert metrics["oscillation"] == 0.0
    np.testing.assert_array_equal(metrics["trace"]["step"], np.arange(30))


def test_loss_floor_is_subtracted_before_the_fit():
    steps = np.arange(0, 60, 3)  # every third step: the rate is per step, not per record
    losses = 2.0 + 3.0 * 0.95**steps
    metrics = _record(losses, steps, loss_floor=2.0)
    # float32: 2 + 3 * 0.95**57 keeps about 5 significant digits of the excess
    assert metrics["convergence_rate"] == pytest.approx(0.95, rel=1e-4)
    assert _record(losses, steps)["convergence_rate"] > 0.97  # no floor: a slower fit


def test_noisy_curve_matches_scipy_linregress():
    rng = np.random.default_rng(0)
    steps = np.sort(rng.choice(200, size=CAPACITY, replace=False))
    noise = 0.3 * rng.standard_normal(CAPACITY)
    losses = np.exp(1.0 - 0.03 * steps + noise).astype(np.float32)
    metrics = _record(losses, steps)
    reference = scipy.stats.linregress(steps, np.log(losses.astype(np.float64)))
    assert metrics["log_loss_slope"] == pytest.approx(reference.slope, rel=1e-4)
    assert metrics["convergence_rate"] == pytest.approx(math.exp(reference.slope), rel=1e-4)


def test_oscillation_and_relative_std_match_hand_computations():
    losses = np.array([3.0, 2.0, 2.5, 1.5, 1.0, 1.2])
    metrics = _record(losses, window=4)
    # differences -1, 0.5, -1, -0.5, 0.2: sign changes in 3 of the 4 consecutive pairs
    assert metrics["oscillation"] == pytest.approx(0.75)
    last = losses[-4:]
    assert metrics["relative_std"] == pytest.approx(np.std(last) / abs(np.mean(last)), rel=RTOL)
    zigzag = _record([1.0, 2.0] * 5)
    assert zigzag["oscillation"] == 1.0
    assert zigzag["relative_std"] == pytest.approx(1 / 3, rel=RTOL)  # std 0.5, mean 1.5


def test_ring_buffer_keeps_the_last_capacity_records_oldest_first():
    # 12 steps at ratio 0.5, then 8 at ratio 0.8: with capacity 8 only the second part is fit
    first = 0.5 ** np.arange(12)
    losses = np.concatenate([first, first[-1] * 0.8 ** np.arange(1, 9)])
    metrics = _record(losses, capacity=8)
    np.testing.assert_array_equal(metrics["trace"]["step"], np.arange(12, 20))
    np.testing.assert_allclose(metrics["trace"]["loss"], losses[12:], rtol=RTOL)
    assert metrics["convergence_rate"] == pytest.approx(0.8, rel=RTOL)
    assert metrics["num_steps"] == 20


def test_nonfinite_losses_are_counted_and_skipped():
    losses = [4.0, 2.0, np.nan, 0.5, np.inf, 0.125, 0.0625]
    metrics = _record(losses)
    assert metrics["num_nonfinite"] == 2
    assert metrics["best_loss"] == 0.0625
    finite = [i for i, loss in enumerate(losses) if np.isfinite(loss)]
    reference = scipy.stats.linregress(finite, np.log([losses[i] for i in finite]))
    assert metrics["log_loss_slope"] == pytest.approx(reference.slope, rel=RTOL)
    assert metrics["convergence_rate"] == pytest.approx(0.5, rel=RTOL)
    # no triple of consecutive finite records straddles a NaN: only (0.125, 0.0625) is left,
    # a single difference, so no pair of differences: undefined
    assert math.isnan(metrics["oscillation"])
    nan_last = _record([1.0, 0.5, np.nan])
    assert math.isnan(nan_last["loss"]) and nan_last["best_loss"] == 0.5


def test_losses_at_or_below_the_floor_are_left_out_of_the_fit():
    metrics = _record([1.0, 0.1, 0.01, 0.0, -1.0])
    assert metrics["convergence_rate"] == pytest.approx(0.1, rel=RTOL)


def test_empty_and_single_record_metrics_are_nan():
    empty = PerformanceMonitor(capacity=CAPACITY).get_metrics()
    assert empty["num_steps"] == 0
    for name in ("loss", "best_loss", "convergence_rate", "oscillation", "steps_per_second"):
        assert math.isnan(empty[name]), name
    one = _record([1.0])
    assert one["loss"] == 1.0 and math.isnan(one["convergence_rate"])
    assert math.isnan(one["relative_std"])


def test_steps_per_second_uses_step_numbers_and_the_clock():
    ticks = itertools.count()
    monitor = PerformanceMonitor(capacity=CAPACITY, clock=lambda: 0.5 * next(ticks))
    for step, loss in zip(
        (0, 10, 20, 30), (1.0, np.float32(1.0), np.array(1.0), jnp.ones(())), strict=True
    ):
        monitor.update(step, loss)  # any scalar type
    metrics = monitor.get_metrics()
    assert metrics["elapsed_seconds"] == 1.5
    assert metrics["steps_per_second"] == pytest.approx(20.0)


def test_tracking_flags_choose_the_metrics():
    metrics = _record(
        [1.0, 0.5], track_convergence=False, track_efficiency=False, track_stability=False
    )
    assert set(metrics) == {"num_steps", "num_nonfinite", "loss", "best_loss", "trace"}


def test_trajectory_holds_the_recorded_params_oldest_first():
    monitor = PerformanceMonitor(save_trajectory=True, capacity=3)
    params = [{"w": jnp.full(2, float(i)), "b": jnp.float32(-i)} for i in range(5)]
    for step, p in enumerate(params):
        monitor.update(step, 1.0 / (step + 1), p)
    trajectory = monitor.get_metrics()["trajectory"]
    np.testing.assert_array_equal(trajectory["w"], [[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    np.testing.assert_array_equal(trajectory["b"], [-2.0, -3.0, -4.0])


# ---------------------------------------------------------------- functional core


def _scan_state(losses, capacity=CAPACITY):
    def body(state, inputs):
        step, loss = inputs
        return monitor_update(state, step, loss), None

    steps = jnp.arange(losses.shape[-1])
    return jax.lax.scan(body, monitor_init(capacity), (steps, losses))[0]


@pytest.mark.slow
def test_scan_and_vmap_give_each_sequence_its_rate():
    ratios = jnp.array([0.3, 0.6, 0.9])
    losses = 2.0 * ratios[:, None] ** jnp.arange(12)
    rates = jax.jit(jax.vmap(lambda row: monitor_metrics(_scan_state(row))["convergence_rate"]))(
        losses
    )
    np.testing.assert_allclose(rates, ratios, rtol=RTOL)
    # the façade reads the same numbers from the same records
    facade = _record(np.asarray(losses[1]))
    functional = jax.jit(lambda row: monitor_metrics(_scan_state(row)))(losses[1])
    for name in ("convergence_rate", "oscillation", "relative_std", "loss", "best_loss"):
        assert facade[name] == pytest.approx(float(functional[name]), rel=RTOL), name


def test_jitted_update_does_not_recompile():
    update = jax.jit(monitor_update)
    state = monitor_init(4, {"w": jnp.zeros(2)})
    for step in range(6):
        state = update(state, step, jnp.float32(step), {"w": jnp.full(2, float(step))})
    assert update._cache_size() == 1
    assert int(state.num_steps) == 6
    # slots 0 and 1 were overwritten by steps 4 and 5
    np.testing.assert_array_equal(state.steps, [4, 5, 2, 3])
    np.testing.assert_array_equal(state.trajectory["w"][:, 0], [4.0, 5.0, 2.0, 3.0])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"capacity": 1}, ValueError, "capacity"),
        ({"capacity": 10.0}, TypeError, "capacity"),
        ({"window": 1}, ValueError, "window"),
        ({"track_convergence": 1}, TypeError, "track_convergence"),
        ({"save_trajectory": "yes"}, TypeError, "save_trajectory"),
        ({"loss_floor": np.nan}, ValueError, "loss_floor"),
        ({"loss_floor": "0"}, TypeError, "loss_floor"),
        ({"clock": 3.0}, TypeError, "clock"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        PerformanceMonitor(**kwargs)


def test_bad_update_arguments():
    monitor = PerformanceMonitor(save_trajectory=True, capacity=CAPACITY)
    with pytest.raises(ValueError, match="params is required"):
        monitor.update(0, 1.0)
    with pytest.raises(ValueError, match="step"):
        monitor.update(-1, 1.0, jnp.zeros(2))
    with pytest.raises(TypeError, match="step"):
        monitor.update(0.5, 1.0, jnp.zeros(2))
    with pytest.raises(TypeError, match="loss"):
        monitor.update(0, None, jnp.zeros(2))
    with pytest.raises(ValueError, match="loss must be a scalar"):
        monitor.update(0, jnp.ones(3), jnp.zeros(2))
    monitor.update(0, 1.0, jnp.zeros(2))
    with pytest.raises(ValueError, match="params"):
        monitor.update(1, 1.0, jnp.zeros(3))  # another shape than the first params
    with pytest.raises(TypeError, match="params"):
        monitor_init(4, jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="params is required"):
        monitor_update(monitor_init(4, jnp.zeros(2)), 0, 1.0)
    assert MonitorConfig().capacity == 1000
