"""A least-recently-used cache of served results, keyed by a hash of the request's content.

The key of a request is the SHA-256 of the solver's name, the content hash of the servable
that answers it and, for each input, its name, dtype, shape and bytes: the same numbers sent to
the same version of a solver are answered from the cache, and a new version never reads the
results of an old one.

Example:
    >>> import numpy as np
    >>> cache = ResultCache(max_entries=2)
    >>> digest = request_digest("double", {"x": np.ones((1, 3), np.float32)})
    >>> key = cache_key(digest, servable_sha256="ab12")
    >>> cache.get(key) is None
    True
    >>> cache.put(key, {"y": np.full((1, 3), 2.0, np.float32)})
    >>> cache.get(key)["y"].tolist()
    [[2.0, 2.0, 2.0]]
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np


def request_digest(name: str, inputs: Mapping[str, np.ndarray]) -> str:
    """The SHA-256 (hex) of a solver name and its inputs' names, dtypes, shapes and bytes.

    It identifies a request independently of the version that will answer it, so it can also
    route the request (a canary split by request).

    Args:
        name: the solver's name.
        inputs: the validated input arrays, in signature order.

    Returns:
        64 hex digits.

    Example:
        >>> import numpy as np
        >>> a = request_digest("f", {"x": np.zeros((1, 2), np.float32)})
        >>> b = request_digest("f", {"x": np.zeros((2, 1), np.float32)})
        >>> len(a), a == b
        (64, False)
    """
    digest = hashlib.sha256()
    _update(digest, name)
    for key, array in inputs.items():
        array = np.ascontiguousarray(array)
        _update(digest, key)
        _update(digest, array.dtype.str)
        _update(digest, repr(array.shape))
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(request: str, servable_sha256: str) -> str:
    """The cache key of a request (:func:`request_digest`) answered by one servable's content.

    Example:
        >>> cache_key("00" * 32, "ab") == cache_key("00" * 32, "cd")
        False
    """
    digest = hashlib.sha256()
    _update(digest, request)
    _update(digest, servable_sha256)
    return digest.hexdigest()


def _update(digest: Any, text: str) -> None:  # a hashlib object
    data = text.encode()
    digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no two splits collide
    digest.update(data)


class ResultCache:
    """Results by key, the least recently used dropped beyond ``max_entries`` (0: no cache).

    Stored arrays are read-only copies, so a caller cannot change a cached answer. The cache
    is not thread-safe: the service uses it from its event loop only.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The result stored under ``key`` (now the most recently used), or ``None``."""
        result = self._entries.get(key)
        if result is not None:
            self._entries.move_to_end(key)
        return result

    def put(self, key: str, result: Mapping[str, np.ndarray]) -> None:
        """Store a copy of ``result`` under ``key``, dropping the least recently used."""
        if self.max_entries == 0:
            return
        stored = {}
        for name, array in result.items():
            stored[name] = np.array(array, copy=True)
            stored[name].flags.writeable = False
        self._entries[key] = stored
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
