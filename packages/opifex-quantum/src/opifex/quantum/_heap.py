"""Hand the C heap's freed memory back to the operating system before a large allocation.

Compiling a large XLA program and building the host-side integral plan free hundreds of MB
that glibc's allocator keeps in its heaps (one per compiler thread) instead of returning them;
a supermatrix allocated next lies on top of that in the process's resident memory. For
anthracene/6-31G that was ~550 MB beside a 0.9 GB supermatrix. ``malloc_trim`` releases it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """The C library's ``malloc_trim`` (glibc), or None where it has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def release_free_heap() -> bool:
    """Return the free pages of every C heap to the operating system.

    Returns:
        True if memory was released; False if none was or the C library cannot (not glibc).

    Example:
        >>> released = release_free_heap()  # True or False: what the heaps held
        >>> isinstance(released, bool)
        True
    """
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
