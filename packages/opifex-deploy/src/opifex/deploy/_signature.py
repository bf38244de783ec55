"""The typed signature of a served function: what each input and output is, per example.

A served function takes a batch: every input array has a leading batch axis that the signature
does not list. ``TensorSpec.shape`` is the shape of one example.

Example:
    >>> import numpy as np
    >>> sig = Signature(
    ...     inputs=(TensorSpec("x", (3,), "float32"),),
    ...     outputs=(TensorSpec("y", (), "float32"),),
    ... )
    >>> batch = coerce_inputs(sig, {"x": [[1.0, 2.0, 3.0]]})
    >>> batch["x"].shape, str(batch["x"].dtype)
    ((1, 3), 'float32')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "bool"}
)


class TensorSpec(NamedTuple):
    """One named array of one example: its shape (without the batch axis) and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on a malformed entry."""
        try:
            spec = cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed tensor spec {data!r}: {error}") from None
        return check_spec(spec)


class Signature(NamedTuple):
    """The inputs and outputs of a served function, each a tuple of :class:`TensorSpec`."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        """The signature as a JSON-ready dict."""
        return {
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on a malformed entry."""
        try:
            inputs = tuple(TensorSpec.from_json(d) for d in data["inputs"])
            outputs = tuple(TensorSpec.from_json(d) for d in data["outputs"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed signature {data!r}: {error}") from None
        return cls(inputs, outputs)


def check_spec(spec: TensorSpec) -> TensorSpec:
    """Return ``spec`` if its name, shape and dtype are valid; raise ``ValueError`` otherwise."""
    if not spec.name.isidentifier():
        raise ValueError(f"tensor name must be an identifier, got {spec.name!r}")
    if any(d < 0 for d in spec.shape):
        raise ValueError(f"tensor {spec.name!r}: shape must be non-negative, got {spec.shape}")
    if spec.dtype not in _DTYPES:
        raise ValueError(
            f"tensor {spec.name!r}: dtype must be one of {sorted(_DTYPES)}, got {spec.dtype!r}"
        )
    return spec


def coerce_inputs(signature: Signature, payload: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check a batch of inputs against ``signature`` and convert it to numpy arrays.

    Args:
        signature: what the function takes.
        payload: one entry per input name; each array-like has a leading batch axis, the same
            length for every input.

    Returns:
        The inputs as numpy arrays of the declared dtypes, in signature order.

    Raises:
        ValueError: a missing or unknown name, a wrong per-example shape, an empty or unequal
            batch, a value that does not convert to the dtype, or a NaN / inf in a float input.
    """
    expected = [spec.name for spec in signature.inputs]
    unknown = sorted(set(payload) - set(expected))
    missing = [name for name in expected if name not in payload]
    if unknown or missing:
        raise ValueError(f"inputs must be exactly {expected}; missing {missing}, unknown {unknown}")
    arrays: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        try:
            array = np.asarray(payload[spec.name], dtype=spec.dtype)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(
                f"input {spec.name!r} is not an array of {spec.dtype}: {error}"
            ) from None
        if array.shape[1:] != spec.shape or array.ndim != len(spec.shape) + 1:
            raise ValueError(
                f"input {spec.name!r} must have shape (batch, {', '.join(map(str, spec.shape))}), "
                f"got {array.shape}"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"input {spec.name!r} contains NaN or inf")
        arrays[spec.name] = array
    sizes = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise ValueError(f"every input needs the same non-zero batch size, got {sizes}")
    return arrays
