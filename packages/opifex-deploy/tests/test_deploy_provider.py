"""A registry-backed service: serves the channels' versions and follows their changes.

Most tests use placeholder artifacts and small numpy servables (the ``load`` hook); one
serves a real exported JAX function end to end through ``create_registry_app``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy._artifact import FORMAT, ExportedFunction, export_function
from opifex.deploy._provider import (
    SERVE_CONFIG_ENV,
    RegistryTable,
    app_from_environment,
    create_registry_app,
    serve_config,
    warm_servable,
)
from opifex.deploy._registry import Registry
from opifex.deploy._service import create_app
from opifex.deploy._signature import Signature, TensorSpec

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message=".*starlette.testclient")
    from starlette.testclient import TestClient

SIGNATURE = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
PREDICT = "/v1/solvers/double/predict"


def placeholder_artifact(name: str, tag: str) -> ExportedFunction:
    data = f"placeholder {name} {tag}".encode()
    metadata = {
        "format": FORMAT,
        "format_version": 1,
        "name": name,
        "signature": SIGNATURE.to_json(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "platforms": ["cpu"],
    }
    return ExportedFunction(None, data, metadata)


class Servable:
    """``y = scale * x``; raises on inputs where ``fails(x)``; counts its examples."""

    def __init__(self, version, scale=2.0, fails=None):
        self.signature = SIGNATURE
        self.sha256 = f"sha-{version}"
        self.version = version
        self.scale = scale
        self.fails = fails
        self.examples = 0

    def __call__(self, inputs):
        x = np.asarray(inputs["x"])
        self.examples += len(x)
        if self.fails is not None and np.any(self.fails(x)):
            raise RuntimeError("injected fault")
        return {"y": (self.scale * x).astype(np.float32)}


@pytest.fixture
def registry(tmp_path):
    registry = Registry(tmp_path / "registry")
    for tag in ("v1", "v2", "v3"):
        registry.publish("double", placeholder_artifact("double", tag))
    registry.promote("double", "v1")
    return registry


@pytest.fixture
def servables():
    return {v: Servable(v) for v in ("v1", "v2", "v3")}


def test_serves_stable_and_follows_the_channels_warming_first(registry, servables):
    warmed = []

    def warm(servable):  # nothing is routed to a version before it is warm
        assert all(table.route("double", f"{i:08x}")[1] is not servable for i in range(50))
        warmed.append(servable.version)

    table = None
    table = RegistryTable(
        registry,
        load=lambda name, version: servables[version],
        warm=lambda s: warmed.append(s.version) if table is None else warm(s),
        canary_percentage=50.0,
    )
    assert table.get("double")[0] == "v1" and table.systems["double"].canary_version is None
    assert table.refresh() == []
    registry.promote("double", "v2", "canary")
    assert table.refresh() == ["double"] and warmed == ["v1", "v2"]
    routed = {table.route("double", f"{i * 99991:08x}")[0] for i in range(200)}
    assert routed == {"v1", "v2"}
    registry.promote("double", "v3")  # the operator moves stable on
    assert table.refresh() == ["double"] and table.get("double")[0] == "v3"
    assert warmed == ["v1", "v2", "v3"]


def test_canary_errors_through_the_service_roll_back_and_nothing_reaches_it_after(
    registry, servables
):
    bad = Servable("v2", fails=lambda x: x % 4 == 0)
    servables["v2"] = bad
    registry.promote("double", "v2", "canary")
    table = RegistryTable(
        registry,
        load=lambda name, version: servables[version],
        canary_percentage=30.0,
        latency_threshold=100.0,  # this test is about errors: no rollback on latency noise
        min_requests=8,
        window=20,
    )
    app = create_app(table, max_batch_size=2, warm_up=False, cache_size=0)
    statuses = []
    with TestClient(app) as client:
        for i in range(1, 300):
            answer = client.post(PREDICT, json={"instance": {"x": i}})
            statuses.append((answer.status_code, answer.json().get("version")))
            if registry.channels("double")["canary"] is None:
                break
        decision = table.systems["double"].decisions[0]
        assert decision.action == "rollback" and decision.reasons == ("error_rate",)
        examples = bad.examples
        for i in range(1000, 1100):
            answer = client.post(PREDICT, json={"instance": {"x": i}})
            assert answer.status_code == 200 and answer.json() == {
                "outputs": {"y": 2.0 * i},
                "version": "v1",
                "cached": False,
            }
        assert bad.examples == examples
    assert (500, None) in statuses  # the canary's faults were real answers before the decision
    assert registry.events("double")[-2]["action"] == "canary_rollback"


def test_a_version_that_fails_to_load_keeps_the_previous_one_serving(registry, servables, caplog):
    def load(name, version):
        if version == "v2":
            raise ValueError("corrupt artifact")
        return servables[version]

    table = RegistryTable(registry, load=load)
    registry.promote("double", "v2")
    with caplog.at_level(logging.ERROR, logger="opifex.deploy._provider"):
        assert table.refresh() == []
    assert "could not follow the registry's channels of 'double'" in caplog.text
    assert table.get("double")[0] == "v1"
    with pytest.raises(ValueError, match="corrupt artifact"):
        RegistryTable(registry, load=load)  # at start-up, a failure is an error


def test_names_are_served_once_they_have_a_stable_version(registry, servables):
    registry.publish("triple", placeholder_artifact("triple", "v1"))
    table = RegistryTable(registry, load=lambda name, version: servables[version])
    assert table.names() == ["double"]
    registry.promote("triple", "v1")
    assert table.refresh() == ["triple"] and table.names() == ["double", "triple"]
    only = RegistryTable(registry, ["triple"], load=lambda name, version: servables[version])
    assert only.names() == ["triple"]


def test_the_polling_thread_follows_a_promotion_within_its_period(registry, servables):
    table = RegistryTable(
        registry, load=lambda name, version: servables[version], poll_interval_s=0.05
    )
    table.start()
    try:
        registry.promote("double", "v2")
        promoted = time.monotonic()
        while table.get("double")[0] != "v2":
            assert time.monotonic() - promoted < 5.0, "not followed within 5 s (period 0.05 s)"
            time.sleep(0.01)
    finally:
        table.stop()
    assert table._thread is None


def test_a_promotion_decided_by_the_canary_is_listed(registry, servables):
    registry.promote("double", "v2", "canary")
    table = RegistryTable(
        registry, load=lambda name, version: servables[version], canary_percentage=50.0
    )
    assert table.systems["double"].promote() is not None
    table.observe("double", "v1", _outcome())  # the next request brings the listing up to date
    assert table.get("double")[0] == "v2"
    assert table.status()["double"]["stable"] == "v2"


def _outcome():
    from opifex.deploy._service import RequestOutcome

    return RequestOutcome(200, 0.001, {"x": np.ones(1)}, {"y": 2 * np.ones(1)}, False)


def test_warm_servable_calls_every_bucket():
    servable = Servable("v1")
    warm_servable(servable, (1, 2, 4))
    assert servable.examples == 7


def test_app_from_environment_needs_its_configuration(monkeypatch):
    monkeypatch.delenv(SERVE_CONFIG_ENV, raising=False)
    with pytest.raises(RuntimeError, match=SERVE_CONFIG_ENV):
        app_from_environment()
    monkeypatch.setenv(SERVE_CONFIG_ENV, "{not json")
    with pytest.raises(RuntimeError, match="not a serve configuration"):
        app_from_environment()
    config = json.loads(serve_config("dir", ["a"], quality_output="residual"))
    assert config["names"] == ["a"] and config["quality_output"] == "residual"
    with pytest.raises(ValueError, match="not both"):
        serve_config("dir", quality_output="r", quality_check="m:f")


def test_a_real_exported_function_is_served_and_a_new_canary_followed(tmp_path):
    registry = Registry(tmp_path / "registry")
    for scale in (2.0, 3.0):
        fn = export_function(lambda x, s=scale: {"y": s * jnp.abs(x)}, SIGNATURE, name="double")
        registry.publish("double", fn)
    registry.promote("double", "v1")
    app = create_registry_app(
        registry, poll_interval_s=0.05, canary={"canary_percentage": 100.0}, max_batch_size=2
    )
    with TestClient(app) as client:
        first = client.post(PREDICT, json={"instance": {"x": -1.5}}).json()
        assert first == {"outputs": {"y": 3.0}, "version": "v1", "cached": False}
        registry.promote("double", "v2", "canary")
        promoted = time.monotonic()
        while (answer := client.post(PREDICT, json={"instance": {"x": 2.0}}).json())[
            "version"
        ] != "v2":
            assert time.monotonic() - promoted < 10.0, answer
            time.sleep(0.02)
        assert answer["outputs"] == {"y": 6.0}
    assert app.state.table._thread is None  # polling stopped with the application
