"""Control barrier function (CBF) safety filters: the smallest change that keeps a system safe.

A barrier ``h(x)`` marks the safe set ``h(x) >= 0``. For a control-affine model
``dx/dt = f(x) + g(x) u`` the set stays invariant when every control satisfies
``psi(x, u) = Lf h(x) + Lg h(x) u + alpha(h(x)) >= 0`` with ``Lf h = grad h . f``,
``Lg h = grad h' g`` and ``alpha`` a class-K function (default linear, ``alpha * h``).
``SafetyFilter.filter`` returns the control closest to a nominal one that satisfies the
condition of every barrier and the control bounds (the QP of ``filter_qp``: exact for one
barrier or one control, a dual active-set method otherwise), and flags a
state where no such control exists (``feasible=False``, with a best-effort control) instead of
returning an unsafe control silently.

**Sample and hold.** The condition above guarantees safety for a control that follows the
state continuously. A digital controller holds ``u`` for a period ``T``, and ``psi`` drifts
during it. With ``period=T`` and a bound ``M >= -d^2 psi / dt^2`` over one period
(``intersample_bound``), the filter also imposes the end-of-period condition
``psi(x, u) + T dpsi/dt(x, u) >= M T^2 / 2`` (``dpsi/dt`` along ``f + g u``, by forward-mode
differentiation). By Taylor's theorem ``psi(t_k + s) >= psi + s dpsi/dt - M s^2 / 2``, a concave
bound that is smallest at ``s = 0`` or ``s = T``, so both conditions give ``psi >= 0`` over the
whole period, hence ``dh/dt >= -alpha(h)`` and ``h >= 0`` between samples too. ``dpsi/dt`` is
quadratic in ``u`` when ``Lg h`` varies along ``g``; its quadratic part is bounded over the
control box (zero for mechanical systems whose ``Lg h`` depends on positions only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.control._barriers import ControlBarrier
from opifex.control._dynamics import Dynamics
from opifex.control._qp import filter_qp
from opifex.core import check_int_at_least, check_positive

Array = jax.Array


class SafetyFilterResult(NamedTuple):
    """What ``SafetyFilter.filter`` returns (arrays; one batch axis under ``vmap``).

    The QP has one row per barrier (``psi_i(x, u) >= 0``) and, with a ``period``, a second
    block of ``num_barriers`` rows (the end-of-period conditions), in that order.

    Attributes:
        control: the filtered control, ``(control_dim,)``; the best effort when infeasible.
        feasible: ``control`` satisfies every row and bound within the filter's tolerance
            (false when none can, and for non-finite input).
        converged: the QP was solved to its tolerance (``control`` is the optimum).
        barrier: ``h_i(x)``, ``(num_barriers,)``.
        constraint: each row's slack at ``control``, ``>= 0`` where it holds, ``(rows,)``.
        multipliers: the rows' multipliers, ``> 0`` where a row modified the control.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import double_integrator
        >>> wall = ControlBarrier(lambda x, p: 1.0 - x[0])
        >>> result = SafetyFilter(double_integrator(), [wall]).filter(jnp.zeros(2), jnp.ones(1))
        >>> sorted(result._fields)[:3]
        ['barrier', 'constraint', 'control']
    """

    control: Array
    feasible: Array
    converged: Array
    barrier: Array
    constraint: Array
    multipliers: Array


def _as_barrier(barrier: Any, index: int) -> ControlBarrier:
    if isinstance(barrier, ControlBarrier):
        return barrier
    if not callable(barrier):
        raise TypeError(
            f"barriers[{index}] must be a ControlBarrier or a callable h(x), "
            f"got {type(barrier).__name__}"
        )
    return ControlBarrier(lambda x, _, h=barrier: h(x), None, getattr(barrier, "__name__", "h"))


def _floats(value: Any, size: int, name: str, *, positive: bool = False) -> tuple[float, ...]:
    values = np.broadcast_to(np.asarray(value, float), (size,)) if np.ndim(value) == 0 else value
    values = tuple(float(v) for v in values)
    if len(values) != size:
        raise ValueError(f"{name} must have {size} entries, got {len(values)}")
    for v in values:
        if positive:
            check_positive(v, name)
        elif np.isnan(v):
            raise ValueError(f"{name} contains NaN")
    return values


def _bounds(value: Any, size: int) -> tuple[float | Callable, ...]:
    """``intersample_bound`` as one float >= 0 or callable per barrier."""
    if callable(value) or np.ndim(value) == 0:
        value = (value,) * size
    if isinstance(value, str | bytes) or len(value) != size:
        raise ValueError(f"intersample_bound must have {size} entries")
    out = []
    for v in value:
        if not callable(v):
            check_positive(v, "intersample_bound", allow_zero=True)
            v = float(v)
        out.append(v)
    return tuple(out)


@dataclasses.dataclass(frozen=True, eq=False)
class SafetyFilter:
    """A CBF-QP safety filter for ``dynamics`` (a frozen config; ``filter`` is pure).

    ``filter(x, u_nom)`` minimises ``sum_j w_j (u_j - u_nom_j)^2`` subject to
    ``Lf h_i(x) + Lg h_i(x) u >= -alpha_i(h_i(x))`` for every barrier (and, with a ``period``,
    the end-of-period conditions of the module docstring) and
    ``control_lower <= u <= control_upper``. The model must be control-affine in ``u``.

    Attributes:
        dynamics: the model (its ``control_affine`` gives ``f`` and ``g``).
        barriers: ``ControlBarrier`` objects or callables ``h(x)`` (a list is stored as a tuple).
        alpha: the class-K function: a positive gain (``alpha * h``), one gain per barrier, or a
            callable ``alpha(h) -> array`` on the vector of barrier values (e.g.
            ``lambda h: h**3``), which must be a class-K function elementwise.
        control_weight: the positive diagonal ``w`` of the objective (one float, or one per
            control component); ``None``: ones.
        control_lower: lower control bounds; ``None``: the model's (``-inf`` where it has none).
        control_upper: upper control bounds; ``None``: the model's.
        period: the sample-and-hold period ``T`` of the controller (> 0); ``None``: the
            continuous-time condition only.
        intersample_bound: with a ``period``: ``M_i >= -d^2 psi_i / dt^2`` over one period,
            one float ``>= 0`` for all barriers, or one float or callable
            ``bound(x, barrier_params_i) -> ()`` per barrier (e.g. ``circular_obstacle_bound``).
        max_steps: the QP's active-set steps (see ``filter_qp``).
        rtol: tolerance of the feasibility and optimality checks; ``None``: ``sqrt(eps)``.

    Raises:
        TypeError: a barrier or ``dynamics`` of the wrong type, ``alpha`` neither a number,
            numbers nor callable.
        ValueError: no barriers, a non-positive ``alpha``, weight or ``period``, bounds of the
            wrong length or crossing, ``period`` without ``intersample_bound`` or the
            reverse, a negative bound, ``max_steps < 1``, ``rtol <= 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import adaptive_cruise_control
        >>> acc = adaptive_cruise_control()
        >>> headway = ControlBarrier(lambda x, p: x[1] - 1.8 * x[0])   # gap >= 1.8 s * speed
        >>> safety = SafetyFilter(acc, [headway], alpha=1.0)
        >>> x = jnp.array([20.0, 40.0, 13.89])          # 20 m/s, 40 m behind a slower car
        >>> result = safety.filter(x, jnp.array([3000.0]))   # the driver accelerates
        >>> round(float(result.control[0])), bool(result.feasible)   # the filter brakes
        (-1734, True)
    """

    dynamics: Dynamics
    barriers: Sequence[ControlBarrier | Callable[[Array], Array]]
    alpha: float | Sequence[float] | Callable[[Array], Array] = 1.0
    control_weight: float | Sequence[float] | None = None
    control_lower: Sequence[float] | None = None
    control_upper: Sequence[float] | None = None
    period: float | None = None
    intersample_bound: float | Sequence[float | Callable[[Array, Any], Array]] | None = None
    max_steps: int = 100
    rtol: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dynamics, Dynamics):
            raise TypeError(f"dynamics must be a Dynamics, got {type(self.dynamics).__name__}")
        if callable(self.barriers) or isinstance(self.barriers, ControlBarrier):
            raise TypeError("barriers must be a sequence of barriers; wrap a single one in [h]")
        barriers = tuple(_as_barrier(b, i) for i, b in enumerate(self.barriers))
        if not barriers:
            raise ValueError("barriers is empty: expected at least one barrier")
        object.__setattr__(self, "barriers", barriers)
        if not callable(self.alpha):
            if isinstance(self.alpha, str | bytes):
                raise TypeError(
                    f"alpha must be a number, numbers or a callable, got {self.alpha!r}"
                )
            object.__setattr__(
                self, "alpha", _floats(self.alpha, len(barriers), "alpha", positive=True)
            )
        m = self.dynamics.control_dim
        check_int_at_least(m, 1, "dynamics.control_dim")
        if self.control_weight is not None:
            weight = _floats(self.control_weight, m, "control_weight", positive=True)
            object.__setattr__(self, "control_weight", weight)
        lower = self.dynamics.control_lower or (-np.inf,) * m
        upper = self.dynamics.control_upper or (np.inf,) * m
        lower = _floats(
            lower if self.control_lower is None else self.control_lower, m, "control_lower"
        )
        upper = _floats(
            upper if self.control_upper is None else self.control_upper, m, "control_upper"
        )
        if any(lo > hi for lo, hi in zip(lower, upper, strict=True)):
            raise ValueError(f"control_lower {lower} exceeds control_upper {upper}")
        object.__setattr__(self, "control_lower", lower)
        object.__setattr__(self, "control_upper", upper)
        if (self.period is None) != (self.intersample_bound is None):
            raise ValueError(
                "period and intersample_bound go together: give both (sample and hold) or neither"
            )
        if self.period is not None:
            check_positive(self.period, "period")
            bounds = _bounds(self.intersample_bound, len(barriers))
            object.__setattr__(self, "intersample_bound", bounds)
        check_int_at_least(self.max_steps, 1, "max_steps")
        if self.rtol is not None:
            check_positive(self.rtol, "rtol")

    @property
    def default_barrier_params(self) -> tuple[Any, ...]:
        """The barriers' default parameters, one entry per barrier."""
        return tuple(b.params for b in self.barriers)

    def _class_k(self, h: Array) -> Array:
        if callable(self.alpha):
            value = jnp.asarray(self.alpha(h))
            if value.shape != h.shape:
                raise ValueError(f"alpha(h) must have shape {h.shape}, got {value.shape}")
            return value
        return jnp.asarray(self.alpha, h.dtype) * h

    def _checked(self, x: Any, barrier_params: Any) -> tuple[Array, tuple]:
        x = jnp.asarray(x)
        if x.shape != (self.dynamics.state_dim,):
            raise ValueError(f"x must have shape ({self.dynamics.state_dim},), got {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        barrier_params = self.default_barrier_params if barrier_params is None else barrier_params
        if not isinstance(barrier_params, tuple | list) or len(barrier_params) != len(
            self.barriers
        ):
            raise ValueError(
                f"barrier_params must be a tuple with one entry per barrier ({len(self.barriers)})"
            )
        for barrier, p in zip(self.barriers, barrier_params, strict=True):
            shape = jax.eval_shape(barrier, x, p).shape
            if shape != ():
                name = barrier.name
                raise ValueError(f"barrier {name!r} must return a scalar, got shape {shape}")
        return x, tuple(barrier_params)

    def _values_and_gradients(self, x: Array, barrier_params: tuple) -> tuple[Array, Array]:
        pairs = [
            jax.value_and_grad(b)(x, p) for b, p in zip(self.barriers, barrier_params, strict=True)
        ]
        return jnp.stack([v for v, _ in pairs]), jnp.stack([g for _, g in pairs])

    def conditions(
        self, x: Array, t: Any = 0.0, params: Any = None, barrier_params: Any = None
    ) -> tuple[Array, Array, Array]:
        """``(h, Lf h, Lg h)`` at ``x``: shapes ``(p,)``, ``(p,)``, ``(p, control_dim)``.

        Example:
            >>> import jax.numpy as jnp
            >>> from opifex.control import double_integrator
            >>> wall = ControlBarrier(lambda x, p: 1.0 - x[0] - x[1])
            >>> h, lf, lg = SafetyFilter(double_integrator(), [wall]).conditions(jnp.ones(2))
            >>> h.tolist(), lf.tolist(), lg.tolist()
            ([-1.0], [-1.0], [[-1.0]])
        """
        x, barrier_params = self._checked(x, barrier_params)
        drift, gain = self.dynamics.control_affine(x, t, params)
        h, grad_h = self._values_and_gradients(x, barrier_params)
        return h, grad_h @ drift, grad_h @ gain

    def _end_rows(
        self, x: Array, t: Any, params: Any, barrier_params: tuple, dtype: Any
    ) -> tuple[Array, Array, Array]:
        """``dpsi/dt = c + l u + u' H u / 2`` along ``f + g u`` with ``u`` held: ``(c, l, H)``."""
        t = jnp.asarray(t, dtype)

        def psi(y: Array, s: Array, u: Array) -> Array:
            h, grad_h = self._values_and_gradients(y, barrier_params)
            return grad_h @ self.dynamics(y, u, s, params) + self._class_k(h)

        def rate(u: Array) -> Array:
            tangents = (self.dynamics(x, u, t, params), jnp.ones_like(t))
            return jax.jvp(lambda y, s: psi(y, s, u), (x, t), tangents)[1]

        u0 = jnp.zeros((self.dynamics.control_dim,), dtype)
        return rate(u0), jax.jacfwd(rate)(u0), jax.jacfwd(jax.jacfwd(rate))(u0)

    def rows(
        self, x: Array, t: Any = 0.0, params: Any = None, barrier_params: Any = None
    ) -> tuple[Array, Array, Array]:
        """The QP's half-spaces ``normals @ u >= offsets`` at ``x``, and ``h``.

        One row per barrier (``Lg h u >= -Lf h - alpha(h)``) and, with a ``period``, one
        end-of-period row per barrier after them (see the module docstring).

        Returns:
            ``(h, normals, offsets)`` of shapes ``(p,)``, ``(rows, control_dim)``, ``(rows,)``.

        Example:
            >>> import jax.numpy as jnp
            >>> from opifex.control import double_integrator
            >>> limit = ControlBarrier(lambda x, p: 1.0 - x[1])   # velocity <= 1
            >>> safety = SafetyFilter(double_integrator(), [limit], period=0.5,
            ...                       intersample_bound=0.0)
            >>> h, normals, offsets = safety.rows(jnp.array([0.0, 0.5]))
            >>> normals.tolist(), offsets.tolist()   # -u >= -0.5; -(1 + 0.5) u >= -0.5
            ([[-1.0], [-1.5]], [-0.5, -0.5])
        """
        x, barrier_params = self._checked(x, barrier_params)
        h, lf, lg = self.conditions(x, t, params, barrier_params)
        dtype = h.dtype
        value = lf + self._class_k(h)  # psi = value + lg u
        if self.period is None:
            return h, lg, -value
        lower = jnp.asarray(self.control_lower, dtype)
        upper = jnp.asarray(self.control_upper, dtype)
        rate, slope, hess = self._end_rows(x, t, params, barrier_params, dtype)
        reach = jnp.maximum(jnp.abs(lower), jnp.abs(upper))
        spread = jnp.abs(hess) * reach[:, None] * reach[None, :]
        curvature = 0.5 * jnp.sum(jnp.where(hess == 0, 0.0, spread), axis=(1, 2))
        bound = jnp.stack(
            [
                jnp.asarray(b(x, p) if callable(b) else b, dtype)
                for b, p in zip(self.intersample_bound, barrier_params, strict=True)
            ]
        )
        period = self.period
        end_offsets = 0.5 * bound * period**2 - value - period * (rate - curvature)
        return h, jnp.concatenate([lg, lg + period * slope]), jnp.concatenate([-value, end_offsets])

    def filter(
        self,
        x: Array,
        u_nom: Array,
        t: Any = 0.0,
        params: Any = None,
        barrier_params: Any = None,
    ) -> SafetyFilterResult:
        """The control closest to ``u_nom`` that satisfies every barrier condition and bound.

        Pure and jit-, vmap- and grad-compatible (derivatives in ``x``, ``u_nom``, ``params``
        and ``barrier_params`` through the QP's solution by implicit differentiation). A
        non-finite input gives ``feasible=False``, in and out of ``jit``.

        Args:
            x: the state, ``(state_dim,)``.
            u_nom: the nominal control, ``(control_dim,)``.
            t: the time passed to the model.
            params: the model's parameters (``None``: its defaults).
            barrier_params: one entry per barrier (``None``: their defaults).

        Returns:
            A ``SafetyFilterResult``.

        Raises:
            ValueError: ``x`` or ``u_nom`` of the wrong shape, ``barrier_params`` of the wrong
                length, a barrier that does not return a scalar.

        Example:
            >>> import jax.numpy as jnp
            >>> from opifex.control import double_integrator
            >>> limit = ControlBarrier(lambda x, p: 1.0 - x[1])   # velocity <= 1
            >>> safety = SafetyFilter(double_integrator(), [limit])
            >>> safety.filter(jnp.array([0.0, 0.5]), jnp.array([2.0])).control.tolist()
            [0.5]
        """
        u_nom = jnp.asarray(u_nom)
        if u_nom.shape != (self.dynamics.control_dim,):
            raise ValueError(
                f"u_nom must have shape ({self.dynamics.control_dim},), got {u_nom.shape}"
            )
        h, normals, offsets = self.rows(x, t, params, barrier_params)
        dtype = jnp.result_type(h, u_nom)
        solution = filter_qp(
            u_nom.astype(dtype),
            normals.astype(dtype),
            offsets.astype(dtype),
            jnp.asarray(self.control_lower, dtype),
            jnp.asarray(self.control_upper, dtype),
            None if self.control_weight is None else jnp.asarray(self.control_weight, dtype),
            max_steps=self.max_steps,
            rtol=self.rtol,
        )
        return SafetyFilterResult(
            solution.control,
            solution.feasible,
            solution.converged,
            h,
            solution.residual,
            solution.multipliers,
        )

    __call__ = filter
