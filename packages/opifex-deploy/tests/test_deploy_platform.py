"""HybridPerformancePlatform: the choice given measured numbers, injected clocks, a real function.

The choice logic is checked on numbers given to it (``choose_plan``) and on a servable that
advances an injected clock by a known cost per call, so nothing depends on this machine's
speed. The real measurements only assert structure (finite, positive times, the buckets
measured), never a speed.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy import Signature, TensorSpec, export_function
from opifex.deploy._platform import (
    MODES,
    HybridPerformancePlatform,
    Measurement,
    PerformancePlan,
    choose_plan,
    default_devices,
)
from opifex.deploy._service import create_app

SIG = Signature((TensorSpec("x", (3,), "float32"),), (TensorSpec("y", (), "float32"),))


def _m(batch, times, mode="exported", device="cpu0", first=1.0):
    return Measurement(mode, device, batch, first, tuple(times))


# --------------------------------------------------------------------------------- choose_plan


def test_measurement_statistics():
    m = _m(4, [0.004, 0.002, 0.003, 0.010], first=0.5)
    assert m.median_s == pytest.approx(0.0035)
    assert m.p99_s == pytest.approx(np.percentile([0.004, 0.002, 0.003, 0.010], 99))
    assert m.compile_s == pytest.approx(0.5 - 0.0035)
    assert m.throughput == pytest.approx(4 / 0.0035)
    assert m.to_json()["repeats"] == 4
    assert _m(1, [0.01], first=0.001).compile_s == 0.0  # never negative


def test_choose_plan_takes_the_highest_throughput_within_the_bound():
    ms = [_m(b, [0.001 + 0.0002 * b] * 5) for b in (1, 2, 4, 8, 16)]
    plan = choose_plan(ms, max_latency_s=0.0025)  # batch 8: 2.6 ms, over the bound
    assert isinstance(plan, PerformancePlan)
    assert plan.max_batch_size == 4 and plan.meets_latency_bound
    assert plan.throughput == pytest.approx(4 / 0.0018)
    assert plan.latency_s == pytest.approx(0.0018)
    assert plan.warm_up_s == pytest.approx(3.0)  # first calls of batches 1, 2 and 4
    assert choose_plan(ms, max_latency_s=1.0).max_batch_size == 16


def test_choose_plan_breaks_near_ties_towards_the_smaller_batch_then_compiled_first():
    ms = [_m(8, [0.0080]), _m(16, [0.0159]), _m(32, [0.0330])]  # 1000, 1006, 970 per s
    assert choose_plan(ms, max_latency_s=1.0).max_batch_size == 8
    assert choose_plan(ms, max_latency_s=1.0, throughput_rtol=0.0).max_batch_size == 16
    both = [_m(4, [0.004], mode="eager"), _m(4, [0.004], mode="jit")]
    assert choose_plan(both, max_latency_s=1.0).mode == "jit"
    devices = [_m(4, [0.004], device="gpu0"), _m(4, [0.004], device="cpu0")]
    assert choose_plan(devices, max_latency_s=1.0).device == "gpu0"  # measured first


def test_choose_plan_prefers_a_faster_mode_and_device():
    ms = [
        _m(8, [0.050], mode="eager"),
        _m(8, [0.002], mode="jit"),
        _m(8, [0.001], mode="jit", device="gpu0"),
    ]
    plan = choose_plan(ms, max_latency_s=0.1)
    assert (plan.mode, plan.device, plan.max_batch_size) == ("jit", "gpu0", 8)


def test_choose_plan_without_a_feasible_candidate_takes_the_lowest_p99():
    ms = [_m(1, [0.2, 0.3]), _m(2, [0.25, 0.26])]
    plan = choose_plan(ms, max_latency_s=0.1)
    assert not plan.meets_latency_bound
    assert plan.max_batch_size == 2  # p99 0.2599 < 0.299


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"measurements": [], "max_latency_s": 1.0}, "empty"),
        ({"measurements": [_m(1, [0.1])], "max_latency_s": 0.0}, "max_latency_s"),
        ({"measurements": [_m(1, [0.1])], "max_latency_s": 1.0, "throughput_rtol": -1}, "rtol"),
    ],
)
def test_choose_plan_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        choose_plan(**kwargs)


# --------------------------------------------------------------------------------- injected clock


class Clock:
    """A clock that only moves when a fake solver says it worked."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class CostlyServable:
    """Advances the clock by 1 ms + 0.1 ms per example, and 0.5 s more on a size's first call."""

    signature = SIG
    sha256 = "c0"

    def __init__(self, clock):
        self.clock = clock
        self.seen = set()
        self.calls = []

    def __call__(self, inputs):
        size = len(inputs["x"])
        self.calls.append(size)
        self.clock.now += 0.001 + 0.0001 * size + (0.0 if size in self.seen else 0.5)
        self.seen.add(size)
        return {"y": np.sum(inputs["x"] ** 2, axis=1)}


def test_plan_with_an_injected_clock_is_exact_and_skips_sizes_over_the_bound():
    clock = Clock()
    servable = CostlyServable(clock)
    platform = HybridPerformancePlatform(
        max_batch_size=32, max_latency_ms=2.5, repeats=5, timer=clock,
        devices=[jax.devices("cpu")[0]],
    )  # fmt: skip
    plan, report = platform.plan(servable)
    # 1 + 0.1 b ms: batch 16 takes 2.6 ms > 2.5 ms, so 32 is not measured; 8 is the best
    assert [m["batch_size"] for m in report["measurements"]] == [1, 2, 4, 8, 16]
    assert [s["batch_size"] for s in report["skipped"]] == [32]
    assert "over the bound" in report["skipped"][0]["reason"]
    assert plan.mode == "servable" and plan.max_batch_size == 8 and plan.meets_latency_bound
    assert plan.latency_s == pytest.approx(0.0018)
    assert plan.compile_s == pytest.approx(0.5)
    assert plan.warm_up_s == pytest.approx(4 * 0.5 + 0.001 * 4 + 0.0001 * 15)
    for entry in report["measurements"]:
        assert entry["first_call_s"] == pytest.approx(0.5011 + 0.0001 * (entry["batch_size"] - 1))
        assert entry["compile_s"] == pytest.approx(0.5)
        assert entry["repeats"] == 5
    # every call is one of the bucket sizes: 1 first call + 5 repeats per size
    assert servable.calls == [b for b in (1, 2, 4, 8, 16) for _ in range(6)]
    assert report["device_note"].startswith("jax sees only CPU devices")
    assert report["plan"]["max_batch_size"] == 8


def test_the_time_budget_stops_the_repeats():
    clock = Clock()
    platform = HybridPerformancePlatform(
        max_batch_size=1, repeats=50, max_seconds=0.005, max_latency_ms=100.0, timer=clock
    )
    measurements, _ = platform.measure(CostlyServable(clock))
    (m,) = measurements
    assert len(m.steady_s) == 5  # 1.1 ms each: the 5th reaches 5 ms


def test_given_inputs_are_cycled_to_each_batch_size():
    clock = Clock()
    servable = CostlyServable(clock)
    seen = []

    def recording(inputs):
        seen.append(inputs["x"][:, 0].tolist())
        return servable(inputs)

    recording.signature = SIG
    platform = HybridPerformancePlatform(max_batch_size=4, repeats=1, timer=clock)
    platform.measure(recording, {"x": [[1, 0, 0], [2, 0, 0], [3, 0, 0]]})
    assert [1.0, 2.0, 3.0, 1.0] in seen and [1.0] in seen and [1.0, 2.0] in seen


# --------------------------------------------------------------------------------- real timings


@pytest.fixture(scope="module")
def squares():
    return export_function(lambda x: {"y": jnp.sum(x**2)}, SIG, name="squares")


def test_an_exported_function_is_measured_compiled_on_every_bucket(squares):
    platform = HybridPerformancePlatform(max_batch_size=4, repeats=3, max_latency_ms=1000.0)
    plan, report = platform.plan(squares, {"x": np.ones((2, 3), np.float32)})
    assert report["modes"] == ["exported"] and report["target"] == "squares"
    assert [m["batch_size"] for m in report["measurements"]] == [1, 2, 4]
    for entry in report["measurements"]:
        assert math.isfinite(entry["first_call_s"]) and entry["first_call_s"] > 0
        assert 0 < entry["median_s"] <= entry["p99_s"]
        assert entry["compile_s"] >= 0
    assert plan.mode == "exported" and plan.max_batch_size in (1, 2, 4)
    assert plan.meets_latency_bound and "cpu" in plan.device.lower()
    # the plan's batch size is what the service takes
    app = create_app({"squares": ("v1", squares)}, max_batch_size=plan.max_batch_size)
    assert app.state.service.max_batch_size == plan.max_batch_size


def test_a_per_example_function_is_compared_with_and_without_jit():
    platform = HybridPerformancePlatform(max_batch_size=2, repeats=3, max_latency_ms=1000.0)
    plan, report = platform.plan(lambda x: {"y": jnp.sum(x**2)}, signature=SIG)
    modes = [(m["mode"], m["batch_size"]) for m in report["measurements"]]
    assert modes == [("jit", 1), ("jit", 2), ("eager", 1), ("eager", 2)]
    assert plan.mode in ("jit", "eager")
    assert set(report["plan"]) == set(PerformancePlan._fields)


def test_a_float64_function_runs_in_float64():
    sig = Signature((TensorSpec("x", (), "float64"),), (TensorSpec("y", (), "float64"),))
    seen = []

    def fn(x):
        seen.append(x.dtype)
        return {"y": x + 1e-12}

    platform = HybridPerformancePlatform(max_batch_size=1, repeats=1, modes=("jit",))
    platform.plan(fn, {"x": [1.0]}, signature=sig)
    assert seen and all(dtype == jnp.float64 for dtype in seen)


def test_default_devices_are_one_per_kind():
    devices = default_devices()
    kinds = [(d.platform, d.device_kind) for d in devices]
    assert len(kinds) == len(set(kinds)) and devices[-1].platform == "cpu"
    assert MODES[0] == "exported"


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_latency_ms": 0}, "max_latency_ms"),
        ({"repeats": 0}, "repeats"),
        ({"repeats": 2.5}, "repeats"),
        ({"max_seconds": -1}, "max_seconds"),
        ({"modes": ("fast",)}, "modes"),
        ({"modes": ()}, "modes"),
        ({"devices": []}, "devices"),
        ({"throughput_rtol": -0.1}, "throughput_rtol"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HybridPerformancePlatform(**kwargs)


def test_bad_targets_and_inputs_are_refused(squares):
    platform = HybridPerformancePlatform(max_batch_size=1, repeats=1)
    with pytest.raises(TypeError, match="target must be"):
        platform.plan(object())
    with pytest.raises(TypeError, match="signature must be a Signature"):
        platform.plan(lambda x: x, signature={"x": 1})
    with pytest.raises(TypeError, match="target must be callable"):
        platform.plan(3, signature=SIG)
    with pytest.raises(ValueError, match="'x'"):
        platform.plan(squares, {"x": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match=r"NaN|finite"):
        platform.plan(squares, {"x": [[1.0, 2.0, float("nan")]]})


# --------------------------------------------------------------------------------- the docs page


@pytest.mark.slow
def test_the_docs_example_runs(capsys):
    from pathlib import Path

    page = Path(__file__).resolve().parents[3] / "docs" / "packages" / "deploy.md"
    section = page.read_text("utf-8").split("\n## Performance", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, str(page), "exec"), {})
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "exported" and first[1] in ("1", "2", "4", "8") and first[3] == "True"
