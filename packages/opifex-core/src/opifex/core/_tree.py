"""Small pytree arithmetic helpers shared by every opifex package."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """Inner product of two pytrees with the same structure.

    Example:
        >>> float(tree_vdot({"a": jnp.ones(2)}, {"a": jnp.full(2, 3.0)}))
        6.0
    """
    parts = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
    return sum(parts[1:], parts[0]) if parts else jnp.zeros(())


def tree_l2_norm(tree: Any) -> jax.Array:
    """Euclidean norm of all leaves of ``tree`` taken together.

    Example:
        >>> float(tree_l2_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
        5.0
    """
    return jnp.sqrt(tree_vdot(tree, tree))


def tree_axpy(alpha: Any, x: Any, y: Any) -> Any:
    """Return ``alpha * x + y`` leaf by leaf.

    Example:
        >>> tree_axpy(2.0, jnp.ones(2), jnp.ones(2))
        Array([3., 3.], dtype=float32)
    """
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_where(condition: Any, on_true: Any, on_false: Any) -> Any:
    """Leafwise ``jnp.where(condition, a, b)`` of two pytrees with the same structure.

    ``condition`` is a scalar (or broadcasts against every leaf), typically a 0-d bool array
    computed under ``jit``: the usual way to keep or discard a whole step's state at once.

    Example:
        >>> tree_where(jnp.asarray(False), {"a": jnp.ones(2)}, {"a": jnp.zeros(2)})
        {'a': Array([0., 0.], dtype=float32)}
    """
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)
