"""Tests for ``save_pytree`` / ``load_pytree``: round trips, dtypes, atomicity, corruption.

The file format is checked independently of the loader too: a checkpoint must open with plain
``numpy.load`` and ``zipfile``, and its SHA-256 is recomputed here from the raw members.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import _checkpoint
from opifex.core._checkpoint import HEADER_NAME, load_metadata, load_pytree, save_pytree


def _assert_same_tree(a, b):
    """Same structure, leaf types and bitwise-equal values with equal dtypes."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, int | float | bool | complex):
            assert x == y
            continue
        assert x.dtype == y.dtype
        assert x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class Params(NamedTuple):
    w: jax.Array
    b: jax.Array


# --------------------------------------------------------------------------------------------
# round trips


def test_nested_round_trip_without_like(tmp_path):
    tree = {
        "layers": [
            {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)},
            {"w": np.ones((3, 1), np.float64), "b": np.array([0.5], np.float32)},
        ],
        "step": jnp.asarray(7, jnp.int32),
        "lr": 1e-3,
        "n": 5,
        "flag": True,
        "scalar": np.float32(2.5),
    }
    path = tmp_path / "ckpt.npz"
    save_pytree(path, tree)
    loaded = load_pytree(path)
    # nested dicts and lists of numpy arrays; Python scalars stay Python scalars
    assert set(loaded) == set(tree)
    assert isinstance(loaded["layers"], list) and len(loaded["layers"]) == 2
    np.testing.assert_array_equal(loaded["layers"][0]["w"], np.arange(6.0).reshape(2, 3))
    assert loaded["layers"][1]["w"].dtype == np.float64
    assert loaded["layers"][1]["b"].dtype == np.float32
    assert loaded["step"].dtype == np.int32 and loaded["step"].shape == () and loaded["step"] == 7
    assert loaded["lr"] == 1e-3 and type(loaded["lr"]) is float
    assert loaded["n"] == 5 and type(loaded["n"]) is int
    assert loaded["flag"] is True
    assert loaded["scalar"].dtype == np.float32 and float(loaded["scalar"]) == 2.5


def test_round_trip_with_like_restores_exact_structure_and_types(tmp_path):
    tree = {
        "params": Params(jnp.ones((2, 2)), jnp.zeros(2)),
        "pair": (np.arange(3), [jnp.float32(1.0), None]),
        "count": 3,
        "np_scalar": np.int64(4),
    }
    path = tmp_path / "ckpt.npz"
    save_pytree(path, tree)
    loaded = load_pytree(path, like=tree)
    _assert_same_tree(loaded, tree)
    assert isinstance(loaded["params"], Params)
    assert isinstance(loaded["pair"], tuple) and loaded["pair"][1][1] is None
    assert isinstance(loaded["params"].w, jax.Array)
    assert isinstance(loaded["pair"][0], np.ndarray)
    assert isinstance(loaded["np_scalar"], np.int64)
    # without like: NamedTuple attributes become dict keys, tuples lists, None a gap
    plain = load_pytree(path)
    assert set(plain["params"]) == {"w", "b"}
    assert isinstance(plain["pair"], list) and plain["pair"][1] == [np.float32(1.0)]


def test_like_may_hold_shape_dtype_structs(tmp_path):
    tree = {"w": jnp.arange(4.0), "step": jnp.int32(2)}
    path = tmp_path / "c.npz"
    save_pytree(path, tree)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    _assert_same_tree(load_pytree(path, like=abstract), tree)


@pytest.mark.slow
def test_optax_adam_state_round_trip_and_resume(tmp_path):
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    def loss(p):
        return jnp.sum(p["w"] ** 2) + p["b"] ** 2

    for _ in range(3):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    path = tmp_path / "opt.npz"
    save_pytree(path, {"params": params, "opt_state": state}, metadata={"step": 3})

    fresh = {"params": params, "opt_state": optimizer.init(params)}
    restored = load_pytree(path, like=fresh)
    _assert_same_tree(restored, {"params": params, "opt_state": state})
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert restored["opt_state"][0].count.dtype == jnp.int32
    assert int(restored["opt_state"][0].count) == 3
    assert load_metadata(path) == {"step": 3}

    # resuming from the checkpoint gives exactly the next step of the original run
    def next_step(p, s):
        updates, s = optimizer.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    expected = next_step(params, state)
    resumed = next_step(restored["params"], restored["opt_state"])
    _assert_same_tree(resumed, expected)


@pytest.mark.parametrize(
    "dtype",
    [
        jnp.bfloat16,
        jnp.float16,
        jnp.float32,
        jnp.int8,
        jnp.uint8,
        jnp.int32,
        jnp.uint32,
        jnp.bool_,
        jnp.complex64,
        jnp.float8_e4m3fn,
        jnp.int4,
    ],
)
def test_dtypes_are_preserved_bit_for_bit(tmp_path, dtype):
    values = np.array([0, 1, -1, 3, 0.5, 2, 7, 1], np.float32)
    if dtype == jnp.int4:
        values = np.array([0, 1, -1, 3, -8, 2, 7, 1])
    x = jnp.asarray(values).astype(dtype).reshape(2, 4)
    path = tmp_path / "d.npz"
    save_pytree(path, {"x": x, "empty": jnp.zeros((0, 3), dtype)})
    loaded = load_pytree(path)
    assert loaded["x"].dtype == np.dtype(dtype)
    assert loaded["empty"].shape == (0, 3)
    np.testing.assert_array_equal(
        np.asarray(loaded["x"]).view(np.uint8), np.asarray(x).view(np.uint8)
    )
    back = load_pytree(path, like={"x": x, "empty": jnp.zeros((0, 3), dtype)})
    assert back["x"].dtype == dtype and isinstance(back["x"], jax.Array)


def test_bfloat16_is_stored_as_uint16_view_readable_by_numpy(tmp_path):
    x = jnp.array([1.0, -2.5, jnp.inf, jnp.nan], jnp.bfloat16)
    path = tmp_path / "bf16.npz"
    save_pytree(path, {"x": x})
    with np.load(path, allow_pickle=False) as raw:  # plain numpy, no opifex, no pickle
        stored = raw["['x']"]
        header = json.loads(raw[HEADER_NAME])
    assert stored.dtype == np.uint16
    assert header["leaves"][0]["dtype"] == "bfloat16"
    assert header["leaves"][0]["stored_as"] == "uint16"
    np.testing.assert_array_equal(stored, np.asarray(x).view(np.uint16))
    loaded = load_pytree(path)["x"]
    assert loaded.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(loaded).view(np.uint16), stored)


def test_float64_with_x64(tmp_path):
    with jax.enable_x64(True):
        tree = {"x": jnp.array([1.0 / 3.0]), "i": jnp.array(2**40)}
        save_pytree(tmp_path / "f64.npz", tree)
        loaded = load_pytree(tmp_path / "f64.npz", like=tree)
        _assert_same_tree(loaded, tree)
        assert loaded["x"].dtype == jnp.float64 and loaded["i"].dtype == jnp.int64


def test_prng_keys_round_trip(tmp_path):
    tree = {
        "key": jax.random.key(42),
        "raw": jax.random.PRNGKey(1),
        "keys": jax.random.split(jax.random.key(0), 3),
    }
    path = tmp_path / "k.npz"
    save_pytree(path, tree)
    for loaded in (load_pytree(path), load_pytree(path, like=tree)):
        assert jax.dtypes.issubdtype(loaded["key"].dtype, jax.dtypes.prng_key)
        assert loaded["keys"].shape == (3,)
        np.testing.assert_array_equal(
            jax.random.normal(loaded["key"], (4,)), jax.random.normal(tree["key"], (4,))
        )
        np.testing.assert_array_equal(
            jax.random.key_data(loaded["keys"]), jax.random.key_data(tree["keys"])
        )
        np.testing.assert_array_equal(loaded["raw"], tree["raw"])


def test_root_leaf_and_empty_tree(tmp_path):
    save_pytree(tmp_path / "a.npz", jnp.arange(3))
    np.testing.assert_array_equal(load_pytree(tmp_path / "a.npz"), np.arange(3))
    save_pytree(tmp_path / "e.npz", {})
    assert load_pytree(tmp_path / "e.npz") == {}
    state = optax.sgd(0.1).init({"w": jnp.zeros(2)})  # EmptyState: no leaves
    save_pytree(tmp_path / "s.npz", state)
    assert load_pytree(tmp_path / "s.npz", like=state) == state


def test_integer_and_odd_dict_keys(tmp_path):
    # (jax cannot sort a dict mixing int and str keys, so they live in separate dicts)
    tree = {
        "by_int": {0: jnp.ones(1), 1: jnp.zeros(1), 10: jnp.ones(2)},
        "odd": {"a/b": jnp.full(2, 3.0), "it's": jnp.ones(()), "x.npy": jnp.zeros(1)},
    }
    path = tmp_path / "k.npz"
    save_pytree(path, tree)
    loaded = load_pytree(path)
    assert set(loaded["by_int"]) == {0, 1, 10}  # int keys stay ints (JSON keeps the type)
    assert set(loaded["odd"]) == {"a/b", "it's", "x.npy"}
    _assert_same_tree(load_pytree(path, like=tree), tree)


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"x": jnp.zeros(2)}, metadata={"v": 1})
    save_pytree(path, {"y": jnp.ones(5, jnp.int32)}, metadata={"v": 2})
    loaded = load_pytree(path)
    assert set(loaded) == {"y"}
    np.testing.assert_array_equal(loaded["y"], np.ones(5, np.int32))
    assert load_metadata(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_path_without_npz_suffix_is_used_as_is(tmp_path):
    path = str(tmp_path / "checkpoint")
    save_pytree(path, {"x": jnp.ones(1)})
    assert os.listdir(tmp_path) == ["checkpoint"]
    np.testing.assert_array_equal(load_pytree(path)["x"], np.ones(1))


def test_file_is_standard_npz_with_verifiable_checksum(tmp_path):
    tree = {"a": np.arange(4, dtype=np.int32), "b": [np.ones((2, 2))]}
    path = tmp_path / "c.npz"
    save_pytree(path, tree, metadata={"note": "hello"})
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(["['a'].npy", "['b'][0].npy", HEADER_NAME])
        header = json.loads(zf.read(HEADER_NAME))
        digest = hashlib.sha256()
        for leaf in header["leaves"]:
            array = np.load(io.BytesIO(zf.read(leaf["name"] + ".npy")))
            digest.update(leaf["name"].encode() + b"\0")
            digest.update(f"{array.dtype.str}{array.shape}".encode() + b"\0")
            digest.update(array.tobytes())
    assert header["format_version"] == _checkpoint.FORMAT_VERSION
    assert header["metadata"] == {"note": "hello"}
    assert header["sha256"] == digest.hexdigest()
    assert [leaf["keypath"] for leaf in header["leaves"]] == [
        [["key", "a"]],
        [["key", "b"], ["index", 0]],
    ]
    assert "PyTreeDef" in header["treedef"]


# --------------------------------------------------------------------------------------------
# like mismatches


def test_like_structure_mismatch_names_the_keypath(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"a": jnp.zeros(2), "b": {"c": jnp.ones(3)}})
    with pytest.raises(ValueError, match=r"like has leaf \['b'\]\['d'\] that the checkpoint"):
        load_pytree(path, like={"a": jnp.zeros(2), "b": {"d": jnp.ones(3)}})
    with pytest.raises(ValueError, match=r"the checkpoint has leaf \['b'\]\['c'\] that like"):
        load_pytree(path, like={"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"checkpoint leaf \['b'\]\['c'\] has shape \(3,\)"):
        load_pytree(path, like={"a": jnp.zeros(2), "b": {"c": jnp.ones(4)}})
    with pytest.raises(ValueError, match=r"checkpoint leaf \['a'\] has dtype float32; like"):
        load_pytree(path, like={"a": jnp.zeros(2, jnp.int32), "b": {"c": jnp.ones(3)}})
    with pytest.raises(ValueError, match=r"\['a'\] has shape \(2,\); like has a Python scalar"):
        load_pytree(path, like={"a": 0.0, "b": {"c": jnp.ones(3)}})


def test_like_with_same_leaves_in_other_order_is_rejected(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, [jnp.zeros(1), [jnp.ones(1)]])
    with pytest.raises(ValueError, match="does not match the structure of like"):
        load_pytree(path, like=[[jnp.ones(1)], jnp.zeros(1)])


# --------------------------------------------------------------------------------------------
# atomicity and corruption


def test_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    good = {"w": jnp.arange(3.0), "step": jnp.int32(1)}
    save_pytree(path, good)
    original_bytes = path.read_bytes()

    real_write_array = np.lib.format.write_array
    calls = []

    def crashing_write_array(fp, array, *args, **kwargs):
        calls.append(None)
        if len(calls) == 2:  # the second leaf: write half of it, then "crash"
            fp.write(array.tobytes()[: array.nbytes // 2])
            raise KeyboardInterrupt("simulated crash")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", crashing_write_array)
    with pytest.raises(KeyboardInterrupt):
        save_pytree(path, {"w": jnp.ones(1000), "step": jnp.int32(2)})
    monkeypatch.undo()

    assert path.read_bytes() == original_bytes
    _assert_same_tree(load_pytree(path, like=good), good)
    assert os.listdir(tmp_path) == ["c.npz"]  # the temporary file was removed


def test_crash_before_replace_on_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_pytree(tmp_path / "new.npz", {"x": jnp.ones(3)})
    assert os.listdir(tmp_path) == []


def test_a_leftover_partial_temporary_file_never_loads(tmp_path):
    # what a hard crash (no cleanup) would leave: a truncated archive next to the target
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": jnp.arange(100.0)})
    data = path.read_bytes()
    partial = tmp_path / ".c.npz.abc.tmp"
    partial.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_pytree(partial)
    np.testing.assert_array_equal(load_pytree(path)["w"], np.arange(100.0, dtype=np.float32))


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9, -1])
def test_truncated_file_raises_value_error(tmp_path, keep):
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": jnp.arange(200.0), "b": [jnp.ones(3)]})
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(ValueError, match="not a valid opifex checkpoint"):
        load_pytree(path)


def test_flipped_byte_in_payload_is_detected(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": jnp.arange(200.0)})
    data = bytearray(path.read_bytes())
    offset = data.index(np.arange(200.0, dtype=np.float32)[100:104].tobytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):  # the zip CRC-32 catches it
        load_pytree(path)


def test_consistent_zip_with_altered_data_fails_the_sha256(tmp_path):
    # rewrite the archive with one value changed but valid CRCs: only the checksum can tell
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": jnp.arange(5.0)})
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    tampered = np.arange(5.0, dtype=np.float32)
    tampered[2] = 42.0
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, tampered)
    members["['w'].npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with pytest.raises(ValueError, match="SHA-256"):
        load_pytree(path)


def test_not_a_checkpoint(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(2))
    with pytest.raises(ValueError, match="not an opifex checkpoint"):
        load_pytree(plain)
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones(2))
    with pytest.raises(ValueError, match="not a valid opifex checkpoint"):
        load_pytree(npy)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a valid opifex checkpoint"):
        load_pytree(empty)


def test_newer_format_version_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(_checkpoint, "FORMAT_VERSION", 99)
    save_pytree(tmp_path / "future.npz", {"x": jnp.ones(1)})
    monkeypatch.undo()
    with pytest.raises(ValueError, match="format version 99"):
        load_pytree(tmp_path / "future.npz")


# --------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize("bad", [None, 3, 1.5, b"bytes.npz", ["a.npz"], True])
def test_bad_path_types(bad):
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        save_pytree(bad, {"x": jnp.ones(1)})
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        load_pytree(bad)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="path must not be empty"):
        save_pytree("", {"x": jnp.ones(1)})
    with pytest.raises(ValueError, match="is a directory"):
        save_pytree(tmp_path, {"x": jnp.ones(1)})
    with pytest.raises(ValueError, match="is a directory"):
        load_pytree(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_pytree(tmp_path / "missing" / "c.npz", {"x": jnp.ones(1)})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_pytree(tmp_path / "absent.npz")
    # pathlib and str both work
    save_pytree(str(tmp_path / "s.npz"), {"x": jnp.ones(1)})
    load_pytree(pathlib.Path(tmp_path / "s.npz"))


def test_non_numeric_leaves_are_rejected_naming_the_keypath(tmp_path):
    with pytest.raises(TypeError, match=r"tree\['name'\] has dtype <U5"):
        save_pytree(tmp_path / "c.npz", {"x": jnp.ones(1), "name": "hello"})
    with pytest.raises(TypeError, match=r"tree\['f'\]"):
        save_pytree(tmp_path / "c.npz", {"f": lambda x: x})
    with pytest.raises(TypeError, match=r"tree\['big'\]"):
        save_pytree(tmp_path / "c.npz", {"big": 2**80})
    assert os.listdir(tmp_path) == []


def test_bad_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        save_pytree(tmp_path / "c.npz", {"x": jnp.ones(1)}, metadata={"a": object()})
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        save_pytree(tmp_path / "c.npz", {"x": jnp.ones(1)}, metadata=[1, 2])
    assert os.listdir(tmp_path) == []


def test_file_mode_follows_umask(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"x": jnp.ones(1)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_header_with_unknown_dtype_is_rejected(tmp_path):
    path = tmp_path / "c.npz"
    save_pytree(path, {"w": jnp.arange(3.0, dtype=jnp.bfloat16)})
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(members[HEADER_NAME])
    header["leaves"][0]["dtype"] = "not_a_dtype"
    members[HEADER_NAME] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with pytest.raises(ValueError, match="unknown dtype 'not_a_dtype'"):
        load_pytree(path)
