"""The generalised Stiefel manifold ``{C : C^T S C = I}``: frames, tangent coordinates, retraction.

``C`` holds ``k`` orbitals (columns) over ``n`` basis functions and ``S`` is the (symmetric
positive definite) overlap matrix. A point is kept as an S-orthonormal *frame*
``U = [C | V]`` (``n x n``, ``U^T S U = I``): its first ``k`` columns are ``C``, the others
``V`` span the S-orthogonal complement (the virtual orbitals). Every point nearby is
``U Q`` for an orthogonal ``Q``, so a tangent vector is written in the frame as the first ``k``
columns ``T = [A; kappa]`` of an antisymmetric generator::

    K = [[A, -kappa^T],      A      (k x k, antisymmetric): rotations among the orbitals of C
         [kappa,     0]]     kappa  ((n - k) x k): rotations of C into its complement

The retraction is the Cayley transform ``U -> U (I - K/2)^-1 (I + K/2)``: one linear solve,
orthogonal to rounding for any ``K``, and equal to ``exp(K)`` to second order. A tangent
vector keeps its coordinates when the frame moves (the frame is rotated with the point), which
is the vector transport quasi-Newton methods need. Nothing here calls an eigensolver:
frames are completed with a QR factorisation and made S-orthonormal with a Cholesky
factorisation (a block Gram-Schmidt that keeps the span of the first ``k`` columns).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


def orthonormalize_frame(frame: jax.Array, overlap: jax.Array) -> jax.Array:
    """S-orthonormalise the columns of ``frame`` in order (Cholesky Gram-Schmidt).

    ``frame L^-T`` with ``L L^T = frame^T S frame``: each new column is a combination of the
    columns up to it, so the span of the first ``k`` columns is kept for every ``k``.

    Args:
        frame: ``(n, m)`` full-rank columns.
        overlap: the ``(n, n)`` overlap matrix ``S``.

    Returns:
        ``(n, m)`` columns with ``result^T S result = I`` (NaN when ``frame`` is rank deficient
        or ``S`` is not positive definite).

    Example:
        >>> import numpy as np
        >>> s = np.array([[2.0, 0.5], [0.5, 1.0]])
        >>> u = np.asarray(jax.jit(orthonormalize_frame)(np.eye(2), s))
        >>> np.allclose(u.T @ s @ u, np.eye(2), atol=1e-6)
        True
    """
    cholesky = jnp.linalg.cholesky(frame.T @ overlap @ frame)
    return solve_triangular(cholesky, frame.T, lower=True).T


def complete_frame(coefficients: jax.Array, overlap: jax.Array) -> jax.Array:
    """The S-orthonormal frame ``[C | V]`` whose first columns span ``coefficients``.

    The complement comes from a complete QR factorisation of ``S C``: its last ``n - k``
    columns ``W`` satisfy ``W^T S C = 0``; ``[C | W]`` is then S-orthonormalised.

    Args:
        coefficients: ``(n, k)`` full-rank columns, ``k <= n`` (need not be orthonormal).
        overlap: the ``(n, n)`` overlap matrix ``S``.

    Returns:
        ``(n, n)``: ``U^T S U = I`` and ``U[:, :k]`` spans the columns of ``coefficients``.

    Example:
        >>> import numpy as np
        >>> u = np.asarray(jax.jit(complete_frame)(np.array([[1.0], [1.0]]), np.eye(2)))
        >>> np.allclose(u.T @ u, np.eye(2), atol=1e-6), u.shape
        (True, (2, 2))
    """
    k = coefficients.shape[1]
    q, _ = jnp.linalg.qr(overlap @ coefficients, mode="complete")
    return orthonormalize_frame(jnp.concatenate([coefficients, q[:, k:]], axis=1), overlap)


def tangent_gradient(frame: jax.Array, euclidean_grad: jax.Array) -> jax.Array:
    """The Riemannian gradient in frame coordinates ``T = [A; kappa]`` (see the module).

    If ``E(C)`` has Euclidean gradient ``G = dE/dC``, moving along ``U exp(t K)`` changes ``E``
    at the rate ``<U^T G, T>`` (Frobenius), so the gradient is ``U^T G`` with its top ``k x k``
    block made antisymmetric (``A`` must be). For energies that depend only on the span of
    ``C`` (Hartree-Fock, ``trace(C^T A C)``), ``A`` is zero and ``kappa = V^T G``.

    Args:
        frame: ``(n, n)`` S-orthonormal frame ``[C | V]``.
        euclidean_grad: ``(n, k)`` derivative of the energy with respect to ``C``.

    Returns:
        ``(n, k)`` tangent coordinates.

    Example:
        >>> import numpy as np
        >>> jax.jit(tangent_gradient)(np.eye(2), np.array([[1.0], [3.0]])).tolist()
        [[0.0], [3.0]]
    """
    k = euclidean_grad.shape[1]
    t = frame.T @ euclidean_grad
    top = t[:k]
    return t.at[:k].set(0.5 * (top - top.T))


def generator(tangent: jax.Array) -> jax.Array:
    """The antisymmetric ``(n, n)`` generator ``K`` whose first ``k`` columns are ``tangent``.

    Example:
        >>> import numpy as np
        >>> jax.jit(generator)(np.array([[0.0], [2.0]])).tolist()
        [[0.0, -2.0], [2.0, 0.0]]
    """
    n, k = tangent.shape
    top = tangent[:k]
    kappa = tangent[k:]
    result = jnp.zeros((n, n), tangent.dtype)
    result = result.at[:k, :k].set(0.5 * (top - top.T))
    result = result.at[k:, :k].set(kappa)
    return result.at[:k, k:].set(-kappa.T)


def retract(frame: jax.Array, tangent: jax.Array) -> jax.Array:
    """Move the frame along ``tangent``: ``U (I - K/2)^-1 (I + K/2)`` (Cayley transform).

    Args:
        frame: ``(n, n)`` S-orthonormal frame.
        tangent: ``(n, k)`` tangent coordinates (``generator`` builds ``K``).

    Returns:
        The new ``(n, n)`` S-orthonormal frame; its first ``k`` columns are the new point.

    Example:
        >>> import numpy as np
        >>> u = jax.jit(retract)(np.eye(2), np.array([[0.0], [2.0]]))  # a quarter turn
        >>> [round(float(x), 6) for x in u[:, 0]]
        [0.0, 1.0]
    """
    k = generator(tangent)
    identity = jnp.eye(k.shape[0], dtype=k.dtype)
    return frame @ jnp.linalg.solve(identity - 0.5 * k, identity + 0.5 * k)


def orthonormality_error(coefficients: jax.Array, overlap: jax.Array) -> jax.Array:
    """``max |C^T S C - I|``: how far ``coefficients`` are from the manifold.

    Example:
        >>> import numpy as np
        >>> float(jax.jit(orthonormality_error)(np.array([[1.0], [0.0]]), np.eye(2)))
        0.0
    """
    k = coefficients.shape[1]
    metric = coefficients.T @ overlap @ coefficients
    if k == 0:
        return jnp.zeros((), coefficients.dtype)
    return jnp.max(jnp.abs(metric - jnp.eye(k, dtype=metric.dtype)))
