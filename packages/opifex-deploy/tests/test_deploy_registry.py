"""``Registry``: versions, channels, rollback, events, checkpoints and the failure cases.

Two small exported functions (``y = 2 x`` and ``y = 3 x``, float32) are published in every
test, so that which version answered is read off its output. The failure cases are real: bytes
flipped on disk, a publish that fails half-way through writing the artifact (in this process,
and a process killed with SIGKILL in the middle of its write, marked ``e2e`` as a subprocess
test), a publish that dies on an object store before its commit marker, and an artifact
exported for a platform this machine does not have.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy import (
    ArtifactCompatibilityError,
    ArtifactIntegrityError,
    NotInRegistryError,
    Registry,
    Signature,
    TensorSpec,
    export_function,
)

SIG = Signature((TensorSpec("x", (2,), "float32"),), (TensorSpec("y", (2,), "float32"),))
X = {"x": np.array([[1.0, -2.0]], dtype=np.float32)}


@pytest.fixture(scope="module")
def double():
    return export_function(lambda x: {"y": 2 * x}, SIG, name="double")


@pytest.fixture(scope="module")
def triple():
    return export_function(lambda x: {"y": 3 * x}, SIG, name="triple")


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path):
    if request.param == "local":
        yield Registry(tmp_path / "registry")
        return
    url = f"memory://registry-{uuid.uuid4().hex}"
    yield Registry(url)
    import fsspec

    fsspec.filesystem("memory").rm(url[len("memory://") :], recursive=True)


def factor(registry, name="solver", version="stable"):
    """Which function answered: 2 (double) or 3 (triple)."""
    return float(registry.load(name, version)(X)["y"][0, 0])


def test_publish_assigns_versions_and_load_verifies(registry, double, triple):
    assert registry.names() == [] and registry.versions("solver") == []
    assert registry.publish("solver", double) == "v1"
    assert registry.publish("solver", triple, extra_metadata={"seed": 3}) == "v2"
    assert registry.publish("other", double) == "v1"
    assert registry.names() == ["other", "solver"]
    assert registry.versions("solver") == ["v1", "v2"]
    assert factor(registry, version="v1") == 2.0
    assert factor(registry, version="latest") == factor(registry, version="v2") == 3.0
    meta = registry.metadata("solver", "v2")
    assert meta["version"] == "v2" and meta["extra"] == {"seed": 3}
    assert meta["sha256"] == triple.sha256 and meta["checkpoint"] is None
    assert registry.load("solver", "v2").metadata["published"] == meta["published"]


def test_channels_promote_rollback_and_events(registry, double, triple):
    for fn in (double, triple, double):
        registry.publish("solver", fn)
    assert registry.channels("solver") == {"stable": None, "canary": None}
    with pytest.raises(NotInRegistryError, match="no stable version; promote one"):
        registry.load("solver")
    registry.promote("solver", "v1")
    registry.promote("solver", "v2", channel="canary")
    assert factor(registry) == 2.0 and factor(registry, version="canary") == 3.0
    registry.promote("solver", "canary")  # the canary becomes stable
    registry.promote("solver", "v2")  # already stable: no change, no event
    assert registry.channels("solver") == {"stable": "v2", "canary": "v2"}
    registry.promote("solver", "latest")
    assert registry.channels("solver")["stable"] == "v3"
    assert registry.rollback("solver") == "v2"
    assert registry.rollback("solver") == "v1"
    with pytest.raises(ValueError, match="no earlier stable version"):
        registry.rollback("solver")
    registry.end_canary("solver")
    assert registry.channels("solver") == {"stable": "v1", "canary": None}
    assert registry.rollback("solver", channel="canary") == "v2"  # undoes end_canary
    assert registry.rollback("solver", channel="canary") is None
    with pytest.raises(ValueError, match="no canary to roll back"):
        registry.rollback("solver", channel="canary")
    events = registry.events("solver")
    assert [(e["action"], e.get("channel"), e["version"]) for e in events] == [
        ("publish", None, "v1"),
        ("publish", None, "v2"),
        ("publish", None, "v3"),
        ("promote", "stable", "v1"),
        ("promote", "canary", "v2"),
        ("promote", "stable", "v2"),
        ("promote", "stable", "v3"),
        ("rollback", "stable", "v2"),
        ("rollback", "stable", "v1"),
        ("end_canary", "canary", None),
        ("rollback", "canary", "v2"),
        ("rollback", "canary", None),
    ]
    assert events[6]["previous"] == "v2" and all(e["time"].endswith("+00:00") for e in events)


def test_lookup_errors_name_what_exists(registry, double):
    registry.publish("solver", double)
    with pytest.raises(NotInRegistryError, match=r"no versions of 'missing'.*\['solver'\]"):
        registry.load("missing", "latest")
    with pytest.raises(NotInRegistryError, match=r"one of \['v1'\].*got 'v7'"):
        registry.load("solver", "v7")
    with pytest.raises(LookupError):
        registry.promote("solver", "v2")
    with pytest.raises(ValueError, match="channel must be one of"):
        registry.promote("solver", "v1", channel="beta")
    with pytest.raises(ValueError, match="name must be letters"):
        registry.publish("../up", double)
    with pytest.raises(TypeError, match="exported must be an ExportedFunction"):
        registry.publish("solver", double.to_bytes())
    with pytest.raises(TypeError, match="extra_metadata must be JSON-serialisable"):
        registry.publish("solver", double, extra_metadata={"array": np.ones(2)})
    with pytest.raises(NotInRegistryError, match="without a checkpoint"):
        registry.load_checkpoint("solver", "v1")
    assert registry.versions("solver") == ["v1"]


def test_checkpoint_round_trip(registry, double):
    params = {"w": np.arange(6.0).reshape(2, 3), "layers": [np.float32(1.5), np.int32(7)]}
    version = registry.publish("solver", double, checkpoint=params)
    restored = registry.load_checkpoint("solver", version)
    np.testing.assert_array_equal(restored["w"], params["w"])
    assert restored["layers"][0] == 1.5 and restored["layers"][1].dtype == np.int32
    like = {"w": jnp.zeros((2, 3), jnp.float32), "layers": [np.float32(0), np.int32(0)]}
    with pytest.raises(ValueError, match="dtype float64; like has float32"):
        registry.load_checkpoint("solver", version, like=like)
    record = registry.metadata("solver", version)["checkpoint"]
    assert record["file"] == "checkpoint.npz" and len(record["sha256"]) == 64


def _path(registry, *parts):
    return registry._store.join(*parts)


def _flip_byte(registry, path):
    data = bytearray(registry._store.read(path))
    data[len(data) // 3] ^= 0xFF
    registry._store._put(path, bytes(data))


def test_corrupted_artifact_is_refused_and_other_versions_load(registry, double, triple):
    registry.publish("solver", double)
    registry.publish("solver", triple)
    registry.publish("solver", double, checkpoint={"w": np.ones(3)})
    _flip_byte(registry, _path(registry, "solver", "v2", "artifact.bin"))
    with pytest.raises(ArtifactIntegrityError, match="fails its integrity check") as info:
        registry.load("solver", "v2")
    assert triple.sha256 in str(info.value)
    assert factor(registry, version="v1") == 2.0
    _flip_byte(registry, _path(registry, "solver", "v3", "checkpoint.npz"))
    with pytest.raises(ArtifactIntegrityError, match="checkpoint fails its integrity check"):
        registry.load_checkpoint("solver", "v3")
    registry._store._put(_path(registry, "solver", "v1", "metadata.json"), b"{not json")
    with pytest.raises(ArtifactIntegrityError, match=r"metadata\.json is not valid JSON"):
        registry.load("solver", "v1")


class WriteInterruptedError(Exception):
    pass


def _fail_on(store_class, monkeypatch, filename):
    """Make the store write half of ``filename`` and then raise, as a crash mid-write would."""
    real = store_class._put

    def put(self, path, data):
        if os.path.basename(path) == filename:
            real(self, path, data[: len(data) // 2])
            raise WriteInterruptedError(f"interrupted while writing {path}")
        real(self, path, data)

    monkeypatch.setattr(store_class, "_put", put)


@pytest.mark.parametrize("filename", ["artifact.bin", "metadata.json"])
def test_publish_interrupted_mid_write_leaves_no_version(
    registry, double, triple, monkeypatch, filename
):
    registry.publish("solver", double)
    registry.promote("solver", "v1")
    _fail_on(type(registry._store), monkeypatch, filename)
    with pytest.raises(WriteInterruptedError):
        registry.publish("solver", triple)
    monkeypatch.undo()
    assert registry.versions("solver") == ["v1"] and registry.names() == ["solver"]
    assert factor(registry) == 2.0
    assert [e["action"] for e in registry.events("solver")] == ["publish", "promote"]
    leftovers = registry._store.children(_path(registry, "solver"))
    assert leftovers == ["v1"]  # the partial directory was removed on the way out
    assert registry.publish("solver", triple) == "v2" and factor(registry, version="v2") == 3.0


def test_store_version_without_commit_marker_is_ignored_and_not_reused(double, triple):
    url = f"memory://registry-{uuid.uuid4().hex}"
    registry = Registry(url)
    registry.publish("solver", double)
    # what a publisher killed before writing metadata.json leaves on an object store
    registry._store._put(_path(registry, "solver", "v2", "artifact.bin"), triple.to_bytes())
    assert registry.versions("solver") == ["v1"]
    with pytest.raises(NotInRegistryError):
        registry.load("solver", "v2")
    assert registry.publish("solver", triple) == "v3"
    assert factor(registry, version="latest") == 3.0


def test_local_partial_directory_is_ignored(tmp_path, double):
    registry = Registry(tmp_path)
    registry.publish("solver", double)
    partial = tmp_path / "solver" / ".partial-crashed"
    partial.mkdir()
    (partial / "artifact.bin").write_bytes(b"half")
    assert registry.versions("solver") == ["v1"]
    assert registry.publish("solver", double) == "v2"


def test_concurrent_publishers_get_distinct_versions(tmp_path, double):
    registry = Registry(str(tmp_path))
    results, errors = [], []

    def publish():
        try:
            results.append(Registry(str(tmp_path)).publish("solver", double))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=publish) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 9)]
    assert registry.versions("solver") == [f"v{i}" for i in range(1, 9)]
    assert len(registry.events("solver")) == 8


def test_artifact_for_an_absent_platform_is_refused_by_load(registry, double):
    tpu_only = export_function(lambda x: {"y": 2 * x}, SIG, platforms=("tpu",), name="tpu")
    registry.publish("solver", double)
    registry.publish("solver", tpu_only)
    with pytest.raises(ArtifactCompatibilityError, match="exported for platforms \\['tpu'\\]"):
        registry.load("solver", "v2")
    assert factor(registry, version="v1") == 2.0


def test_roots_file_url_and_missing_fsspec(tmp_path, double, monkeypatch):
    registry = Registry(f"file://{tmp_path}")
    registry.publish("solver", double)
    assert Registry(tmp_path).versions("solver") == ["v1"]
    assert json.loads((tmp_path / "solver" / "v1" / "metadata.json").read_text())["version"]
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match="opifex-deploy\\[fsspec\\]"):
        Registry("s3://bucket/registry")
    with pytest.raises(TypeError, match="root must be a path or an fsspec URL"):
        Registry(3)


CHILD = """
import json, os, sys, time
from pathlib import Path
from opifex.deploy import Registry, load_artifact
from opifex.deploy import _registry

root, marker, source = sys.argv[1:4]
exported = load_artifact(
    Path(source, "artifact.bin").read_bytes(),
    json.loads(Path(source, "metadata.json").read_text()),
)
real = _registry._LocalStore._put

def put(self, path, data):
    if os.path.basename(path) == "artifact.bin":
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
        Path(marker).touch()
        time.sleep(600)  # killed here, half-way through the artifact
    real(self, path, data)

_registry._LocalStore._put = put
Registry(root).publish("solver", exported)
"""


@pytest.mark.e2e
def test_publish_killed_with_sigkill_leaves_the_registry_readable(tmp_path, double, triple):
    root = tmp_path / "registry"
    registry = Registry(root)
    registry.publish("solver", double)
    registry.promote("solver", "v1")
    source = tmp_path / "source"
    source.mkdir()
    (source / "artifact.bin").write_bytes(triple.to_bytes())
    (source / "metadata.json").write_text(json.dumps(triple.metadata))
    marker = tmp_path / "writing"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen([sys.executable, str(script), str(root), str(marker), str(source)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the publishing process ended before its write"
            assert time.monotonic() < deadline, "the publishing process never started writing"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    partial = [p.name for p in (root / "solver").iterdir() if p.name.startswith(".partial-")]
    assert len(partial) == 1  # the half-written version, hidden
    assert registry.versions("solver") == ["v1"] and factor(registry) == 2.0
    assert registry.publish("solver", triple) == "v2" and factor(registry, version="v2") == 3.0
    assert [e["action"] for e in registry.events("solver")] == ["publish", "promote", "publish"]


DOCS = Path(__file__).resolve().parents[3] / "docs" / "packages" / "deploy.md"


@pytest.mark.e2e
def test_the_docs_examples_of_export_and_registry_run(tmp_path, monkeypatch):
    import re

    text = DOCS.read_text("utf-8")
    start = text.index("## Export and registry")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {})
