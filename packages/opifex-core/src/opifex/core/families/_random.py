"""Random draws for the families: all the arrays of one call from a single threefry draw.

The distributions are those of ``jax.random.uniform`` and ``jax.random.normal`` (normals are
``sqrt(2) erfinv(2u - 1)`` of uniforms, the transform ``jax.random.normal`` uses); only the
layout of the random bits differs. Every separate threefry draw costs XLA:CPU a few tenths of a
second to compile (seconds for shapes with a small trailing axis, such as ``(100, 10)`` or
``(10,)`` under ``vmap``), so a call draws one flat vector, its length rounded up to a multiple
of 128, and cuts the arrays it needs out of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

_BLOCK = 128

Shape = tuple[int, ...]


def _split(flat: jax.Array, shapes: Sequence[Shape]) -> list[jax.Array]:
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return parts


def draw(
    key: jax.Array, normal_shapes: Sequence[Shape] = (), uniform_shapes: Sequence[Shape] = ()
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Independent ``N(0, 1)`` arrays and ``U[0, 1)`` arrays of the given shapes, in one draw.

    Returns ``(normals, uniforms)``, two lists in the order of the shapes (default float dtype).
    """
    normal_size = sum(math.prod(shape) for shape in normal_shapes)
    total = normal_size + sum(math.prod(shape) for shape in uniform_shapes)
    flat = jax.random.uniform(key, (max(_BLOCK, -(-total // _BLOCK) * _BLOCK),))
    dtype = flat.dtype
    # the transform of jax.random.normal: sqrt(2) erfinv(v), v uniform on (-1, 1)
    lowest = jnp.nextafter(jnp.array(-1.0, dtype), jnp.array(0.0, dtype))
    centred = jnp.maximum(2.0 * flat[:normal_size] - 1.0, lowest)
    gaussian = jnp.sqrt(jnp.array(2.0, dtype)) * jax.scipy.special.erfinv(centred)
    return _split(gaussian, normal_shapes), _split(flat[normal_size:], uniform_shapes)


def normals(key: jax.Array, shapes: Sequence[Shape]) -> list[jax.Array]:
    """Independent ``N(0, 1)`` arrays of the given shapes, in one draw."""
    return draw(key, normal_shapes=shapes)[0]


def uniforms(key: jax.Array, shapes: Sequence[Shape]) -> list[jax.Array]:
    """Independent ``U[0, 1)`` arrays of the given shapes, in one draw."""
    return draw(key, uniform_shapes=shapes)[1]


def normal(key: jax.Array, shape: Shape) -> jax.Array:
    """``N(0, 1)`` samples of ``shape``."""
    return normals(key, [shape])[0]


def uniform(key: jax.Array, shape: Shape, minval: float = 0.0, maxval: float = 1.0) -> jax.Array:
    """``U[minval, maxval)`` samples of ``shape``."""
    return minval + (maxval - minval) * uniforms(key, [shape])[0]
