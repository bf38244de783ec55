"""``export_function`` / ``load_artifact``: one artifact for every batch size, verified loads.

The exported functions are small closed forms, so the reference is numpy evaluating the same
formula (float64: to 1e-14 relative; float32: to 1e-6). Every export here is of a tiny program
(tens of milliseconds to lower and compile); the real solvers are exported in
``tests/integration/test_deploy_exportables.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy import (
    ArtifactCompatibilityError,
    ArtifactIntegrityError,
    ExportedFunction,
    Signature,
    TensorSpec,
    export_function,
    load_artifact,
)
from opifex.deploy._artifact import FORMAT

SIG64 = Signature(
    inputs=(TensorSpec("x", (3,), "float64"), TensorSpec("w", (), "float64")),
    outputs=(TensorSpec("y", (3,), "float64"), TensorSpec("total", (), "float64")),
)
SIG32 = Signature(
    inputs=(TensorSpec("x", (3,), "float32"), TensorSpec("w", (), "float32")),
    outputs=(TensorSpec("y", (3,), "float32"), TensorSpec("total", (), "float32")),
)


def affine_tanh(x, w):
    return {"y": jnp.tanh(w * x + 1.0), "total": jnp.sum(x * x)}


def reference(x, w):
    return {"y": np.tanh(w[:, None] * x + 1.0), "total": np.sum(x * x, axis=1)}


def batch(size, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(size, 3)).astype(dtype), "w": rng.normal(size=size).astype(dtype)}


@pytest.fixture(scope="module")
def exported64():
    return export_function(affine_tanh, SIG64)


@pytest.fixture(scope="module")
def exported32():
    return export_function(affine_tanh, SIG32, name="affine32")


def test_one_artifact_serves_every_batch_size_float64(exported64):
    loaded = load_artifact(exported64.to_bytes(), exported64.metadata)  # no re-export
    direct = jax.jit(jax.vmap(affine_tanh))
    for size in (1, 2, 5):
        inputs = batch(size, np.float64, seed=size)
        out = loaded(inputs)
        expected = reference(**inputs)
        with jax.enable_x64(True):
            jitted = direct(**inputs)
        for name in ("y", "total"):
            assert out[name].dtype == np.float64 and out[name].shape[0] == size
            np.testing.assert_allclose(out[name], expected[name], rtol=1e-14, atol=0)
            np.testing.assert_allclose(out[name], jitted[name], rtol=1e-15, atol=0)


def test_float32_artifact_and_python_lists(exported32):
    inputs = batch(4, np.float32)
    out = exported32({"x": inputs["x"].tolist(), "w": inputs["w"].tolist()})
    assert out["y"].dtype == np.float32 and out["total"].shape == (4,)
    expected = reference(inputs["x"].astype(np.float64), inputs["w"].astype(np.float64))
    np.testing.assert_allclose(out["y"], expected["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["total"], expected["total"], rtol=1e-6)


def test_float64_artifact_runs_whatever_the_x64_setting(exported64):
    inputs = batch(2, np.float64)
    for enabled in (False, True):
        jax.config.update("jax_enable_x64", enabled)
        out = exported64(inputs)
        assert out["y"].dtype == np.float64
        np.testing.assert_allclose(out["total"], reference(**inputs)["total"], rtol=1e-14)


def test_metadata_records_what_the_artifact_is(exported64):
    meta = exported64.metadata
    assert meta["format"] == FORMAT and meta["name"] == "affine_tanh"
    assert Signature.from_json(meta["signature"]) == SIG64 == exported64.signature
    assert meta["sha256"] == hashlib.sha256(exported64.to_bytes()).hexdigest() == exported64.sha256
    assert meta["size"] == len(exported64.to_bytes())
    assert meta["platforms"] == ["cpu"] and meta["jax_version"] == jax.__version__
    assert isinstance(meta["calling_convention_version"], int)
    assert meta["x64"] is True and meta["created"].endswith("+00:00")
    assert json.loads(json.dumps(meta)) == meta  # JSON-ready
    assert "affine_tanh" in repr(exported64) and "x: float64[3]" in repr(exported64)


def test_export_is_deterministic(exported64):
    again = export_function(affine_tanh, SIG64)
    assert again.sha256 == exported64.sha256


def test_load_from_json_metadata(exported32):
    meta = json.loads(json.dumps(exported32.metadata))
    loaded = load_artifact(exported32.to_bytes(), meta)
    inputs = batch(3, np.float32, seed=7)
    np.testing.assert_array_equal(loaded(inputs)["y"], exported32(inputs)["y"])


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"x": np.ones((2, 4)), "w": np.ones(2)}, "input 'x' must have shape"),
        ({"x": np.ones(3), "w": np.ones(1)}, "input 'x' must have shape"),
        ({"x": np.full((1, 3), np.nan), "w": np.ones(1)}, "NaN or inf"),
        ({"x": np.ones((1, 3)), "w": np.array([np.inf])}, "NaN or inf"),
        ({"x": np.ones((1, 3)), "w": np.ones(1), "z": np.ones(1)}, "unknown \\['z'\\]"),
        ({"x": np.ones((1, 3))}, "missing \\['w'\\]"),
        ({"x": np.ones((2, 3)), "w": np.ones(3)}, "same non-zero batch size"),
        ({"x": np.ones((0, 3)), "w": np.ones(0)}, "same non-zero batch size"),
        ({"x": [["a", "b", "c"]], "w": [1.0]}, "not an array of float32"),
    ],
)
def test_bad_inputs_raise_value_error(exported32, payload, match):
    with pytest.raises(ValueError, match=match):
        exported32(payload)


def test_export_checks_fn_outputs_against_the_signature():
    with pytest.raises(ValueError, match="missing \\['total'\\]"):
        export_function(lambda x, w: {"y": x * w}, SIG32, name="f")
    with pytest.raises(ValueError, match="output 'total' has shape \\(3,\\)"):
        export_function(lambda x, w: {"y": x * w, "total": x}, SIG32, name="f")
    with pytest.raises(ValueError, match="dtype int32"):
        export_function(lambda x, w: {"y": x * w, "total": jnp.int32(1)}, SIG32, name="f")
    with pytest.raises(ValueError, match="must return a dict"):
        export_function(lambda x, w: x, SIG32, name="f")


def test_export_rejects_bad_arguments():
    with pytest.raises(TypeError, match="fn must be callable"):
        export_function(3, SIG32, name="f")
    with pytest.raises(ValueError, match="signature must be a Signature"):
        export_function(affine_tanh, SIG32.to_json(), name="f")
    with pytest.raises(ValueError, match="platforms must be among"):
        export_function(affine_tanh, SIG32, platforms=("cpu", "gpu"))
    with pytest.raises(ValueError, match="platforms must be a non-empty"):
        export_function(affine_tanh, SIG32, platforms="cpu")
    with pytest.raises(ValueError, match="name is required"):
        export_function(lambda x, w: {}, SIG32)
    with pytest.raises(ValueError, match="name must be letters"):
        export_function(affine_tanh, SIG32, name="../escape")


def test_flipped_byte_is_refused_naming_both_hashes(exported32):
    data = bytearray(exported32.to_bytes())
    data[len(data) // 2] ^= 0x01
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ArtifactIntegrityError, match="fails its integrity check") as info:
        load_artifact(bytes(data), exported32.metadata)
    assert actual in str(info.value) and exported32.sha256 in str(info.value)
    assert isinstance(info.value, ValueError)


def test_metadata_that_does_not_describe_the_artifact_is_refused(exported32):
    meta = exported32.metadata
    meta["signature"] = SIG64.to_json()  # right hash, wrong dtypes
    with pytest.raises(ArtifactIntegrityError, match="metadata does not describe it"):
        load_artifact(exported32.to_bytes(), meta)


def test_unreadable_bytes_with_a_matching_hash_are_incompatible(exported32):
    junk = b"not a jax.export artifact"
    meta = {**exported32.metadata, "sha256": hashlib.sha256(junk).hexdigest()}
    with pytest.raises(ArtifactCompatibilityError, match="cannot be read by jax"):
        load_artifact(junk, meta)


def test_unsupported_calling_convention_is_refused(exported32):
    meta = {**exported32.metadata, "calling_convention_version": 1, "jax_version": "0.3.0"}
    with pytest.raises(ArtifactCompatibilityError, match=r"calling convention 1 .*jax 0\.3\.0"):
        load_artifact(exported32.to_bytes(), meta)


def test_newer_format_and_bad_metadata_are_refused(exported32):
    data = exported32.to_bytes()
    with pytest.raises(ArtifactCompatibilityError, match="format version 99"):
        load_artifact(data, {**exported32.metadata, "format_version": 99})
    with pytest.raises(ValueError, match="metadata is missing \\['sha256'\\]"):
        load_artifact(data, {k: v for k, v in exported32.metadata.items() if k != "sha256"})
    with pytest.raises(ValueError, match="metadata\\['format'\\]"):
        load_artifact(data, {**exported32.metadata, "format": "other"})
    with pytest.raises(TypeError, match="data must be bytes"):
        load_artifact("text", exported32.metadata)


def test_artifact_for_an_absent_platform_exports_but_does_not_load():
    tpu_only = export_function(affine_tanh, SIG32, platforms=("tpu",))
    assert tpu_only.metadata["platforms"] == ["tpu"]
    with pytest.raises(ArtifactCompatibilityError, match="exported for platforms \\['tpu'\\]"):
        load_artifact(tpu_only.to_bytes(), tpu_only.metadata)
    with pytest.raises(ArtifactCompatibilityError, match="export it again with platforms"):
        tpu_only(batch(1, np.float32))


def test_multi_platform_artifact_runs_on_cpu():
    both = export_function(affine_tanh, SIG32, platforms=("tpu", "cpu"), name="both")
    loaded = load_artifact(both.to_bytes(), both.metadata)
    assert isinstance(loaded, ExportedFunction) and loaded.platforms == ("tpu", "cpu")
    inputs = batch(2, np.float32)
    np.testing.assert_allclose(loaded(inputs)["total"], reference(**inputs)["total"], rtol=1e-6)


def test_a_batch_size_is_compiled_once(exported32, caplog):
    caplog.set_level(logging.WARNING, logger="jax")
    with jax.log_compiles(True):
        exported32(batch(11, np.float32))
        first = sum("Compiling" in r.getMessage() for r in caplog.records)
        caplog.clear()
        exported32(batch(11, np.float32, seed=1))
        again = sum("Compiling" in r.getMessage() for r in caplog.records)
    assert first == 1 and again == 0
