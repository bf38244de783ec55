"""McMurchie-Davidson kernels: Hermite expansion coefficients and Hermite Coulomb integrals.

A product of two cartesian Gaussians along one axis expands in Hermite Gaussians centred on
``P = (a A + b B) / (a + b)``:
``x_A^i x_B^j exp(-a x_A^2 - b x_B^2) = sum_t E^{ij}_t Lambda_t(x_P)``.
The Coulomb integrals of Hermite Gaussians are ``R_{tuv}`` (derivatives of the Boys function).
Every kernel is vectorised over leading batch axes (primitive pairs or quartets); Python loops
run only over the small angular indices, which are static.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from opifex.quantum._boys import boys


@functools.cache
def hermite_indices(order: int) -> tuple[tuple[int, int, int], ...]:
    """The Hermite indices ``(t, u, v)`` with ``t + u + v <= order``, in a fixed order.

    Example:
        >>> hermite_indices(1)
        ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1))
    """
    return tuple(
        (t, u, total - t - u)
        for total in range(order + 1)
        for t in range(total, -1, -1)
        for u in range(total - t, -1, -1)
    )


def hermite_coefficients(
    l_a: int, l_b: int, a: jax.Array, b: jax.Array, x_ab: jax.Array
) -> jax.Array:
    """Hermite expansion coefficients ``E^{ij}_t`` along one axis, ``i <= l_a``, ``j <= l_b``.

    ``E^{00}_0 = exp(-a b / (a + b) x_AB^2)`` carries the Gaussian product prefactor, so the
    product over the three axes of ``E^{ij}_0 sqrt(pi / p)`` is the overlap integral.

    Args:
        l_a: highest power of ``x_A`` (static).
        l_b: highest power of ``x_B`` (static).
        a: exponents of the first Gaussians, shape broadcastable with ``x_ab``.
        b: exponents of the second Gaussians.
        x_ab: ``A_x - B_x``, any batch shape.

    Returns:
        An array of shape ``batch + (l_a + 1, l_b + 1, l_a + l_b + 1)``; entries with
        ``t > i + j`` are zero.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     e = hermite_coefficients(1, 0, jnp.array(1.0), jnp.array(1.0), jnp.array(0.0))
        >>> e.shape, float(e[0, 0, 0]), float(e[1, 0, 1])
        ((2, 1, 2), 1.0, 0.25)
    """
    p = a + b
    x_ab = x_ab + jnp.zeros_like(p)
    n_t = l_a + l_b + 1
    raise_t = np.arange(1, n_t + 1, dtype=np.float64)

    def raise_power(prev: jax.Array, x_p: jax.Array) -> jax.Array:
        # E^{i+1,j}_t = E^{ij}_{t-1} / (2p) + X_PA E^{ij}_t + (t + 1) E^{ij}_{t+1} (same for j)
        x_p = x_p[(...,) + (None,) * (prev.ndim - x_p.ndim)]
        half_inv_p = (0.5 / p)[(...,) + (None,) * (prev.ndim - p.ndim)]
        down = jnp.concatenate([jnp.zeros_like(prev[..., :1]), prev[..., :-1]], axis=-1)
        up = jnp.concatenate([prev[..., 1:], jnp.zeros_like(prev[..., :1])], axis=-1)
        return half_inv_p * down + x_p * prev + raise_t * up

    first = jnp.exp(-a * b / p * x_ab**2)[..., None]
    rows = [jnp.concatenate([first, jnp.zeros((*first.shape[:-1], n_t - 1), first.dtype)], -1)]
    for _ in range(l_a):
        rows.append(raise_power(rows[-1], -b / p * x_ab))
    cols = [jnp.stack(rows, axis=-2)]  # (..., l_a + 1, n_t) for j = 0
    for _ in range(l_b):
        cols.append(raise_power(cols[-1], a / p * x_ab))
    return jnp.stack(cols, axis=-2)


def hermite_coulomb(order: int, alpha: jax.Array, r_pc: jax.Array) -> jax.Array:
    """Hermite Coulomb integrals ``R_{tuv} = R^0_{tuv}(alpha, R_PC)`` for ``t + u + v <= order``.

    ``R^n_{000} = (-2 alpha)^n F_n(alpha |R_PC|^2)`` and
    ``R^n_{t+1,u,v} = t R^{n+1}_{t-1,u,v} + X_PC R^{n+1}_{t,u,v}`` (likewise in ``u``, ``v``).
    The Hermite index is the leading axis, so each recursion level gathers whole rows.

    Args:
        order: highest total Hermite order (static).
        alpha: the reduced exponent, batch shape.
        r_pc: ``P - C``, shape ``(3,) + batch``.

    Returns:
        An array of shape ``(len(hermite_indices(order)),) + batch``, in ``hermite_indices``
        order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     r = hermite_coulomb(1, jnp.array(1.0), jnp.ones(3))  # F_0(3), -2 F_1(3) x 3
        >>> [round(float(x), 6) for x in r]
        [0.504344, -0.151519, -0.151519, -0.151519]
    """
    t = alpha * (r_pc[0] * r_pc[0] + r_pc[1] * r_pc[1] + r_pc[2] * r_pc[2])  # not a reduction
    boys_values = jnp.moveaxis(boys(order, t), -1, 0)
    scaled, factor = [], -2.0 * alpha
    for n in range(order + 1):  # R^n_{000} = (-2 alpha)^n F_n
        scaled.append(boys_values[n] * factor**n if n else boys_values[0])
    values = scaled[order][None]
    for n in range(order - 1, -1, -1):  # level n: R^n_{tuv} for t + u + v <= order - n
        axis, step, lower, weight = _coulomb_recursion(order - n)
        weight = weight.reshape(weight.shape + (1,) * (values.ndim - 1))
        values = jnp.concatenate(
            [scaled[n][None], r_pc[axis] * values[step] + weight * values[lower]], axis=0
        )
    return values


@functools.cache
def _coulomb_recursion(order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Static gathers of ``R^n_{tuv} = X R^{n+1}_{t-1,u,v} + (t - 1) R^{n+1}_{t-2,u,v}``.

    For each index of ``hermite_indices(order)`` but the first, the axis it is lowered along (the
    first nonzero one) and the positions in ``hermite_indices(order - 1)`` of the index lowered
    once and twice along it, with the weight of the second (0 where it does not exist).
    """
    position = {key: k for k, key in enumerate(hermite_indices(order - 1))}
    axis, step, lower, weight = [], [], [], []
    for key in hermite_indices(order)[1:]:
        ax = next(k for k in range(3) if key[k])
        once = list(key)
        once[ax] -= 1
        twice = list(once)
        twice[ax] = max(twice[ax] - 1, 0)
        axis.append(ax)
        step.append(position[tuple(once)])
        lower.append(position[tuple(twice)])
        weight.append(float(once[ax]))
    return tuple(np.asarray(x) for x in (axis, step, lower, weight))
