"""``WarmStartStore``: solved problems kept by descriptor, to start similar problems from.

A descriptor is a 1-d vector of finite numbers that the user picks to describe a problem (its
data, its coefficients, ...); problems with nearby descriptors should have nearby solutions.
``nearest`` returns the stored solution whose descriptor is closest in Euclidean distance,
among those with the same parameter structure and shapes, if that distance is at most the
threshold. The store keeps at most ``capacity`` entries and drops the oldest first. It lives
in host memory (NumPy descriptors, the parameter pytrees as given).
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core._checks import check_int_at_least, check_positive


class WarmStart(NamedTuple):
    """A stored solution chosen for a new problem.

    Attributes:
        params: the stored solution.
        distance: the Euclidean distance between the descriptors.
    """

    params: Any
    distance: float


def check_descriptor(descriptor: Any, name: str = "problem_features") -> np.ndarray:
    """``descriptor`` as a 1-d float64 array; ``ValueError`` / ``TypeError`` if it is not one.

    Example:
        >>> check_descriptor([1, 2.5]).tolist()
        [1.0, 2.5]
    """
    try:
        array = np.asarray(descriptor, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-d array of numbers, got {descriptor!r:.80}") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _signature(params: Any) -> tuple:
    leaves, structure = jax.tree.flatten(params)
    return structure, tuple((np.shape(leaf), jnp.result_type(leaf)) for leaf in leaves)


class WarmStartStore:
    """At most ``capacity`` ``(descriptor, solution)`` pairs, oldest dropped first.

    Args:
        capacity: the most entries kept (>= 1).
        threshold: the largest descriptor distance at which a solution is reused (>= 0).

    Example:
        >>> import jax.numpy as jnp
        >>> store = WarmStartStore(capacity=2, threshold=0.5)
        >>> store.add([0.0, 1.0], jnp.ones(3))
        >>> round(store.nearest([0.0, 1.3], jnp.zeros(3)).distance, 6)
        0.3
        >>> store.nearest([5.0, 5.0], jnp.zeros(3)) is None  # too far
        True
    """

    def __init__(self, capacity: int, threshold: float):
        check_int_at_least(capacity, 1, "capacity")
        check_positive(threshold, "threshold", allow_zero=True)
        self.capacity = capacity
        self.threshold = float(threshold)
        self._entries: collections.deque = collections.deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, descriptor: Any, params: Any) -> None:
        """Store ``params`` as the solution of the problem described by ``descriptor``."""
        self._entries.append((check_descriptor(descriptor), _signature(params), params))

    def neighbors(self, descriptor: Any, like: Any, k: int) -> list[WarmStart]:
        """Up to ``k`` stored solutions shaped like ``like`` within the threshold, nearest first.

        Ties keep the older first. Descriptors of another length than ``descriptor`` are not
        comparable and are skipped.

        Example:
            >>> import jax.numpy as jnp
            >>> store = WarmStartStore(capacity=3, threshold=1.0)
            >>> for x in (0.0, 0.5, 0.2):
            ...     store.add([x], jnp.full(2, x))
            >>> [round(w.distance, 6) for w in store.neighbors([0.1], jnp.zeros(2), k=2)]
            [0.1, 0.1]
        """
        check_int_at_least(k, 1, "k")
        descriptor = check_descriptor(descriptor)
        signature = _signature(like)
        found = []
        for stored, stored_signature, params in self._entries:
            if stored.shape != descriptor.shape or stored_signature != signature:
                continue
            distance = float(np.linalg.norm(stored - descriptor))
            if distance <= self.threshold:
                found.append(WarmStart(params, distance))
        found.sort(key=lambda entry: entry.distance)
        return found[:k]

    def nearest(self, descriptor: Any, like: Any) -> WarmStart | None:
        """The closest stored solution shaped like ``like``, if within the threshold.

        Descriptors of another length than ``descriptor`` are not comparable and are skipped.
        """
        found = self.neighbors(descriptor, like, 1)
        return found[0] if found else None
