"""Export a per-example JAX function to one portable artifact, and load it back verified.

``export_function(fn, signature)`` vmaps ``fn`` (a function of ONE example) over a leading batch
axis, jits it and lowers it with ``jax.export`` for the given platforms, with a *symbolic*
batch dimension ``b``: the one artifact serves any batch size (each new batch size is compiled
once per process when first called, by XLA, from the stored StableHLO; nothing is traced or
exported again). The artifact is ``jax.export``'s serialization (StableHLO bytecode plus the
calling convention) and a JSON-ready metadata dict: the signature, the SHA-256 of the bytes,
the platforms, the ``jax.export`` calling-convention version, the jax / jaxlib versions and the
creation time.

``load_artifact(data, metadata)`` checks, before running anything, that the bytes are the ones
the metadata describes (``ArtifactIntegrityError`` names both hashes), that this jax can call
the artifact's calling convention and that one of its platforms is present here
(``ArtifactCompatibilityError`` says which and what there is).

A signature with a 64-bit dtype (``float64``, ``int64``) is exported and called with
``jax.enable_x64(True)`` around the export and each call, whatever the process-wide setting.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from opifex.deploy._signature import Signature, TensorSpec, coerce_inputs

FORMAT = "opifex-deploy-artifact"
FORMAT_VERSION = 1
BATCH_AXIS = "b"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_WIDE = frozenset({"float64", "int64"})
_REQUIRED = ("format", "format_version", "name", "signature", "sha256", "platforms")


class ArtifactIntegrityError(ValueError):
    """The artifact's bytes are not the ones its metadata describes (corrupt or altered)."""


class ArtifactCompatibilityError(RuntimeError):
    """The artifact is intact but cannot run here (jax version, platform)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _needs_x64(signature: Signature) -> bool:
    return any(spec.dtype in _WIDE for spec in (*signature.inputs, *signature.outputs))


def _x64(enabled: bool) -> contextlib.AbstractContextManager:
    return jax.enable_x64(True) if enabled else contextlib.nullcontext()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValueError(f"name must be a non-empty string of at most 100 characters, got {name!r}")
    if name[0] in "._-" or not all(c.isalnum() or c in "._-" for c in name):
        raise ValueError(
            f"name must be letters, digits, '.', '_' and '-', not starting with a punctuation "
            f"mark, got {name!r}"
        )
    return name


def _check_platforms(platforms: Any) -> tuple[str, ...]:
    if isinstance(platforms, str) or not isinstance(platforms, Sequence) or not platforms:
        raise ValueError(
            f"platforms must be a non-empty sequence such as ('cpu',), got {platforms!r}"
        )
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise ValueError(f"platforms must be among {list(PLATFORMS)}, got unknown {unknown}")
    if len(set(platforms)) != len(platforms):
        raise ValueError(f"platforms must not repeat, got {list(platforms)}")
    return tuple(platforms)


def _check_outputs(out: Any, signature: Signature) -> tuple[jax.Array, ...]:
    """``fn``'s per-example outputs in signature order, checked while tracing."""
    if not isinstance(out, Mapping):
        raise ValueError(
            f"fn must return a dict of output arrays named as in the signature, got "
            f"{type(out).__name__}"
        )
    expected = [spec.name for spec in signature.outputs]
    if set(out) != set(expected):
        raise ValueError(
            f"fn's outputs must be exactly {expected}; missing "
            f"{sorted(set(expected) - set(out))}, unknown {sorted(set(out) - set(expected))}"
        )
    values = []
    for spec in signature.outputs:
        value = jnp.asarray(out[spec.name])
        if value.shape != spec.shape or value.dtype != np.dtype(spec.dtype):
            raise ValueError(
                f"fn's output {spec.name!r} has shape {value.shape} and dtype {value.dtype} for "
                f"one example; the signature says shape {spec.shape} and dtype {spec.dtype}"
            )
        values.append(value)
    return tuple(values)


def _pick_device(platforms: Sequence[str], name: str) -> jax.Device | None:
    """``None`` to run on the default device, the CPU device, or raise if none fits."""
    default = jax_export.default_export_platform()
    if default in platforms:
        return None
    if "cpu" in platforms:
        return jax.devices("cpu")[0]
    here = sorted({default, "cpu"})
    raise ArtifactCompatibilityError(
        f"artifact {name!r} was exported for platforms {list(platforms)}, but this machine "
        f"has {here}; export it again with platforms including {default!r}"
    )


class ExportedFunction:
    """A function exported with ``jax.export``: call it on batches, serialize it, verify it.

    Build one with :func:`export_function` or :func:`load_artifact`.

    Attributes:
        signature: the :class:`Signature` (per-example shapes, dtypes).
        name: the name given at export.
        sha256: hex SHA-256 of :meth:`to_bytes`.
        platforms: the platforms it was lowered for.
        metadata: a copy of its JSON-ready metadata.
        exported: the underlying ``jax.export.Exported``.
    """

    def __init__(self, exported: jax_export.Exported, data: bytes, metadata: Mapping[str, Any]):
        self.exported = exported
        self._data = bytes(data)
        self._metadata = dict(metadata)
        self.signature = Signature.from_json(metadata["signature"])
        self.name = str(metadata["name"])
        self.sha256 = str(metadata["sha256"])
        self.platforms = tuple(metadata["platforms"])
        self._x64 = _needs_x64(self.signature)

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the metadata (JSON-ready)."""
        return dict(self._metadata)

    def to_bytes(self) -> bytes:
        """The serialized artifact (``jax.export`` format), whose SHA-256 is ``sha256``."""
        return self._data

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the function on a batch.

        Args:
            inputs: one array-like per input name, each with a leading batch axis (the same
                length for all).

        Returns:
            One numpy array per output name, each with the batch axis first.

        Raises:
            ValueError: a missing or unknown input, a wrong shape or dtype, an empty or unequal
                batch, a NaN or inf (see ``coerce_inputs``).
            ArtifactCompatibilityError: none of its platforms is present here (an artifact
                can be exported for a platform this machine lacks, and run elsewhere).
        """
        device = _pick_device(self.platforms, self.name)
        arrays = coerce_inputs(self.signature, inputs)
        with contextlib.ExitStack() as stack:
            stack.enter_context(_x64(self._x64))
            if device is not None:
                stack.enter_context(jax.default_device(device))
            outputs = self.exported.call(*arrays.values())
        return {
            spec.name: np.asarray(value)
            for spec, value in zip(self.signature.outputs, outputs, strict=True)
        }

    def __repr__(self) -> str:
        inputs = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.signature.inputs)
        outputs = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.signature.outputs)
        return (
            f"ExportedFunction({self.name!r}, ({inputs}) -> ({outputs}), "
            f"platforms={list(self.platforms)}, sha256={self.sha256[:12]}...)"
        )


def export_function(
    fn: Callable[..., Mapping[str, Any]],
    signature: Signature,
    *,
    platforms: Sequence[str] = ("cpu",),
    name: str | None = None,
) -> ExportedFunction:
    """Export ``fn`` of one example as a batched, serialized ``jax.export`` artifact.

    Args:
        fn: ``fn(**example) -> {output name: array}``, a JAX-traceable function of ONE example:
            its keyword arguments are the signature's inputs with their per-example shapes,
            and it returns every output of the signature with its exact per-example shape and
            dtype. It is vmapped over a leading batch axis and jitted here.
        signature: the inputs and outputs, per example.
        platforms: the platforms to lower for, among ``"cpu"``, ``"cuda"``, ``"rocm"``,
            ``"tpu"`` (lowering for one absent from this machine works: the artifact runs
            where it is present).
        name: a name for the function (letters, digits, ``._-``; default ``fn.__name__``).

    Returns:
        An :class:`ExportedFunction`, callable at once on a batch of any size.

    Raises:
        ValueError: an unknown platform, a bad name, a signature that is not a
            ``Signature``, or ``fn`` returning outputs that do not match the signature.
        TypeError: ``fn`` is not callable.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> sig = Signature(
        ...     inputs=(TensorSpec("x", (3,), "float32"),),
        ...     outputs=(TensorSpec("norm", (), "float32"),),
        ... )
        >>> exported = export_function(lambda x: {"norm": jnp.linalg.norm(x)}, sig, name="norm")
        >>> exported({"x": [[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]]})["norm"]
        array([5., 1.], dtype=float32)
        >>> exported.metadata["platforms"], len(exported.sha256)
        (['cpu'], 64)
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(signature, Signature):
        raise ValueError(f"signature must be a Signature, got {type(signature).__name__}")
    if not signature.inputs or not signature.outputs:
        raise ValueError("signature needs at least one input and one output")
    platforms = _check_platforms(platforms)
    if name is None:
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name is required: fn has no usable __name__ (it has {name!r})")
    name = _check_name(name)
    names = [spec.name for spec in signature.inputs]
    wide = _needs_x64(signature)

    def one(*example: jax.Array) -> tuple[jax.Array, ...]:
        return _check_outputs(fn(**dict(zip(names, example, strict=True))), signature)

    def batched(*arrays: jax.Array) -> tuple[jax.Array, ...]:
        return jax.vmap(one)(*arrays)

    (batch,) = jax_export.symbolic_shape(BATCH_AXIS)
    with _x64(wide):
        specs = [
            jax.ShapeDtypeStruct((batch, *spec.shape), np.dtype(spec.dtype))
            for spec in signature.inputs
        ]
        exported = jax_export.export(jax.jit(batched), platforms=platforms)(*specs)
        data = bytes(exported.serialize())
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "signature": signature.to_json(),
        "batch_axis": BATCH_AXIS,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "platforms": list(exported.platforms),
        "calling_convention_version": exported.calling_convention_version,
        "jax_version": jax.__version__,
        "jaxlib_version": importlib.metadata.version("jaxlib"),
        "x64": wide,
        "created": _now(),
    }
    return ExportedFunction(exported, data, metadata)


def _check_consistent(exported: jax_export.Exported, metadata: Mapping[str, Any]) -> None:
    """The deserialized function has the metadata's platforms and input / output avals."""
    signature = Signature.from_json(metadata["signature"])
    name = metadata["name"]

    def avals(specs: tuple[TensorSpec, ...]) -> list[tuple[tuple, str]]:
        return [(spec.shape, spec.dtype) for spec in specs]

    def stored(values: Sequence[Any]) -> list[tuple[tuple, str]]:
        return [(tuple(v.shape[1:]), np.dtype(v.dtype).name) for v in values]

    found = {
        "platforms": list(exported.platforms),
        "inputs": stored(exported.in_avals),
        "outputs": stored(exported.out_avals),
    }
    wanted = {
        "platforms": list(metadata["platforms"]),
        "inputs": avals(signature.inputs),
        "outputs": avals(signature.outputs),
    }
    for key, value in wanted.items():
        if found[key] != value:
            raise ArtifactIntegrityError(
                f"artifact {name!r}: its metadata does not describe it: the artifact's {key} "
                f"are {found[key]}, the metadata says {value}"
            )


def load_artifact(data: bytes, metadata: Mapping[str, Any]) -> ExportedFunction:
    """Load an artifact written by :meth:`ExportedFunction.to_bytes`, verifying it first.

    Args:
        data: the serialized artifact.
        metadata: its metadata (:attr:`ExportedFunction.metadata`, e.g. read back from JSON).

    Returns:
        The :class:`ExportedFunction`.

    Raises:
        ArtifactIntegrityError: the SHA-256 of ``data`` is not the one in ``metadata`` (the
            message names both), or the metadata does not describe the artifact.
        ArtifactCompatibilityError: this jax cannot call the artifact's calling convention or
            read its serialization, or none of its platforms is present here.
        ValueError: ``metadata`` lacks a field or is not of this format.
        TypeError: ``data`` is not bytes.

    Example:
        >>> import jax.numpy as jnp
        >>> sig = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
        >>> exported = export_function(lambda x: {"y": 2 * x}, sig, name="double")
        >>> again = load_artifact(exported.to_bytes(), exported.metadata)
        >>> again({"x": [1.0, 2.5]})["y"]
        array([2., 5.], dtype=float32)
        >>> try:
        ...     load_artifact(exported.to_bytes() + b"!", exported.metadata)
        ... except ArtifactIntegrityError as error:
        ...     print(str(error)[:48])
        artifact 'double' fails its integrity check: sha
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise ValueError(f"metadata is missing {missing}; is it an opifex-deploy artifact's?")
    if metadata["format"] != FORMAT:
        raise ValueError(f"metadata['format'] must be {FORMAT!r}, got {metadata['format']!r}")
    name = metadata["name"]
    version = metadata["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactCompatibilityError(
            f"artifact {name!r} has format version {version!r}; this opifex-deploy reads "
            f"versions <= {FORMAT_VERSION}: upgrade opifex-deploy"
        )
    data = bytes(data)
    actual = hashlib.sha256(data).hexdigest()
    if actual != metadata["sha256"]:
        raise ArtifactIntegrityError(
            f"artifact {name!r} fails its integrity check: sha256 of the bytes is {actual}, "
            f"the metadata expects {metadata['sha256']}; the artifact is corrupt or was altered"
        )
    calling = metadata.get("calling_convention_version")
    low = jax_export.minimum_supported_calling_convention_version
    high = jax_export.maximum_supported_calling_convention_version
    if calling is not None and not low <= calling <= high:
        raise ArtifactCompatibilityError(
            f"artifact {name!r} uses jax.export calling convention {calling} (exported with "
            f"jax {metadata.get('jax_version')}); jax {jax.__version__} here supports "
            f"{low} to {high}: export it again with this jax, or install a matching one"
        )
    _pick_device(list(metadata["platforms"]), name)
    try:
        exported = jax_export.deserialize(bytearray(data))
    except Exception as error:  # flatbuffers / MLIR errors from another jax's format
        raise ArtifactCompatibilityError(
            f"artifact {name!r} (exported with jax {metadata.get('jax_version')}) cannot be "
            f"read by jax {jax.__version__}: {type(error).__name__}: {error}"
        ) from error
    _check_consistent(exported, metadata)
    return ExportedFunction(exported, data, metadata)
