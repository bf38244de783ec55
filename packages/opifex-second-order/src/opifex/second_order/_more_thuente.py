"""The More-Thuente line search as an optax transformation.

More & Thuente (1994), "Line search algorithms with guaranteed sufficient decrease", ACM TOMS
20(3): find a step ``t > 0`` along the direction ``d`` that satisfies the strong Wolfe
conditions for ``phi(t) = f(x + t d)``::

    phi(t) <= phi(0) + slope_rtol * t * phi'(0)        (sufficient decrease)
    |phi'(t)| <= curv_rtol * |phi'(0)|                   (curvature)

Each trial evaluates the value and the gradient once. The step is chosen by safeguarded
cubic / quadratic interpolation of the two best points (``_safeguarded_step``, the paper's
Section 4). While no trial has shown both sufficient decrease and a non-negative slope (stage
one), a trial with a lower value but not sufficient decrease is interpolated on the modified
function ``psi(t) = phi(t) - phi(0) - slope_rtol * t * phi'(0)``; afterwards on ``phi``.
Until a minimiser is bracketed, trials extrapolate to ``[1.1, 4] * (t - t_best)`` beyond the
best step; once bracketed, a bisection is forced when the bracket did not shrink by a factor
0.66 over two trials. The search stops, besides on the strong Wolfe conditions, when rounding
errors prevent progress, the bracket is narrower than ``xtol`` (relative), a bound
``min_stepsize`` / ``max_stepsize`` is reached, or ``max_linesearch_steps`` trials are spent
(``MoreThuenteStatus``).

Beyond the paper: a trial with a non-finite value or slope is not interpolated; the next trial
is halfway back to the best step, and no later trial goes as far as that one.

On success the returned step is the strong Wolfe point. Otherwise it is the trial with the
lowest value, the start (step 0) included: a step of ``0`` means that no trial decreased the
objective, so a solver can detect the failure by ``learning_rate == 0`` (or by the status).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from opifex.core import check_int_at_least, check_positive, tree_where

# extrapolation range beyond the best step while no minimiser is bracketed
_EXTRAPOLATE_MIN = 1.1
_EXTRAPOLATE_MAX = 4.0
# a bracket that does not shrink below this fraction over two trials triggers a bisection
_SHRINK = 0.66
_RUNNING = -1


class MoreThuenteStatus(enum.IntEnum):
    """Why the More-Thuente line search stopped (``state.info.status``).

    Only ``CONVERGED`` guarantees the strong Wolfe conditions; after any other status the
    returned step is the trial with the lowest value (``0`` when none decreased it).
    """

    CONVERGED = 0  # strong Wolfe conditions hold
    ROUNDING = 1  # rounding errors prevent progress (the trial left the bracket)
    XTOL = 2  # bracket width at most xtol * its upper end
    MAX_STEPSIZE = 3  # the step reached max_stepsize while still descending
    MIN_STEPSIZE = 4  # the step reached min_stepsize without sufficient decrease
    MAX_STEPS = 5  # max_linesearch_steps trials spent
    NOT_DESCENT = 6  # phi'(0) >= 0, or the value or slope at the start is not finite


class MoreThuenteInfo(NamedTuple):
    """Diagnostics of the last line search.

    Attributes:
        num_linesearch_steps: trials (value-and-gradient evaluations) made (0-d int32).
        status: a ``MoreThuenteStatus`` code (0-d int32).
    """

    num_linesearch_steps: jax.Array
    status: jax.Array


class ScaleByMoreThuenteState(NamedTuple):
    """State of ``scale_by_more_thuente_linesearch``.

    Attributes:
        learning_rate: the accepted step (``0`` when no trial decreased the objective).
        value: objective at the accepted point (reused by ``optax.value_and_grad_from_state``).
        grad: gradient at the accepted point.
        info: ``MoreThuenteInfo`` of the last search.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: MoreThuenteInfo


class _Bracket(NamedTuple):
    """The best step ``stx`` and the other end ``sty``, with their values and slopes.

    ``brackt`` says whether a minimiser is known to lie between them.
    """

    stx: jax.Array
    fx: jax.Array
    gx: jax.Array
    sty: jax.Array
    fy: jax.Array
    gy: jax.Array
    brackt: jax.Array


def _cubic_terms(a, fa, ga, b, fb, gb):
    """``theta`` and ``|gamma|`` of the cubic through ``(a, fa, ga)`` and ``(b, fb, gb)``.

    Its minimiser is ``b + ((gamma - gb) + theta) / ((gamma - gb) + gamma + ga) * (a - b)``,
    ``gamma``'s sign set by the orientation; ``s`` scales the square root against overflow.
    """
    theta = 3.0 * (fa - fb) / (b - a) + ga + gb
    s = jnp.maximum(jnp.maximum(jnp.abs(theta), jnp.abs(ga)), jnp.abs(gb))
    gamma = s * jnp.sqrt(jnp.maximum((theta / s) ** 2 - (ga / s) * (gb / s), 0.0))
    return theta, gamma


def _safeguarded_step(bracket: _Bracket, stp, fp, gp, stmin, stmax):
    """The paper's trial-value selection (Section 4, cases 1-4) and bracket update.

    Returns the updated ``_Bracket`` and the next trial step (not yet safeguarded by the
    bisection rule or the step bounds).
    """
    stx, fx, gx, sty, fy, gy, brackt = bracket
    same_sign = gp * jnp.sign(gx)  # < 0: the slopes at stx and stp have opposite signs
    dist = stp - stx
    theta, gamma = _cubic_terms(stx, fx, gx, stp, fp, gp)

    # case 1: higher value; cubic or halfway towards the quadratic (values, slope at stx)
    g1 = jnp.where(stp < stx, -gamma, gamma)
    cubic1 = stx + ((g1 - gx) + theta) / (((g1 - gx) + g1) + gp) * dist
    quad1 = stx + ((gx / ((fx - fp) / dist + gx)) / 2.0) * dist
    step1 = jnp.where(
        jnp.abs(cubic1 - stx) < jnp.abs(quad1 - stx), cubic1, cubic1 + (quad1 - cubic1) / 2.0
    )

    # cases 2 and 3 write the cubic from stp; the secant uses the two slopes
    g23 = jnp.where(stp > stx, -gamma, gamma)
    secant = stp + (gp / (gp - gx)) * (stx - stp)

    # case 2: lower value, slopes of opposite sign; the step farther from stp
    cubic2 = stp + ((g23 - gp) + theta) / (((g23 - gp) + g23) + gx) * (stx - stp)
    step2 = jnp.where(jnp.abs(cubic2 - stp) > jnp.abs(secant - stp), cubic2, secant)

    # case 3: lower value, same sign, slope decreasing in magnitude
    r3 = ((g23 - gp) + theta) / ((g23 + (gx - gp)) + g23)
    cubic3 = jnp.where(
        (r3 < 0.0) & (gamma != 0.0),
        stp + r3 * (stx - stp),
        jnp.where(stp > stx, stmax, stmin),
    )
    near = jnp.where(jnp.abs(cubic3 - stp) < jnp.abs(secant - stp), cubic3, secant)
    limit = stp + _SHRINK * (sty - stp)
    near = jnp.where(stp > stx, jnp.minimum(limit, near), jnp.maximum(limit, near))
    far = jnp.where(jnp.abs(cubic3 - stp) > jnp.abs(secant - stp), cubic3, secant)
    step3 = jnp.where(brackt, near, jnp.clip(far, stmin, stmax))

    # case 4: lower value, same sign, slope not decreasing; cubic with sty, or a bound
    theta4, gamma4 = _cubic_terms(sty, fy, gy, stp, fp, gp)
    gamma4 = jnp.where(stp > sty, -gamma4, gamma4)
    cubic4 = stp + ((gamma4 - gp) + theta4) / (((gamma4 - gp) + gamma4) + gy) * (sty - stp)
    step4 = jnp.where(brackt, cubic4, jnp.where(stp > stx, stmax, stmin))

    case1 = fp > fx
    case2 = ~case1 & (same_sign < 0.0)
    case3 = ~case1 & ~case2 & (jnp.abs(gp) < jnp.abs(gx))
    step = jnp.where(case1, step1, jnp.where(case2, step2, jnp.where(case3, step3, step4)))

    # the new bracket: stp replaces sty on a higher value, else it becomes the best step
    # (and the old best becomes sty when the slopes changed sign)
    to_y = case1 | (same_sign < 0.0)
    new_y = (
        jnp.where(case1, stp, jnp.where(to_y, stx, sty)),
        jnp.where(case1, fp, jnp.where(to_y, fx, fy)),
        jnp.where(case1, gp, jnp.where(to_y, gx, gy)),
    )
    new_x = (
        jnp.where(case1, stx, stp),
        jnp.where(case1, fx, fp),
        jnp.where(case1, gx, gp),
    )
    return _Bracket(*new_x, *new_y, brackt | case1 | case2), step


class _Search(NamedTuple):
    stp: jax.Array  # next trial step
    count: jax.Array
    status: jax.Array
    stage2: jax.Array
    bracket: _Bracket
    width: jax.Array
    width1: jax.Array
    stmin: jax.Array
    stmax: jax.Array
    bad: jax.Array  # smallest step (from stx) with a non-finite trial
    out_stp: jax.Array
    out_value: jax.Array
    out_grad: Any


def scale_by_more_thuente_linesearch(
    max_linesearch_steps: int = 20,
    slope_rtol: float = 1e-3,
    curv_rtol: float = 0.9,
    xtol: float = 0.1,
    min_stepsize: float = 0.0,
    max_stepsize: float = 1e10,
) -> optax.GradientTransformationExtraArgs:
    """More-Thuente strong Wolfe line search, interchangeable with optax's zoom line search.

    The first trial is the step ``1`` (clipped to the step bounds) along ``updates``. The
    defaults are those of L-BFGS-B (MINPACK-2's ``dcsrch``). See the module docstring for the
    algorithm and ``MoreThuenteStatus`` for the stopping reasons.

    Args:
        max_linesearch_steps: evaluation budget of one search (>= 1).
        slope_rtol: sufficient-decrease constant, in ``(0, 1)``.
        curv_rtol: curvature constant, in ``(0, 1)``.
        xtol: relative bracket width below which the search stops (>= 0).
        min_stepsize: lower bound of the step (>= 0).
        max_stepsize: upper bound of the step (> ``min_stepsize``, at least 1).

    Returns:
        A ``GradientTransformationExtraArgs``; ``update(updates, state, params, *, value,
        grad, value_fn, **extra)`` returns ``learning_rate * updates``, extra keyword
        arguments go to ``value_fn``. The state (``ScaleByMoreThuenteState``) holds the value
        and gradient at the accepted point for ``optax.value_and_grad_from_state``.

    Raises:
        ValueError / TypeError: a parameter out of range.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> fun = lambda x: jnp.sum((x - 3.0) ** 2)
        >>> opt = optax.chain(optax.sgd(2.0), scale_by_more_thuente_linesearch())
        >>> params = jnp.zeros(2)
        >>> state = opt.init(params)
        >>> value, grad = jax.value_and_grad(fun)(params)
        >>> updates, state = opt.update(grad, state, params, value=value, grad=grad,
        ...                             value_fn=fun)
        >>> optax.apply_updates(params, updates).tolist(), int(state[1].info.num_linesearch_steps)
        ([3.0, 3.0], 2)
    """
    check_int_at_least(max_linesearch_steps, 1, "max_linesearch_steps")
    for name, value in (("slope_rtol", slope_rtol), ("curv_rtol", curv_rtol)):
        check_positive(value, name)
        if value >= 1.0:
            raise ValueError(f"{name} must be < 1, got {value!r}")
    check_positive(xtol, "xtol", allow_zero=True)
    check_positive(min_stepsize, "min_stepsize", allow_zero=True)
    check_positive(max_stepsize, "max_stepsize")
    if not min_stepsize < max_stepsize:
        raise ValueError(
            f"max_stepsize must exceed min_stepsize, got {max_stepsize!r} <= {min_stepsize!r}"
        )

    def init_fn(params: Any) -> ScaleByMoreThuenteState:
        dtype = jnp.real(jnp.empty((), jax.tree.leaves(params)[0].dtype)).dtype
        return ScaleByMoreThuenteState(
            learning_rate=jnp.ones((), dtype),
            value=jnp.full((), jnp.inf, dtype),
            grad=optax.tree.zeros_like(params),
            info=MoreThuenteInfo(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)),
        )

    def update_fn(
        updates: Any,
        state: ScaleByMoreThuenteState,
        params: Any,
        *,
        value: jax.Array,
        grad: Any,
        value_fn: Callable[..., jax.Array],
        **extra_args: Any,
    ) -> tuple[Any, ScaleByMoreThuenteState]:
        value_and_grad = jax.value_and_grad(lambda p: value_fn(p, **extra_args))
        finit = jnp.asarray(value)
        dtype = finit.dtype
        ginit = optax.tree.real(optax.tree.vdot(grad, updates)).astype(dtype)
        gtest = slope_rtol * ginit

        def along(stp: jax.Array) -> Any:
            return jax.tree.map(lambda u: stp.astype(u.dtype) * u, updates)

        def search_step(s: _Search) -> _Search:
            stp, b = s.stp, s.bracket
            f, g_tree = value_and_grad(optax.apply_updates(params, along(stp)))
            f = jnp.asarray(f, dtype)
            g = optax.tree.real(optax.tree.vdot(g_tree, updates)).astype(dtype)
            count = s.count + 1
            finite = jnp.isfinite(f) & jnp.isfinite(g)

            # tests at the trial (a later test overrides an earlier one, as in the paper)
            ftest = finit + stp * gtest
            stage2 = s.stage2 | ((f <= ftest) & (g >= 0.0))
            status = jnp.full((), _RUNNING, jnp.int32)
            checks = (
                (b.brackt & ((stp <= s.stmin) | (stp >= s.stmax)), MoreThuenteStatus.ROUNDING),
                (b.brackt & (s.stmax - s.stmin <= xtol * s.stmax), MoreThuenteStatus.XTOL),
                (
                    (stp == max_stepsize) & (f <= ftest) & (g <= gtest),
                    MoreThuenteStatus.MAX_STEPSIZE,
                ),
                (
                    (stp == min_stepsize) & ((f > ftest) | (g >= gtest)),
                    MoreThuenteStatus.MIN_STEPSIZE,
                ),
                ((f <= ftest) & (jnp.abs(g) <= -curv_rtol * ginit), MoreThuenteStatus.CONVERGED),
            )
            for hit, code in checks:
                status = jnp.where(hit, jnp.int32(code), status)
            status = jnp.where(finite, status, _RUNNING)

            # stage one, lower value but no sufficient decrease: interpolate psi, not phi
            shift = jnp.where(~stage2 & (f <= b.fx) & (f > ftest), gtest, 0.0)
            shifted = b._replace(
                fx=b.fx - b.stx * shift, gx=b.gx - shift, fy=b.fy - b.sty * shift, gy=b.gy - shift
            )
            nb, new = _safeguarded_step(shifted, stp, f - stp * shift, g - shift, s.stmin, s.stmax)
            nb = nb._replace(
                fx=nb.fx + nb.stx * shift,
                gx=nb.gx + shift,
                fy=nb.fy + nb.sty * shift,
                gy=nb.gy + shift,
            )
            # bisect when the bracket did not shrink enough over the last two trials
            span = jnp.abs(nb.sty - nb.stx)
            new = jnp.where(
                nb.brackt & (span >= _SHRINK * s.width1), nb.stx + 0.5 * (nb.sty - nb.stx), new
            )
            width1 = jnp.where(nb.brackt, s.width, s.width1)
            width = jnp.where(nb.brackt, span, s.width)
            stmin = jnp.where(
                nb.brackt, jnp.minimum(nb.stx, nb.sty), new + _EXTRAPOLATE_MIN * (new - nb.stx)
            )
            stmax = jnp.where(
                nb.brackt, jnp.maximum(nb.stx, nb.sty), new + _EXTRAPOLATE_MAX * (new - nb.stx)
            )
            new = jnp.clip(new, min_stepsize, max_stepsize)
            stuck = nb.brackt & ((new <= stmin) | (new >= stmax) | (stmax - stmin <= xtol * stmax))
            new = jnp.where(stuck, nb.stx, new)

            # a non-finite trial: keep everything, go halfway back to the best step
            bad = jnp.where(finite, s.bad, stp)
            back = jnp.clip(b.stx + 0.5 * (stp - b.stx), min_stepsize, max_stepsize)
            offset, bad_offset = new - nb.stx, bad - nb.stx
            too_far = (offset * bad_offset > 0.0) & (jnp.abs(offset) >= jnp.abs(bad_offset))
            new = jnp.where(too_far, nb.stx + 0.5 * bad_offset, new)

            take = (status == MoreThuenteStatus.CONVERGED) | (finite & (f < s.out_value))
            status = jnp.where(
                (status == _RUNNING) & (count >= max_linesearch_steps),
                jnp.int32(MoreThuenteStatus.MAX_STEPS),
                status,
            )
            return _Search(
                stp=jnp.where(finite, new, back),
                count=count,
                status=status,
                stage2=tree_where(finite, stage2, s.stage2),
                bracket=tree_where(finite, nb, b),
                width=tree_where(finite, width, s.width),
                width1=tree_where(finite, width1, s.width1),
                stmin=tree_where(finite, stmin, s.stmin),
                stmax=tree_where(finite, stmax, s.stmax),
                bad=bad,
                out_stp=jnp.where(take, stp, s.out_stp),
                out_value=jnp.where(take, f, s.out_value),
                out_grad=tree_where(take, g_tree, s.out_grad),
            )

        zero = jnp.zeros((), dtype)
        stp0 = jnp.clip(jnp.ones((), dtype), min_stepsize, max_stepsize)
        width = jnp.asarray(max_stepsize - min_stepsize, dtype)
        valid = (ginit < 0.0) & jnp.isfinite(finit) & jnp.isfinite(ginit)
        start = _Search(
            stp=stp0,
            count=jnp.zeros((), jnp.int32),
            status=jnp.where(valid, _RUNNING, jnp.int32(MoreThuenteStatus.NOT_DESCENT)),
            stage2=jnp.zeros((), bool),
            bracket=_Bracket(zero, finit, ginit, zero, finit, ginit, jnp.zeros((), bool)),
            width=width,
            width1=2.0 * width,
            stmin=zero,
            stmax=stp0 + _EXTRAPOLATE_MAX * stp0,
            bad=jnp.full((), jnp.inf, dtype),
            out_stp=zero,
            out_value=finit,
            out_grad=grad,
        )
        end = lax.while_loop(lambda s: s.status == _RUNNING, search_step, start)
        new_state = ScaleByMoreThuenteState(
            learning_rate=end.out_stp,
            value=end.out_value,
            grad=end.out_grad,
            info=MoreThuenteInfo(end.count, end.status),
        )
        return along(end.out_stp), optax.tree.cast_like(new_state, other_tree=state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
