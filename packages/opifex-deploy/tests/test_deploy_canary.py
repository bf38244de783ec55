"""Canary roll-out: the split, automatic rollback on errors / latency / quality, promotion.

The versions are small numpy servables (``y = 2 x`` is right) with an injected fault: one
raises on some inputs, one answers ``y = 3 x`` (caught by a quality check), one is slow (its
latency is what the test says it is). The registry is real (a ``tmp_path`` directory); its
artifacts are placeholders, since the servables come from the ``load`` hook. A fake clock
drives the canary's age.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading

import numpy as np
import pytest

from opifex.deploy._artifact import FORMAT, ExportedFunction
from opifex.deploy._canary import (
    AdaptiveDeploymentSystem,
    Decision,
    import_quality_check,
    output_quality,
)
from opifex.deploy._registry import NotInRegistryError, Registry
from opifex.deploy._service import RequestOutcome
from opifex.deploy._signature import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
NAME = "double"


def placeholder_artifact(tag: str) -> ExportedFunction:
    """Publishable metadata and bytes, never loaded (the ``load`` hook gives the servable)."""
    data = f"placeholder {tag}".encode()
    metadata = {
        "format": FORMAT,
        "format_version": 1,
        "name": NAME,
        "signature": SIGNATURE.to_json(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "platforms": ["cpu"],
    }
    return ExportedFunction(None, data, metadata)


class Servable:
    """``y = scale * x``; raises where ``fails(x)``; counts the examples it answers."""

    def __init__(self, version, scale=2.0, fails=None):
        self.signature = SIGNATURE
        self.sha256 = f"sha-{version}"
        self.scale = scale
        self.fails = fails
        self.examples = 0

    def __call__(self, inputs):
        x = np.asarray(inputs["x"])
        self.examples += len(x)
        if self.fails is not None and np.any(self.fails(x)):
            raise RuntimeError("injected fault")
        return {"y": (self.scale * x).astype(np.float32)}


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def gap(inputs, outputs):
    """The quality check: the largest error of ``y = 2 x`` (0 for the right answer)."""
    return float(np.max(np.abs(outputs["y"] - 2 * inputs["x"])))


@pytest.fixture
def registry(tmp_path):
    registry = Registry(tmp_path / "registry")
    for tag in ("good", "bad"):
        registry.publish(NAME, placeholder_artifact(tag))
    registry.promote(NAME, "v1")
    registry.promote(NAME, "v2", "canary")
    return registry


def make_system(registry, servables, **options):
    options = {"canary_percentage": 50.0, "min_requests": 10, "window": 40, **options}
    return AdaptiveDeploymentSystem(
        registry, NAME, load=lambda name, version: servables[version], **options
    )


def serve(system, i, seconds=0.001):
    """One request of ``x = i`` as the service would answer it; returns (version, outcome)."""
    version, servable = system.route(hashlib.sha256(f"request {i}".encode()).hexdigest())
    inputs = {"x": np.array([float(i)], np.float32)}
    try:
        outputs, status = servable(inputs), 200
    except RuntimeError:
        outputs, status = None, 500
    outcome = RequestOutcome(status, seconds, inputs, outputs, False)
    return version, outcome, system.observe(version, outcome)


def test_split_follows_the_percentage_and_a_key_keeps_its_version(registry):
    system = make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2")},
                         canary_percentage=10.0)  # fmt: skip
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    versions = [system.route(key)[0] for key in keys]
    assert 0.08 < versions.count("v2") / len(keys) < 0.12
    assert all(
        system.route(key)[0] == version
        for key, version in zip(keys[:200], versions[:200], strict=True)
    )
    assert system.route("not a hex key")[0] == system.route("not a hex key")[0]


def test_errors_roll_back_once_evidence_passes_and_bad_version_gets_nothing_after(registry, caplog):
    bad = Servable("v2", fails=lambda x: x % 3 == 0)  # raises on every third input
    good = Servable("v1")
    system = make_system(registry, {"v1": good, "v2": bad})
    decision, count = None, 0
    with caplog.at_level(logging.WARNING, logger="opifex.deploy._canary"):
        while decision is None and count < 200:
            count += 1
            *_, decision = serve(system, count)
    assert isinstance(decision, Decision) and decision.action == "rollback"
    assert decision.reasons == ("error_rate",)
    stats = decision.evidence["stats"]
    # within the stated window: at the first request where both versions have min_requests
    assert min(stats["v1"]["count"], stats["v2"]["count"]) == 10
    assert stats["v2"]["error_rate"] > stats["v1"]["error_rate"] + 0.05
    assert system.canary_version is None
    assert registry.channels(NAME) == {"stable": "v1", "canary": None}
    answered_by_bad = bad.examples
    for i in range(count + 1, count + 301):
        version, outcome, later = serve(system, i)
        assert version == "v1" and outcome.status == 200 and later is None
    assert bad.examples == answered_by_bad  # 0 requests answered by v2 after the rollback
    assert "rolled back (error_rate)" in caplog.text
    event = registry.events(NAME)[-2]
    assert event["action"] == "canary_rollback" and event["version"] == "v2"
    assert event["reasons"] == ["error_rate"]
    assert event["evidence"]["stats"]["v2"]["error_rate"] == stats["v2"]["error_rate"]
    assert registry.events(NAME)[-1]["action"] == "end_canary"


def test_a_decision_on_an_event_loop_switches_at_once_and_writes_the_registry_in_a_thread(
    registry, monkeypatch
):
    system = make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2", fails=bool)})
    release, writers = threading.Event(), []
    end_canary = registry.end_canary

    def held_end_canary(name):  # the registry write waits until the test lets it go
        writers.append(threading.current_thread())
        assert release.wait(10)
        end_canary(name)

    monkeypatch.setattr(registry, "end_canary", held_end_canary)

    async def serve_until_rolled_back():
        decision, i = None, 0
        while decision is None:
            i += 1
            *_, decision = serve(system, i)
        # the loop goes on while the write waits: routing has switched, the registry not yet
        assert decision.action == "rollback" and system.canary_version is None
        assert all(serve(system, j)[0] == "v1" for j in range(i + 1, i + 101))
        await asyncio.sleep(0.05)
        assert writers and registry.channels(NAME)["canary"] == "v2"
        assert not system.sync() and system.canary_version is None  # not followed back
        release.set()

    asyncio.run(serve_until_rolled_back())  # which waits for its worker threads
    assert writers[0] is not threading.main_thread()
    assert registry.channels(NAME) == {"stable": "v1", "canary": None}
    assert [e["action"] for e in registry.events(NAME)][-2:] == ["canary_rollback", "end_canary"]
    assert not system.sync() and system.canary_version is None


def test_wrong_answers_caught_by_the_quality_check_are_rolled_back(registry):
    wrong = Servable("v2", scale=3.0)
    system = make_system(registry, {"v1": Servable("v1"), "v2": wrong}, quality_check=gap)
    decisions = [serve(system, i)[2] for i in range(1, 80)]
    decision = next(d for d in decisions if d is not None)
    assert decision.reasons == ("quality",)
    assert decision.evidence["stats"]["v1"]["quality"] == 0.0
    assert decision.evidence["stats"]["v2"]["quality"] > 1.0
    assert decisions.index(decision) < 40  # 50 %: both versions reach 10 requests well before
    assert [d for d in decisions if d is not None] == [decision]
    assert registry.channels(NAME)["canary"] is None


def test_slow_canary_is_rolled_back_on_p99_latency(registry):
    clock = FakeClock()
    system = make_system(
        registry, {"v1": Servable("v1"), "v2": Servable("v2")}, latency_threshold=0.5, clock=clock
    )
    clock.now += 7.5
    decision = None
    for i in range(1, 100):
        version = system.route(hashlib.sha256(f"request {i}".encode()).hexdigest())[0]
        seconds = 0.030 if version == "v2" else 0.010  # the canary is three times slower
        outcome = RequestOutcome(200, seconds, {"x": np.ones(1)}, {"y": 2 * np.ones(1)}, False)
        if (decision := system.observe(version, outcome)) is not None:
            break
    assert decision is not None and decision.reasons == ("p99_latency",)
    assert decision.evidence["stats"]["v2"]["p99_s"] == pytest.approx(0.030)
    assert decision.evidence["canary_age_s"] == pytest.approx(7.5)
    assert decision.time == clock.now


def test_cached_answers_count_for_errors_but_not_for_latency(registry):
    system = make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2")})
    outcome = RequestOutcome(200, 5.0, {"x": np.ones(1)}, {"y": 2 * np.ones(1)}, True)
    system.observe("v1", outcome)
    stats = system.stats()["v1"]
    assert (stats.count, stats.latency_count, math.isnan(stats.p99_s)) == (1, 0, True)


def test_a_healthy_canary_is_promoted_after_its_window_and_time(registry):
    clock = FakeClock()
    servables = {"v1": Servable("v1"), "v2": Servable("v2")}
    system = make_system(
        registry, servables, auto_promote=True, window=30, promote_after_s=60.0, clock=clock,
        quality_check=gap,
    )  # fmt: skip
    decisions = [serve(system, i)[2] for i in range(1, 200)]
    assert decisions == [None] * len(decisions)  # healthy, but not old enough
    assert system.stats()["v2"].total >= 30
    clock.now += 61.0
    i = 200
    while (decision := serve(system, i)[2]) is None and i < 260:
        i += 1
    assert decision is not None and decision.action == "promote"
    assert decision.reasons == ("healthy",) and decision.stable == "v1"
    assert system.stable_version == "v2" and system.canary_version is None
    assert registry.channels(NAME) == {"stable": "v2", "canary": None}
    actions = [e["action"] for e in registry.events(NAME)]
    assert actions[-3:] == ["canary_promote", "promote", "end_canary"]
    assert all(serve(system, j)[0] == "v2" for j in range(300, 340))


def test_a_canary_that_is_never_worse_is_not_promoted_without_auto_promote(registry):
    system = make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2")}, window=10)
    assert all(serve(system, i)[2] is None for i in range(1, 100))
    assert system.canary_version == "v2" and system.decisions == []


def test_manual_rollback_and_a_new_canary_from_the_registry(registry):
    servables = {"v1": Servable("v1"), "v2": Servable("v2"), "v3": Servable("v3")}
    warmed = []
    system = make_system(registry, servables, warm=warmed.append)
    assert warmed == [servables["v1"], servables["v2"]]  # each warmed before it serves
    decision = system.rollback(("operator",))
    assert decision.reasons == ("operator",) and system.rollback() is None
    registry.publish(NAME, placeholder_artifact("third"))
    registry.promote(NAME, "v3", "canary")
    assert system.sync() is True and system.canary_version == "v3"
    assert warmed[-1] is servables["v3"] and len(warmed) == 3
    assert system.sync() is False
    status = system.status()
    assert status["canary"] == "v3" and status["decisions"][0]["action"] == "rollback"


def test_a_failing_or_nan_quality_check_counts_as_worst(registry):
    def broken(inputs, outputs):
        if outputs["y"][0] > 2 * inputs["x"][0]:
            raise ValueError("cannot judge")
        return float("nan") if inputs["x"][0] < 0 else 0.0

    system = make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2", scale=3.0)},
                         quality_check=broken)  # fmt: skip
    decisions = [serve(system, i)[2] for i in range(1, 80)]
    decision = next(d for d in decisions if d is not None)
    assert decision.reasons == ("quality",)
    assert decision.evidence["stats"]["v2"]["quality"] == "inf"


def test_output_quality_and_imported_checks():
    check = output_quality("residual")
    assert check({}, {"residual": np.array([1.0, 3.0])}) == 2.0
    imported = import_quality_check("opifex.deploy._canary:output_quality")
    assert imported is output_quality
    with pytest.raises(ValueError, match=r"package\.module:function"):
        import_quality_check("no_colon")
    with pytest.raises(ValueError, match="output must be"):
        output_quality("")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"canary_percentage": 101}, "canary_percentage"),
        ({"canary_percentage": float("nan")}, "canary_percentage"),
        ({"rollback_threshold": -0.1}, "rollback_threshold"),
        ({"latency_threshold": float("inf")}, "latency_threshold"),
        ({"min_requests": 0}, "min_requests"),
        ({"window": 5, "min_requests": 10}, "window"),
        ({"auto_promote": "yes"}, "auto_promote"),
    ],
)
def test_bad_options_are_refused(registry, options, match):
    with pytest.raises(ValueError, match=match):
        make_system(registry, {"v1": Servable("v1"), "v2": Servable("v2")}, **options)


def test_a_name_without_stable_version_is_refused(tmp_path):
    registry = Registry(tmp_path)
    registry.publish(NAME, placeholder_artifact("only"))
    with pytest.raises(NotInRegistryError, match="no stable version"):
        AdaptiveDeploymentSystem(registry, NAME, load=lambda name, version: Servable(version))
    with pytest.raises(TypeError, match="quality_check"):
        registry.promote(NAME, "v1")
        AdaptiveDeploymentSystem(registry, NAME, quality_check="gap")
