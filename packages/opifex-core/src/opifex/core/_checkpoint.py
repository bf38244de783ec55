"""Atomic, checksummed checkpoints of pytrees of arrays in one ``.npz`` file.

``save_pytree(path, tree)`` writes any pytree of arrays (jax or numpy arrays, Python scalars,
PRNG keys; nested in dicts, lists, tuples, ``NamedTuple`` optimiser states, ...) and
``load_pytree(path, like)`` reads it back, with ``like``'s structure and leaf types.

Format (version 1): a zip archive readable with numpy alone (``np.load(path)``):

* one ``.npy`` member per leaf, named after the leaf's jax keypath (``"['opt'][0].mu['w']"``;
  a bare array at the root is ``"(root)"``);
* a JSON member ``__opifex_checkpoint__.json`` with the format version, the treedef's
  description, each leaf's keypath (as structured entries, so the nesting can be rebuilt
  without ``like``), dtype and shape, the user's ``metadata``, and the SHA-256 of the payload
  (every leaf's name, dtype, shape and bytes, in order).

Dtypes numpy cannot store portably (``bfloat16``, the ``float8`` / ``int4`` families) are
stored as an unsigned-integer view of the same width plus the dtype's name; typed PRNG keys as
their key data plus the implementation's name. Nothing is pickled.

Writes are atomic: the archive goes to a temporary file in the destination's directory, is
flushed and ``fsync``-ed, then ``os.replace``-d over ``path``; a crash mid-write leaves the
previous file (or none) at ``path``. A truncated or corrupt file raises ``ValueError`` (a
zip CRC error or a checksum mismatch), never returns wrong data.

Why not orbax: ``orbax-checkpoint`` brings a large dependency tree (tensorstore, async
machinery, multi-host coordination) for what ``opifex`` needs here, which is saving a small
optimiser / meta-learner state on one host and resuming. An ``.npz`` is a standard format that
anyone can open with numpy, without opifex installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1
HEADER_NAME = "__opifex_checkpoint__.json"
_ROOT_NAME = "(root)"
_PORTABLE_KINDS = "biufc"  # bool, signed / unsigned int, float, complex
_PY_SCALARS = {"bool": bool, "int": int, "float": float, "complex": complex}


# --------------------------------------------------------------------------------------------
# paths


def _check_path(path: Any) -> str:
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError("path must be a str or os.PathLike of str, got bytes")
    if not path:
        raise ValueError("path must not be empty")
    return path


# --------------------------------------------------------------------------------------------
# keypaths


def _key_entry(key: Any) -> list[Any]:
    """A JSON description of one keypath entry, enough to rebuild dicts and lists."""
    if isinstance(key, jax.tree_util.DictKey):
        k = key.key
        if isinstance(k, str | int | float | bool):  # JSON keeps these types
            return ["key", k]
        return ["key", str(k)]
    if isinstance(key, jax.tree_util.SequenceKey):
        return ["index", key.idx]
    if isinstance(key, jax.tree_util.GetAttrKey):
        return ["attr", key.name]
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return ["index", key.key]
    return ["key", str(key)]


def _member_name(keystr: str) -> str:
    return keystr or _ROOT_NAME


# --------------------------------------------------------------------------------------------
# leaves <-> portable numpy arrays


def _is_key_array(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode_leaf(leaf: Any, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(array to store, leaf description)``."""
    info: dict[str, Any] = {}
    if _is_key_array(leaf):
        info["prng_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    elif type(leaf) in _PY_SCALARS.values():  # exactly a Python scalar (not a subclass)
        info["python_type"] = type(leaf).__name__
    try:
        array = np.asarray(leaf)
    except Exception as error:  # re-raised with the keypath
        raise TypeError(f"tree{where} cannot be converted to an array: {error}") from None
    dtype = array.dtype
    info["dtype"] = dtype.name
    info["shape"] = list(array.shape)
    if dtype.kind in _PORTABLE_KINDS:
        return _c_contiguous(array), info
    if dtype.type.__module__ == "ml_dtypes":
        info["stored_as"] = f"uint{8 * dtype.itemsize}"
        return _c_contiguous(array).view(np.dtype(info["stored_as"])), info
    raise TypeError(
        f"tree{where} has dtype {dtype} ({type(leaf).__name__}); a checkpoint holds numeric "
        "arrays only"
    )


def _c_contiguous(array: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray, which turns a 0-d array into shape (1,)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _resolve_dtype(name: str) -> np.dtype:
    # jnp.dtype also knows the ml_dtypes names (bfloat16, float8_*, int4, ...)
    try:
        return np.dtype(jnp.dtype(name))
    except TypeError as error:
        raise ValueError(f"corrupt checkpoint: unknown dtype {name!r}") from error


def _decode_leaf(stored: np.ndarray, info: dict[str, Any], where: str) -> Any:
    """Undo ``_encode_leaf``: a numpy array, a Python scalar or a PRNG key array."""
    if "stored_as" in info:
        array = stored.view(_resolve_dtype(info["dtype"]))
    else:
        array = stored
    if array.dtype.name != info["dtype"] or list(array.shape) != info["shape"]:
        raise ValueError(
            f"corrupt checkpoint: leaf {where} holds {array.dtype}{list(array.shape)}, the "
            f"header says {info['dtype']}{info['shape']}"
        )
    if "prng_impl" in info:
        return jax.random.wrap_key_data(array, impl=info["prng_impl"])
    python_type = _PY_SCALARS.get(info.get("python_type") or "")
    if python_type is not None and array.shape == ():
        return python_type(array.item())
    return array


def _payload_digest(names: list[str], arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name, array in zip(names, arrays, strict=True):
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(f"{array.dtype.str}{array.shape}".encode() + b"\0")
        digest.update(array.tobytes(order="C"))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# save


def _default_file_mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_archive(file: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        zf.writestr(HEADER_NAME, json.dumps(header, indent=1, sort_keys=True))


def save_pytree(path: str | os.PathLike, tree: Any, *, metadata: Mapping | None = None) -> None:
    """Atomically write ``tree`` (a pytree of arrays) to ``path`` as one ``.npz`` file.

    Args:
        path: destination file (its directory must exist); an existing file is replaced only
            once the new one is completely on disk. No suffix is added.
        tree: any pytree whose leaves are jax / numpy arrays, numpy or Python scalars, or typed
            PRNG keys. ``None`` and empty containers are structure, not data: they come back
            only through ``load_pytree``'s ``like``.
        metadata: optional JSON-serialisable mapping (e.g. ``{"step": 100, "config": {...}}``),
            read back with ``load_metadata``.

    Raises:
        TypeError: ``path`` is not a str / ``os.PathLike``, a leaf is not numeric (naming its
            keypath), or ``metadata`` is not a JSON-serialisable mapping.
        ValueError: ``path`` is empty or an existing directory.
        FileNotFoundError: the destination directory does not exist.

    Example:
        >>> import os, tempfile, jax.numpy as jnp
        >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
        >>> save_pytree(path, {"w": jnp.ones(2), "step": jnp.int32(3)}, metadata={"epoch": 1})
        >>> load_pytree(path)["step"]
        array(3, dtype=int32)
    """
    path = _check_path(path)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
    try:
        metadata_json = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be JSON-serialisable: {error}") from None
    if os.path.isdir(path):
        raise ValueError(f"path {path!r} is a directory; expected a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory of path {path!r} does not exist: {directory}")

    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names: list[str] = []
    arrays: list[np.ndarray] = []
    leaves_info: list[dict[str, Any]] = []
    for keypath, leaf in leaves_with_paths:
        where = jax.tree_util.keystr(keypath)
        array, info = _encode_leaf(leaf, where)
        info["name"] = _member_name(where)
        info["keypath"] = [_key_entry(k) for k in keypath]
        names.append(info["name"])
        arrays.append(array)
        leaves_info.append(info)
    header = {
        "format": "opifex-checkpoint",
        "format_version": FORMAT_VERSION,
        "treedef": str(treedef),
        "leaves": leaves_info,
        "metadata": metadata_json,
        "sha256": _payload_digest(names, arrays),
    }

    mode = _default_file_mode(path)
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as file:
            _write_archive(file, header, dict(zip(names, arrays, strict=True)))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    """Make a rename or new file in ``directory`` durable (POSIX ``fsync`` of the directory).

    A no-op where directories cannot be opened or synced (some platforms and file systems).

    Example:
        >>> import tempfile
        >>> fsync_directory(tempfile.mkdtemp())
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# load


class _FormatError(ValueError):
    """A readable file that is not a (supported) opifex checkpoint."""


def _read(path: str) -> tuple[dict[str, Any], list[Any]]:
    """Read and verify the header and every leaf (decoded)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"path {path!r} is a directory; expected a checkpoint file")
    try:
        with zipfile.ZipFile(path, mode="r") as zf:
            try:
                header = json.loads(zf.read(HEADER_NAME))
            except KeyError:
                raise _FormatError(
                    f"{path!r} is not an opifex checkpoint (no {HEADER_NAME} entry)"
                ) from None
            if not isinstance(header, dict) or header.get("format") != "opifex-checkpoint":
                raise _FormatError(f"{path!r} is not an opifex checkpoint (bad header)")
            version = header.get("format_version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise _FormatError(
                    f"{path!r} has checkpoint format version {version!r}; this opifex reads "
                    f"versions <= {FORMAT_VERSION}"
                )
            names = [info["name"] for info in header["leaves"]]
            stored = [
                np.lib.format.read_array(io.BytesIO(zf.read(name + ".npy")), allow_pickle=False)
                for name in names
            ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path!r} is not a valid opifex checkpoint (truncated or corrupt): "
            f"{type(error).__name__}: {error}"
        ) from None
    except _FormatError:
        raise
    except ValueError as error:  # a bad .npy header, a JSON error, ...
        raise ValueError(
            f"{path!r} is not a valid opifex checkpoint (truncated or corrupt): {error}"
        ) from None
    if _payload_digest(names, stored) != header.get("sha256"):
        raise ValueError(f"{path!r} is corrupt: the SHA-256 of its payload does not match")
    try:
        leaves = [
            _decode_leaf(array, info, info["name"])
            for array, info in zip(stored, header["leaves"], strict=True)
        ]
    except (KeyError, TypeError) as error:
        detail = f"{type(error).__name__}: {error}"
        raise ValueError(f"{path!r} has a corrupt header: {detail}") from None
    return header, leaves


def _rebuild(entries: list[tuple[list[list[Any]], Any]]) -> Any:
    """Nested dicts (dict keys, attributes) and lists (indices) from keypaths."""
    if len(entries) == 1 and not entries[0][0]:
        return entries[0][1]
    if not entries:
        return {}
    kind = entries[0][0][0][0]
    groups: dict[Any, list[tuple[list[list[Any]], Any]]] = {}
    for keypath, leaf in entries:
        groups.setdefault(keypath[0][1], []).append((keypath[1:], leaf))
    if kind == "index":
        result: list[Any] = [None] * (max(groups) + 1)  # gaps were None leaves
        for index, group in groups.items():
            result[index] = _rebuild(group)
        return result
    return {key: _rebuild(group) for key, group in groups.items()}


def _restore_like(leaf: Any, like_leaf: Any, where: str) -> Any:
    """Check ``leaf`` against ``like_leaf`` and give it ``like_leaf``'s kind."""
    if isinstance(like_leaf, bool | int | float | complex) and not isinstance(
        like_leaf, np.generic
    ):
        if np.shape(leaf) != ():
            raise ValueError(
                f"checkpoint leaf {where} has shape {np.shape(leaf)}; like has a Python scalar"
            )
        return type(like_leaf)(np.asarray(leaf).item())
    like_shape = tuple(np.shape(like_leaf))
    like_dtype = getattr(like_leaf, "dtype", None)
    if tuple(np.shape(leaf)) != like_shape:
        raise ValueError(
            f"checkpoint leaf {where} has shape {tuple(np.shape(leaf))}; like has {like_shape}"
        )
    if like_dtype is not None and like_dtype != leaf.dtype:
        raise ValueError(f"checkpoint leaf {where} has dtype {leaf.dtype}; like has {like_dtype}")
    if isinstance(like_leaf, jax.Array | jax.ShapeDtypeStruct):
        sharding = getattr(like_leaf, "sharding", None)
        if _is_key_array(leaf):
            return leaf if sharding is None else jax.device_put(leaf, sharding)
        return jnp.asarray(leaf) if sharding is None else jax.device_put(leaf, sharding)
    if isinstance(like_leaf, np.generic):
        return np.asarray(leaf)[()]
    return np.asarray(leaf)


def load_pytree(path: str | os.PathLike, like: Any = None) -> Any:
    """Read a checkpoint written by ``save_pytree``, verifying its checksum.

    Args:
        path: the checkpoint file.
        like: optional pytree with the expected structure (e.g. a freshly initialised
            optimiser state, or ``jax.ShapeDtypeStruct`` leaves). With it, the result has
            ``like``'s exact structure (``NamedTuple``s, tuples, ``None`` s included), jax
            arrays where ``like`` has jax arrays (on the same sharding), numpy arrays where it
            has numpy arrays and Python scalars where it has Python scalars. Without it, the
            result is nested dicts (for dict keys and attributes) and lists (for sequence
            indices) of numpy arrays, Python scalars where Python scalars were saved, and PRNG
            key arrays.

    Returns:
        The pytree.

    Raises:
        TypeError: ``path`` is not a str / ``os.PathLike``.
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is truncated, corrupt (zip CRC or SHA-256 mismatch), not an opifex
            checkpoint, of a newer format version, or does not match ``like`` (naming the first
            differing keypath, shape or dtype).

    Example:
        >>> import os, tempfile, jax.numpy as jnp
        >>> path = os.path.join(tempfile.mkdtemp(), "params.npz")
        >>> save_pytree(path, {"w": jnp.zeros(2), "b": [jnp.ones(())]})
        >>> load_pytree(path)
        {'b': [array(1., dtype=float32)], 'w': array([0., 0.], dtype=float32)}
    """
    path = _check_path(path)
    header, leaves = _read(path)
    if like is None:
        keypaths = [info["keypath"] for info in header["leaves"]]
        return _rebuild(list(zip(keypaths, leaves, strict=True)))

    like_with_paths, like_treedef = jax.tree_util.tree_flatten_with_path(like)
    like_names = [_member_name(jax.tree_util.keystr(p)) for p, _ in like_with_paths]
    saved_names = [info["name"] for info in header["leaves"]]
    if like_names != saved_names:
        missing = [n for n in like_names if n not in set(saved_names)]
        extra = [n for n in saved_names if n not in set(like_names)]
        if missing:
            detail = f"like has leaf {missing[0]} that the checkpoint lacks"
        elif extra:
            detail = f"the checkpoint has leaf {extra[0]} that like lacks"
        else:
            first = next(
                i for i, (a, b) in enumerate(zip(like_names, saved_names, strict=True)) if a != b
            )
            detail = (
                f"leaf {first} is {saved_names[first]} in the checkpoint but "
                f"{like_names[first]} in like"
            )
        raise ValueError(f"checkpoint {path!r} does not match the structure of like: {detail}")
    restored = [
        _restore_like(leaf, like_leaf, name)
        for leaf, (_, like_leaf), name in zip(leaves, like_with_paths, like_names, strict=True)
    ]
    return jax.tree_util.tree_unflatten(like_treedef, restored)


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ``metadata`` mapping stored by ``save_pytree`` (verifying the file).

    Example:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "c.npz")
        >>> save_pytree(path, np.zeros(1), metadata={"step": 7})
        >>> load_metadata(path)
        {'step': 7}
    """
    path = _check_path(path)
    header, _ = _read(path)
    return dict(header.get("metadata") or {})
