"""The safety filter's QP: the closest control to a nominal one within half-spaces and a box.

``minimise 1/2 (u - u_nom)' W (u - u_nom)  s.t.  A u >= b,  lower <= u <= upper`` with ``W``
diagonal and positive. Solved on the dual of the half-spaces, the box kept in the primal: for
multipliers ``lam >= 0`` the box-constrained minimiser of the Lagrangian is
``u(lam) = clip(u_nom + W^-1 A' lam, lower, upper)``.

* One half-space (``p = 1``): exact. ``phi(lam) = a' u(lam) - b`` is piecewise linear and
  non-decreasing, with kinks where a component of ``u`` reaches a bound; ``phi`` is evaluated at
  every kink, and the root is interpolated on the segment that holds it (for a scalar control
  this is the clip of the unconstrained answer). No root means no control in the box satisfies
  the half-space.
* One control (``m = 1``), several half-spaces: exact, each row bounds ``u`` on one side and
  the answer is ``u_nom`` clipped to their intersection with the box.
* Otherwise: Goldfarb and Idnani's dual active-set method with the box as ``2 m`` more rows:
  exact after finitely many steps, each adding or dropping one active row (at most
  ``max_steps``), and a proof of infeasibility when a row cannot be added.

When no control satisfies every constraint the dual is unbounded and the answer, flagged
``feasible=False``, is a best effort: for one half-space the box corner that maximises
``a' u``; for one control the box point that maximises the smallest slack per unit normal;
otherwise the active-set method's last iterate, the optimum of the rows it could add.

Derivatives of a converged solution follow the implicit function theorem
(``opifex.core.implicit_root``) on the KKT fixed point ``u = u(lam)``,
``lam = max(0, lam - (A u - b))``; they need strict complementarity and linearly independent
active normals restricted to the unclipped components. A best effort (not converged) carries no
derivative.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from opifex.core import check_int_at_least, check_positive, implicit_root

Array = jax.Array


class FilterQPSolution(NamedTuple):
    """The answer of ``filter_qp``.

    Attributes:
        control: the minimiser ``u`` (or, when infeasible, the best-effort control), ``(m,)``.
        multipliers: the half-spaces' Lagrange multipliers ``lam >= 0``, ``(p,)``.
        residual: ``A u - b`` at ``control`` (``>= 0`` where satisfied), ``(p,)``.
        feasible: ``control`` satisfies every half-space within the tolerance (and is finite).
        converged: ``control`` satisfies the KKT conditions within the tolerance (the optimum).

    Example:
        >>> import jax.numpy as jnp
        >>> sol = filter_qp(jnp.zeros(1), jnp.ones((1, 1)), jnp.ones(1))
        >>> sol.control.tolist(), bool(sol.feasible)
        ([1.0], True)
    """

    control: Array
    multipliers: Array
    residual: Array
    feasible: Array
    converged: Array


def _coordinate(c: Array, a: Array, d: Array, b: Array, lower: Array, upper: Array) -> Array:
    """The multiplier ``lam >= 0`` of ``max_lam min_{u in box} ... ``: one half-space, exact.

    ``u(lam) = clip(c + lam d, lower, upper)`` with ``d = W^-1 a``; returns the smallest root of
    ``a' u(lam) = b`` (0 when ``a' u(0) >= b``), or, when there is none, a multiplier beyond
    the last kink (every component that moves is clipped).
    """
    safe_d = jnp.where(d == 0, 1.0, d)

    def kinks(bound: Array) -> Array:
        t = (bound - c) / safe_d
        return jnp.where((d != 0) & jnp.isfinite(t), jnp.maximum(t, 0.0), jnp.inf)

    points = jnp.sort(jnp.concatenate([jnp.zeros(1, c.dtype), kinks(lower), kinks(upper)]))
    finite = jnp.isfinite(points)
    points = jnp.where(finite, points, 0.0)
    phi = jax.vmap(lambda lam: a @ jnp.clip(c + lam * d, lower, upper) - b)(points)
    index = jnp.arange(points.shape[0])
    k = jnp.max(jnp.where(finite & (phi < 0), index, 0))  # the last kink left of the root
    after = jnp.minimum(k + 1, points.shape[0] - 1)
    gap = points[after] - points[k]
    has_next = (k + 1 < points.shape[0]) & finite[after] & (gap > 0)
    # past the last finite kink only components without a bound in their direction still move
    unbounded = ((d > 0) & (upper == jnp.inf)) | ((d < 0) & (lower == -jnp.inf))
    slope_at_infinity = jnp.sum(jnp.where(unbounded, a * d, 0.0))
    slope = jnp.where(
        has_next, (phi[after] - phi[k]) / jnp.where(has_next, gap, 1.0), slope_at_infinity
    )
    root = points[k] - phi[k] / jnp.where(slope > 0, slope, 1.0)
    beyond = 2.0 * jnp.max(points) + 1.0  # infeasible: everything that moves is clipped
    return jnp.where(phi[0] >= 0, 0.0, jnp.where(slope > 0, root, beyond))


def _primal(lam: Array, theta: tuple) -> Array:
    u_nom, normals, _, lower, upper, weight = theta
    return jnp.clip(u_nom + (lam @ normals) / weight, lower, upper)


def _tolerance(u: Array, theta: tuple, rtol: float) -> Array:
    u_nom, normals, offsets, _, _, _ = theta
    # rounding is relative to the terms that cancel: b, A u and A u_nom (u = u_nom + W^-1 A' lam)
    scale = jnp.abs(offsets) + jnp.abs(normals) @ (jnp.abs(u) + jnp.abs(u_nom))
    return rtol * scale + jnp.finfo(u.dtype).tiny


def _kkt_ok(lam: Array, theta: tuple, rtol: float) -> tuple[Array, Array]:
    """``(feasible, optimal)`` of ``u(lam)``: primal feasibility, and complementarity too.

    Stationarity and dual feasibility hold by construction (``u = u(lam)``, ``lam >= 0``).
    """
    u = _primal(lam, theta)
    residual = theta[1] @ u - theta[2]
    tol = _tolerance(u, theta, rtol)
    feasible = jnp.all(residual >= -tol) & jnp.all(jnp.isfinite(u))
    complementary = jnp.all((lam == 0) | (residual <= tol))
    return feasible, feasible & complementary & jnp.all(jnp.isfinite(lam))


def _scalar(theta: tuple) -> tuple[Array, Array]:
    """One control (``m = 1``), any number of rows: exact. ``(lam, best effort)``.

    Each row with ``a_i != 0`` bounds ``u`` on one side; the answer is ``u_nom`` clipped to the
    intersection of those bounds and the box, and the multiplier sits on the binding row. With
    no intersection the best effort maximises the smallest row slack ``|a_i| (u - b_i / a_i)``
    per unit ``|a_i|`` over the box (the box point that brakes hardest when every row is an
    upper bound).
    """
    u_nom, normals, offsets, lower, upper, weight = theta
    a = normals[:, 0]
    ratio = offsets / jnp.where(a == 0, 1.0, a)
    above = jnp.where(a > 0, ratio, -jnp.inf)  # u >= ratio
    below = jnp.where(a < 0, ratio, jnp.inf)  # u <= ratio
    i_lo, i_hi = jnp.argmax(above), jnp.argmin(below)
    r_lo, r_hi = above[i_lo], below[i_hi]
    u = jnp.clip(u_nom[0], jnp.maximum(lower[0], r_lo), jnp.minimum(upper[0], r_hi))
    rows = jnp.arange(a.shape[0])
    lam = jnp.where(
        (rows == i_lo) & (r_lo > lower[0]) & (u_nom[0] < r_lo),
        weight[0] * (u - u_nom[0]) / jnp.where(a == 0, 1.0, a),
        0.0,
    ) + jnp.where(
        (rows == i_hi) & (r_hi < upper[0]) & (u_nom[0] > r_hi),
        weight[0] * (u - u_nom[0]) / jnp.where(a == 0, 1.0, a),
        0.0,
    )
    middle = jnp.where(
        r_lo == -jnp.inf, -jnp.inf, jnp.where(r_hi == jnp.inf, jnp.inf, 0.5 * (r_lo + r_hi))
    )
    feasible_box = (r_lo <= upper[0]) & (r_hi >= lower[0]) & (r_lo <= r_hi)
    best = jnp.where(feasible_box, u, jnp.clip(middle, lower[0], upper[0]))
    return jnp.maximum(lam, 0.0), best[None]


def _spd_solve(matrix: Array, rhs: Array) -> Array:
    """Solve a small symmetric positive definite system by unrolled elimination (no pivoting)."""
    n = rhs.shape[0]
    matrix, rhs = matrix.astype(rhs.dtype), rhs
    for k in range(n):
        factor = matrix[k + 1 :, k] / matrix[k, k]
        matrix = matrix.at[k + 1 :].add(-factor[:, None] * matrix[k])
        rhs = rhs.at[k + 1 :].add(-factor * rhs[k])
    solution = jnp.zeros_like(rhs)
    for k in reversed(range(n)):
        solution = solution.at[k].set(
            (rhs[k] - matrix[k, k + 1 :] @ solution[k + 1 :]) / matrix[k, k]
        )
    return solution


def _goldfarb_idnani(theta: tuple, max_steps: int, rtol: float) -> tuple[Array, Array]:
    """Goldfarb and Idnani's dual active-set method (Math. Programming 27, 1983): ``(lam, u)``.

    The box enters as ``2 m`` more rows (infinite bounds left out). From the unconstrained
    minimiser ``u_nom``, each step takes the most violated row ``q`` (per unit normal) and
    raises its multiplier along the direction that keeps the active rows tight: either ``q``
    becomes satisfied and joins the active set (a full step), or an active multiplier reaches
    zero first and that row leaves (a partial step; ``q`` stays the target). Active normals
    stay linearly independent, so at most ``m`` rows are active and each step solves an
    ``m x m`` positive definite system. Every full step ends at the optimum of the rows added
    so far; a target whose normal depends on the active ones, with no multiplier left to
    decrease, proves infeasibility, and the iterate is then the optimum of the rows it added.
    """
    u_nom, normals, offsets, lower, upper, weight = theta
    p, m = normals.shape
    dtype = u_nom.dtype
    eye = jnp.eye(m, dtype=dtype)
    rows = jnp.concatenate([normals, eye, -eye])
    rhs = jnp.concatenate([offsets, lower, -upper])
    norms = jnp.sqrt(jnp.sum(rows**2, axis=1))
    usable = jnp.isfinite(rhs) & (norms > 0)
    rhs = jnp.where(usable, rhs, 0.0)
    count = rows.shape[0]
    tiny = 100.0 * jnp.finfo(dtype).eps
    scale = rtol * jnp.abs(rhs) + tiny

    def running(state: tuple) -> Array:
        return (state[4] == 0) & (state[5] < max_steps)

    def step(state: tuple) -> tuple:
        u, lam, slots, target, _, steps = state  # slots: the active rows, -1 for none
        filled = slots >= 0
        index = jnp.where(filled, slots, 0)
        active = jnp.zeros(count, bool).at[index].max(filled)
        slack = rows @ u - rhs
        tolerance = scale + rtol * jnp.abs(rows) @ (jnp.abs(u) + jnp.abs(u_nom))
        violated = usable & ~active & (slack < -tolerance)
        worst = jnp.argmin(jnp.where(violated, slack / jnp.where(usable, norms, 1.0), jnp.inf))
        q = jnp.where(target >= 0, target, worst)
        done = (target < 0) & ~jnp.any(violated)
        # z = W^-1 (n_q - N' c) with (N W^-1 N') c = N W^-1 n_q over the active rows N
        basis = jnp.where(filled[:, None], rows[index], 0.0)
        scaled = basis / weight
        gram = scaled @ basis.T + jnp.diag(jnp.where(filled, 0.0, 1.0))
        c = _spd_solve(gram, scaled @ rows[q])
        z = (rows[q] - basis.T @ c) / weight
        mu = -c  # the active multipliers' rate per unit of lam_q
        curvature = rows[q] @ z
        independent = curvature > tiny * (rows[q] @ (rows[q] / weight))
        full = jnp.where(independent, -slack[q] / jnp.where(independent, curvature, 1.0), jnp.inf)
        ratios = jnp.where(filled & (mu < 0), lam[index] / jnp.where(mu < 0, -mu, 1.0), jnp.inf)
        leaving = jnp.argmin(ratios)
        length = jnp.minimum(full, ratios[leaving])
        infeasible = ~done & ~jnp.isfinite(length)
        moving = ~done & ~infeasible
        length = jnp.where(moving, length, 0.0)
        u = u + jnp.where(independent, length, 0.0) * z
        lam = lam.at[index].add(jnp.where(filled, length * mu, 0.0)).at[q].add(length)
        joins = moving & (full <= ratios[leaving])
        leaves = moving & ~joins
        free = jnp.argmin(filled)  # an empty slot (one exists while q is independent)
        slots = jnp.where(joins, slots.at[free].set(q), slots)
        lam = jnp.where(leaves, lam.at[index[leaving]].set(0.0), lam)
        slots = jnp.where(leaves, slots.at[leaving].set(-1), slots)
        target = jnp.where(leaves, q, -1)
        status = jnp.where(done, 1, jnp.where(infeasible, 2, 0))
        return u, jnp.maximum(lam, 0.0), slots, target, status, steps + 1

    start = (
        u_nom,
        jnp.zeros(count, dtype),
        jnp.full((m,), -1),
        jnp.asarray(-1),
        jnp.asarray(0),
        jnp.asarray(0),
    )
    u, lam = lax.while_loop(running, step, start)[:2]
    return lam[:p], u


def _solve_multipliers(
    theta: tuple, max_steps: int, rtol: float
) -> tuple[Array, Array, Array, Array]:
    """``(lam, best effort control, feasible, converged)``."""
    u_nom, normals, offsets, lower, upper, weight = theta
    p, m = normals.shape
    if p == 1:  # one half-space: the coordinate step is the exact answer
        lam = _coordinate(u_nom, normals[0], normals[0] / weight, offsets[0], lower, upper)[None]
        return (lam, _primal(lam, theta), *_kkt_ok(lam, theta, rtol))
    if m == 1:  # one control: an interval, exact
        lam, best = _scalar(theta)
        feasible, converged = _kkt_ok(lam, theta, rtol)
        return lam, jnp.where(converged, _primal(lam, theta), best), feasible, converged

    lam, u = _goldfarb_idnani(theta, max_steps, rtol)
    feasible, converged = _kkt_ok(lam, theta, rtol)
    inside = jnp.all((u >= lower) & (u <= upper) & jnp.isfinite(u))
    u_feasible = inside & jnp.all(normals @ u - offsets >= -_tolerance(u, theta, rtol))
    best = jnp.where(converged, _primal(lam, theta), u)
    return lam, best, jnp.where(converged, feasible, u_feasible), converged


def _optimality(z: tuple[Array, Array], theta: tuple) -> tuple[Array, Array]:
    u, lam = z
    residual = theta[1] @ u - theta[2]
    # every output depends on every input: lax.custom_linear_solve's transpose (reverse mode)
    # fails on a right-hand side part that is constant in the differentiated input
    link = 0.0 * sum(jnp.sum(jnp.where(jnp.isfinite(leaf), leaf, 0.0)) for leaf in theta)
    return u - _primal(lam, theta) + link, lam - jnp.maximum(lam - residual, 0.0) + link


_IMPLICIT = implicit_root(_optimality, lambda init, theta: init)


def filter_qp(
    u_nom: Any,
    normals: Any,
    offsets: Any,
    lower: Any = None,
    upper: Any = None,
    weight: Any = None,
    *,
    max_steps: int = 50,
    rtol: float | None = None,
) -> FilterQPSolution:
    """The closest control to ``u_nom`` within ``normals @ u >= offsets`` and the box.

    Minimises ``1/2 sum_j weight_j (u_j - u_nom_j)^2`` subject to ``normals @ u >= offsets``
    and ``lower <= u <= upper`` (see the module docstring for the method). jit-, vmap- and
    grad-compatible; derivatives with respect to every argument by implicit differentiation.

    Args:
        u_nom: the nominal control, shape ``(m,)``.
        normals: the half-spaces' normals ``A``, shape ``(p, m)``, ``p >= 1``.
        offsets: their offsets ``b``, shape ``(p,)``.
        lower: lower bounds, shape ``(m,)`` (``-inf`` for none); ``None``: no bound.
        upper: upper bounds, shape ``(m,)``; ``None``: no bound.
        weight: the positive diagonal of ``W``, shape ``(m,)``; ``None``: ones.
        max_steps: active-set steps when ``p > 1`` and ``m > 1`` (static; each adds or drops
            one row, so ``p + 2 m`` or a few more suffice).
        rtol: relative tolerance of the feasibility and KKT checks; ``None``: the square root
            of the dtype's machine epsilon.

    Returns:
        A ``FilterQPSolution``; ``feasible=False`` flags a problem with no feasible control
        (or NaN input), whose ``control`` is the best effort described in the module docstring.

    Raises:
        ValueError: inconsistent shapes, ``max_steps < 1`` or ``rtol <= 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> sol = filter_qp(jnp.array([2.0, 0.0]), jnp.array([[-1.0, -1.0]]), jnp.array([0.0]),
        ...                 lower=jnp.array([-2.0, -0.5]))           # u1 + u2 <= 0, u2 >= -0.5
        >>> [round(v, 4) for v in sol.control.tolist()], bool(sol.feasible)
        ([0.5, -0.5], True)
    """
    check_int_at_least(max_steps, 1, "max_steps")
    if rtol is not None:
        check_positive(rtol, "rtol")
    u_nom = jnp.asarray(u_nom)
    dtype = jnp.result_type(u_nom, normals, offsets, float)
    u_nom = u_nom.astype(dtype)
    normals, offsets = jnp.asarray(normals, dtype), jnp.asarray(offsets, dtype)
    if u_nom.ndim != 1:
        raise ValueError(f"u_nom must have shape (m,), got {u_nom.shape}")
    m = u_nom.shape[0]
    if normals.ndim != 2 or normals.shape[1] != m or normals.shape[0] < 1:
        raise ValueError(f"normals must have shape (p, {m}) with p >= 1, got {normals.shape}")
    if offsets.shape != normals.shape[:1]:
        raise ValueError(f"offsets must have shape ({normals.shape[0]},), got {offsets.shape}")

    def vector(value: Any, default: float, name: str) -> Array:
        out = jnp.full((m,), default, dtype) if value is None else jnp.asarray(value, dtype)
        if out.shape != (m,):
            raise ValueError(f"{name} must have shape ({m},), got {out.shape}")
        return out

    theta = (
        u_nom,
        normals,
        offsets,
        vector(lower, -jnp.inf, "lower"),
        vector(upper, jnp.inf, "upper"),
        vector(weight, 1.0, "weight"),
    )
    rtol = float(jnp.finfo(dtype).eps) ** 0.5 if rtol is None else rtol
    lam, best, feasible, converged = _solve_multipliers(
        jax.tree.map(lax.stop_gradient, theta), max_steps, rtol
    )
    # implicit derivatives at a converged solution; a well-posed stand-in problem elsewhere
    # (nothing active: a non-singular system), whose derivatives are discarded by the where
    u_safe = lax.stop_gradient(jnp.clip(u_nom, theta[3], theta[4]))
    stand_in = (*theta[:2], normals @ u_safe - 1.0, *theta[3:])
    theta_root = jax.tree.map(lambda a, b: jnp.where(converged, a, b), theta, stand_in)
    z = (lax.stop_gradient(_primal(lam, theta)), lam)
    z_root = jax.tree.map(lambda a, b: jnp.where(converged, a, b), z, (u_safe, jnp.zeros_like(lam)))
    u_implicit, lam_implicit = _IMPLICIT(z_root, theta_root)
    control = jnp.where(converged, u_implicit, best)  # a best effort carries no derivative
    multipliers = jnp.where(converged, lam_implicit, lam)
    return FilterQPSolution(control, multipliers, normals @ control - offsets, feasible, converged)
