"""A versioned registry of exported functions: a local directory or an fsspec object store.

Layout under ``root``::

    <name>/v1/artifact.bin          the serialized ``jax.export`` artifact
    <name>/v1/metadata.json         its metadata (signature, sha256, platforms, jax versions,
                                    version, publication time, your extra metadata) - the
                                    commit marker: a version without it does not exist
    <name>/v1/checkpoint.npz        optional: a pytree of arrays (``opifex.core.save_pytree``)
    <name>/channels.json            {"stable": "v2", "canary": "v3", "history": {...}}
    <name>/events.jsonl             one JSON line per publish / promote / rollback

Versions ``v1, v2, ...`` are assigned by the registry. A version becomes visible only when it
is complete. On a local disk (a path or a ``file://`` URL) it is written into a hidden
``<name>/.partial-*`` directory, every file ``fsync``-ed, and renamed to ``vN`` in one atomic
step; concurrent publishers cannot take the same number (the rename of the loser fails and it
takes the next one), and ``channels.json`` changes and ``events.jsonl`` appends happen under a
lock file (``fcntl``). On an fsspec store (``memory://``, ``s3://``, ``gs://``, ... with the
``opifex-deploy[fsspec]`` extra) the files are written in place and ``metadata.json`` last;
``channels.json`` is one small put (atomic on object stores). An object store has no
rename or lock, so keep one writer per name there; readers are always safe. A publish that
crashes leaves no version behind (a hidden ``.partial-*`` directory locally, files without
``metadata.json`` on a store; both are ignored, and their number is not reused on a store),
and every other version loads as before.

``load`` verifies the artifact's SHA-256 against its metadata (``ArtifactIntegrityError``) and
its compatibility with this jax and machine (``ArtifactCompatibilityError``) before anything
runs.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opifex.core import fsync_directory, load_pytree, save_pytree
from opifex.deploy._artifact import (
    ArtifactIntegrityError,
    ExportedFunction,
    _check_name,
    load_artifact,
)

CHANNELS = ("stable", "canary")
ARTIFACT_FILE = "artifact.bin"
METADATA_FILE = "metadata.json"
CHECKPOINT_FILE = "checkpoint.npz"
CHANNELS_FILE = "channels.json"
EVENTS_FILE = "events.jsonl"
_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_PUBLISH_ATTEMPTS = 100


class NotInRegistryError(ValueError, LookupError):
    """A name, version or channel that the registry does not hold."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _version_number(version: str) -> int | None:
    match = _VERSION.match(version)
    return int(match.group(1)) if match else None


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------------------------
# storage: a local directory, or an fsspec filesystem


class _LocalStore:
    """A directory on a local disk: atomic renames, fsync, an ``fcntl`` lock per name."""

    def __init__(self, root: str):
        self.root = root

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def children(self, path: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(path) if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _put(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` and fsync it (the one place a file's bytes are written)."""
        with open(path, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    def replace(self, path: str, data: bytes) -> None:
        """Atomically replace ``path`` with ``data`` (temporary file, fsync, rename)."""
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            self._put(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_directory(directory)

    def append(self, path: str, line: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    @contextlib.contextmanager
    def lock(self, directory: str) -> Iterator[None]:
        os.makedirs(directory, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (one writer at a time)
            yield
            return
        with open(os.path.join(directory, ".lock"), "a") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)

    def commit(self, directory: str, files: Mapping[str, bytes], metadata: dict) -> str:
        """Write ``files`` and the metadata into a hidden directory, rename it to a new vN."""
        os.makedirs(directory, exist_ok=True)
        partial = os.path.join(directory, f".partial-{uuid.uuid4().hex}")
        os.mkdir(partial)
        try:
            for relative, data in files.items():
                self._put(os.path.join(partial, relative), data)
            number = 1 + max(
                (n for v in self.children(directory) if (n := _version_number(v))), default=0
            )
            for _ in range(_PUBLISH_ATTEMPTS):
                version = f"v{number}"
                self._put(
                    os.path.join(partial, METADATA_FILE), _dumps({**metadata, "version": version})
                )
                fsync_directory(partial)
                try:
                    os.rename(partial, os.path.join(directory, version))
                except OSError as error:  # another publisher took this number
                    if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    number += 1
                    continue
                fsync_directory(directory)
                return version
            raise RuntimeError(f"could not find a free version number in {directory}")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise


class _FsspecStore:
    """An fsspec filesystem (object store): ``metadata.json`` written last as the commit."""

    def __init__(self, url: str):
        try:
            import fsspec
        except ImportError:
            raise ImportError(
                f"a registry at {url!r} needs fsspec: pip install 'opifex-deploy[fsspec]' "
                "(local paths work without it)"
            ) from None
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def children(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"
        )

    def _put(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (one put; the one place a file's bytes are written)."""
        self.fs.pipe_file(path, data)

    def replace(self, path: str, data: bytes) -> None:
        self._put(path, data)  # a single put: readers see the old or the new object

    def append(self, path: str, line: bytes) -> None:
        old = self.read(path) if self.exists(path) else b""
        self._put(path, old + line)

    @contextlib.contextmanager
    def lock(self, directory: str) -> Iterator[None]:
        yield  # object stores: one writer per name (see the module docstring)

    def commit(self, directory: str, files: Mapping[str, bytes], metadata: dict) -> str:
        """Write ``files`` into a fresh vN (never a number seen before), ``metadata.json`` last."""
        number = 1 + max(
            (n for v in self.children(directory) if (n := _version_number(v))), default=0
        )
        version = f"v{number}"
        target = posixpath.join(directory, version)
        try:
            for relative, data in files.items():
                self._put(posixpath.join(target, relative), data)
            self._put(
                posixpath.join(target, METADATA_FILE), _dumps({**metadata, "version": version})
            )
        except BaseException:  # never reported as published: remove what was written
            with contextlib.suppress(Exception):
                self.fs.rm(target, recursive=True)
            raise
        return version


def _store(root: str | os.PathLike) -> _LocalStore | _FsspecStore:
    if isinstance(root, os.PathLike):
        return _LocalStore(os.fspath(root))
    if not isinstance(root, str) or not root:
        raise TypeError(f"root must be a path or an fsspec URL, got {root!r}")
    if root.startswith("file://"):
        return _LocalStore(root[len("file://") :])
    if "://" in root:
        return _FsspecStore(root)
    return _LocalStore(root)


# --------------------------------------------------------------------------------------------
# the registry


class Registry:
    """Versions of exported functions by name, with ``stable`` / ``canary`` channels.

    Args:
        root: a local directory (created on the first publish) or an fsspec URL
            (``memory://...``, ``s3://bucket/prefix``, ...; needs ``opifex-deploy[fsspec]``).
            ``file://`` URLs are local directories.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> from opifex.deploy import Signature, TensorSpec, export_function
        >>> sig = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
        >>> registry = Registry(tempfile.mkdtemp())
        >>> registry.publish("double", export_function(lambda x: {"y": 2 * x}, sig, name="double"))
        'v1'
        >>> registry.publish("double", export_function(lambda x: {"y": x + x}, sig, name="double"))
        'v2'
        >>> registry.promote("double", "v1"); registry.promote("double", "v2")
        >>> registry.rollback("double")
        'v1'
        >>> registry.load("double")({"x": [1.5]})["y"]
        array([3.], dtype=float32)
        >>> [e["action"] for e in registry.events("double")]
        ['publish', 'publish', 'promote', 'promote', 'rollback']
    """

    def __init__(self, root: str | os.PathLike):
        self._store = _store(root)
        self.root = root if isinstance(root, str) else os.fspath(root)

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    # ---------------------------------------------------------------- reading

    def names(self) -> list[str]:
        """The names that have at least one complete version, sorted."""
        return [
            name
            for name in self._store.children(self._store.root)
            if not name.startswith(".") and self._complete_versions(name)
        ]

    def versions(self, name: str) -> list[str]:
        """The complete versions of ``name``, oldest first (``[]`` for an unknown name).

        Raises:
            ValueError: ``name`` is not a valid name.
        """
        return self._complete_versions(_check_name(name))

    def _complete_versions(self, name: str) -> list[str]:
        directory = self._store.join(name)
        found = [
            v
            for v in self._store.children(directory)
            if _version_number(v) and self._store.exists(self._store.join(name, v, METADATA_FILE))
        ]
        return sorted(found, key=_version_number)

    def channels(self, name: str) -> dict[str, str | None]:
        """``{"stable": version or None, "canary": version or None}`` for ``name``."""
        state = self._channel_state(_check_name(name))
        return {channel: state[channel] for channel in CHANNELS}

    def resolve(self, name: str, version: str = "stable") -> str:
        """The concrete version ``vN`` that ``version`` names.

        Args:
            name: the registered name.
            version: ``"stable"``, ``"canary"``, ``"latest"`` or a version such as ``"v3"``.

        Returns:
            The version, which exists and is complete.

        Raises:
            NotInRegistryError: an unknown name or version, or a channel that is not set.
        """
        versions = self.versions(name)
        if not versions:
            raise NotInRegistryError(
                f"no versions of {name!r} in the registry at {self.root!r}; it has {self.names()}"
            )
        if version == "latest":
            return versions[-1]
        if version in CHANNELS:
            chosen = self.channels(name)[version]
            if chosen is None:
                raise NotInRegistryError(
                    f"{name!r} has no {version} version; promote one (versions: {versions})"
                )
            version = chosen
        if not isinstance(version, str) or version not in versions:
            raise NotInRegistryError(
                f"version must be 'stable', 'canary', 'latest' or one of {versions} for "
                f"{name!r}, got {version!r}"
            )
        return version

    def metadata(self, name: str, version: str = "latest") -> dict[str, Any]:
        """The metadata of one version (``metadata.json``), without loading the artifact."""
        version = self.resolve(name, version)
        raw = self._store.read(self._store.join(name, version, METADATA_FILE))
        try:
            metadata = json.loads(raw)
        except ValueError as error:
            raise ArtifactIntegrityError(
                f"{name}/{version}: metadata.json is not valid JSON ({error}); it is corrupt"
            ) from None
        if not isinstance(metadata, dict):
            raise ArtifactIntegrityError(f"{name}/{version}: metadata.json is not an object")
        return metadata

    def load(self, name: str, version: str = "stable") -> ExportedFunction:
        """Load one version, verifying its hash and its compatibility with this jax.

        Args:
            name: the registered name.
            version: ``"stable"`` (default), ``"canary"``, ``"latest"`` or ``"vN"``.

        Returns:
            The :class:`ExportedFunction`; its ``metadata`` includes ``version`` and the
            registry's fields.

        Raises:
            NotInRegistryError: an unknown name or version, or an unset channel.
            ArtifactIntegrityError: the artifact's bytes do not match its recorded SHA-256.
            ArtifactCompatibilityError: it cannot run with this jax or on this machine.
        """
        version = self.resolve(name, version)
        metadata = self.metadata(name, version)
        try:
            data = self._store.read(self._store.join(name, version, ARTIFACT_FILE))
        except FileNotFoundError:
            raise ArtifactIntegrityError(
                f"{name}/{version}: {ARTIFACT_FILE} is missing from a complete version"
            ) from None
        return load_artifact(data, metadata)

    def load_checkpoint(self, name: str, version: str = "stable", like: Any = None) -> Any:
        """The checkpoint published with a version, verified (see ``opifex.core.load_pytree``).

        Args:
            name: the registered name.
            version: as in :meth:`load`.
            like: optional pytree giving the structure and leaf types to restore.

        Returns:
            The pytree (nested dicts / lists of numpy arrays without ``like``).

        Raises:
            NotInRegistryError: the version has no checkpoint, or does not exist.
            ArtifactIntegrityError: the checkpoint's bytes do not match the recorded SHA-256.
        """
        version = self.resolve(name, version)
        record = self.metadata(name, version).get("checkpoint")
        if not record:
            raise NotInRegistryError(f"{name}/{version} was published without a checkpoint")
        data = self._store.read(self._store.join(name, version, CHECKPOINT_FILE))
        actual = hashlib.sha256(data).hexdigest()
        if actual != record["sha256"]:
            raise ArtifactIntegrityError(
                f"{name}/{version}: checkpoint fails its integrity check: sha256 {actual}, "
                f"expected {record['sha256']}"
            )
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / CHECKPOINT_FILE
            path.write_bytes(data)
            return load_pytree(path, like=like)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every recorded change of ``name``, oldest first (``events.jsonl``)."""
        path = self._store.join(_check_name(name), EVENTS_FILE)
        if not self._store.exists(path):
            return []
        events = []
        for line in self._store.read(path).decode().splitlines():
            with contextlib.suppress(ValueError):  # a line cut short by a crash
                events.append(json.loads(line))
        return events

    # ---------------------------------------------------------------- writing

    def publish(
        self,
        name: str,
        exported: ExportedFunction,
        *,
        checkpoint: Any = None,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Store a new version of ``name``; it is visible only once completely written.

        Args:
            name: the registered name (letters, digits, ``._-``).
            exported: the :class:`ExportedFunction` to store.
            checkpoint: optional pytree of arrays (the trained parameters, ...), stored with
                ``opifex.core.save_pytree`` and read back with :meth:`load_checkpoint`.
            extra_metadata: optional JSON-serialisable mapping, stored as ``"extra"``.

        Returns:
            The new version, ``"v1"``, ``"v2"``, ...

        Raises:
            ValueError: a bad ``name``.
            TypeError: ``exported`` is not an ``ExportedFunction``, or ``extra_metadata`` or
                ``checkpoint`` cannot be stored.
        """
        name = _check_name(name)
        if not isinstance(exported, ExportedFunction):
            raise TypeError(f"exported must be an ExportedFunction, got {type(exported).__name__}")
        if extra_metadata is not None and not isinstance(extra_metadata, Mapping):
            raise TypeError(
                f"extra_metadata must be a mapping or None, got {type(extra_metadata).__name__}"
            )
        try:
            extra = json.loads(json.dumps(dict(extra_metadata or {}), sort_keys=True))
        except (TypeError, ValueError) as error:
            raise TypeError(f"extra_metadata must be JSON-serialisable: {error}") from None
        files = {ARTIFACT_FILE: exported.to_bytes()}
        metadata = {**exported.metadata, "published": _now(), "extra": extra, "checkpoint": None}
        if checkpoint is not None:
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / CHECKPOINT_FILE
                save_pytree(path, checkpoint)
                files[CHECKPOINT_FILE] = path.read_bytes()
            metadata["checkpoint"] = {
                "file": CHECKPOINT_FILE,
                "sha256": hashlib.sha256(files[CHECKPOINT_FILE]).hexdigest(),
                "size": len(files[CHECKPOINT_FILE]),
            }
        version = self._store.commit(self._store.join(name), files, metadata)
        with self._store.lock(self._store.join(name)):
            self._log(name, "publish", version=version, sha256=exported.sha256)
        return version

    def promote(self, name: str, version: str, channel: str = "stable") -> None:
        """Point ``channel`` of ``name`` at ``version`` (the old one goes on its history).

        Args:
            name: the registered name.
            version: ``"vN"``, ``"latest"``, or the other channel's name (``"canary"``).
            channel: ``"stable"`` (default) or ``"canary"``.

        Raises:
            ValueError: an unknown channel.
            NotInRegistryError: an unknown name or version.
        """
        channel = _check_channel(channel)
        version = self.resolve(name, version)
        with self._store.lock(self._store.join(name)):
            state = self._channel_state(name)
            previous = state[channel]
            if previous == version:
                return
            if previous is not None:
                state["history"][channel].append(previous)
            state[channel] = version
            self._write_channels(name, state)
            self._log(name, "promote", channel=channel, version=version, previous=previous)

    def rollback(self, name: str, channel: str = "stable") -> str | None:
        """Point ``channel`` back at the version it held before the last change.

        Args:
            name: the registered name.
            channel: ``"stable"`` (default: back to the previous stable version) or
                ``"canary"`` (back to the previous canary, or none: the canary ends).

        Returns:
            The version the channel now points at (``None``: no canary).

        Raises:
            ValueError: an unknown channel, or no earlier stable version to go back to (or no
                canary to end).
        """
        channel = _check_channel(channel)
        name = _check_name(name)
        with self._store.lock(self._store.join(name)):
            state = self._channel_state(name)
            previous, history = state[channel], state["history"][channel]
            if channel == "stable" and not history:
                raise ValueError(
                    f"{name!r} has no earlier stable version to roll back to (stable is "
                    f"{previous!r})"
                )
            if channel == "canary" and not history and previous is None:
                raise ValueError(f"{name!r} has no canary to roll back")
            state[channel] = history.pop() if history else None
            self._write_channels(name, state)
            self._log(name, "rollback", channel=channel, version=state[channel], previous=previous)
        return state[channel]

    def end_canary(self, name: str) -> None:
        """Stop the canary of ``name`` (a no-op without one); ``rollback(..., "canary")`` undoes.

        Raises:
            ValueError: a bad ``name``.
        """
        name = _check_name(name)
        with self._store.lock(self._store.join(name)):
            state = self._channel_state(name)
            previous = state["canary"]
            if previous is None:
                return
            state["history"]["canary"].append(previous)
            state["canary"] = None
            self._write_channels(name, state)
            self._log(name, "end_canary", channel="canary", version=None, previous=previous)

    # ---------------------------------------------------------------- internals

    def _channel_state(self, name: str) -> dict[str, Any]:
        path = self._store.join(name, CHANNELS_FILE)
        state: dict[str, Any] = {"stable": None, "canary": None, "history": {}}
        if self._store.exists(path):
            try:
                state.update(json.loads(self._store.read(path)))
            except ValueError as error:
                raise ArtifactIntegrityError(
                    f"{name}: {CHANNELS_FILE} is not valid JSON ({error}); it is corrupt"
                ) from None
        for channel in CHANNELS:
            state["history"].setdefault(channel, [])
        return state

    def _write_channels(self, name: str, state: dict[str, Any]) -> None:
        self._store.replace(
            self._store.join(name, CHANNELS_FILE), _dumps({**state, "updated": _now()})
        )

    def _log(self, name: str, action: str, **fields: Any) -> None:
        """Append an event (the caller holds the name's lock)."""
        event = {"time": _now(), "action": action, "name": name, **fields}
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        self._store.append(self._store.join(name, EVENTS_FILE), line)


def _check_channel(channel: Any) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
    return channel
