"""Sparse identification of nonlinear dynamics (SINDy, Brunton, Proctor & Kutz 2016).

``dx/dt ~ Theta(x, u) Xi``: a library ``Theta`` of candidate functions (monomials up to a
degree, optionally ``sin`` / ``cos`` of each input) evaluated on sampled states (and controls),
derivatives estimated from the samples, and a sparse ``Xi`` found by sequentially thresholded
least squares (STLSQ): fit, zero every coefficient below ``threshold``, refit on the remaining
terms, until the support no longer changes.

Derivatives (``differentiate``):

* ``"central"``: central finite differences of even ``order`` (error ``O(dt**order)``); at the
  ends, one-sided stencils of the same order and width. On smooth, noise-free data a high order
  (the default 6) makes the derivative error negligible beside the regression's.
* ``"savgol"``: Savitzky-Golay (1964): the derivative of a least-squares polynomial of degree
  ``polyorder`` over a window of ``window`` samples around each point (at the ends, of the
  first or last window), for noisy data; the library is then evaluated on the equally
  smoothed states.

Both are linear stencils computed here (``numpy`` for the weights, ``jax.numpy`` to apply them).
STLSQ runs on ``opifex.core.run_solver`` (one iteration per refit; ``SUCCESS`` once the support
is stable), on column-normalised features for conditioning; ``threshold`` applies to the
coefficients in the data's units, and ``ridge`` adds ``ridge * ||xi||^2`` on the normalised
problem (scale-free).

Reference: Brunton, S. L., Proctor, J. L. & Kutz, J. N. (2016), "Discovering governing
equations from data by sparse identification of nonlinear dynamical systems", PNAS 113(15),
3932-3937.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from opifex.control._dynamics import Dynamics
from opifex.core import (
    SolveResult,
    SolveStatus,
    check_choice,
    check_finite,
    check_int_at_least,
    check_positive,
    run_solver,
)

Array = jax.Array
DERIVATIVES = ("central", "savgol")


# ----------------------------------------------------------------------------- derivatives


def _stencil(offsets: np.ndarray, degree: int, at: float, deriv: int) -> np.ndarray:
    """Weights ``w``: ``sum_j w_j f(offsets_j)`` is ``p^(deriv)(at)``.

    ``p`` is the least-squares polynomial of ``degree`` through the samples (it interpolates
    when ``degree = len(offsets) - 1``: a finite-difference stencil).
    """
    # in the variable s = (offset - centre) / radius on [-1, 1]: a well-conditioned Vandermonde
    centre = float(np.mean(offsets))
    radius = max(float(np.max(np.abs(offsets - centre))), 1.0)
    s = (offsets.astype(np.float64) - centre) / radius
    s_at = (float(at) - centre) / radius
    powers = np.arange(degree + 1)
    vandermonde = s[:, None] ** powers[None, :]
    fall = np.array([math.perm(int(k), deriv) for k in powers], dtype=np.float64)
    row = fall * np.where(powers >= deriv, s_at ** np.maximum(powers - deriv, 0), 0.0)
    return row @ np.linalg.pinv(vandermonde) / radius**deriv


def _apply(x: Array, half: int, degree: int, deriv: int, scale: float) -> Array:
    """Apply the (2 half + 1)-point stencils along axis 0 (one-sided windows at the ends)."""
    n = x.shape[0]
    width = 2 * half + 1
    if n < width:
        raise ValueError(f"need at least {width} samples along the time axis, got {n}")
    offsets = np.arange(-half, half + 1)
    centre = _stencil(offsets, degree, 0.0, deriv)
    interior = sum(w * x[half + s : n - half + s] for w, s in zip(centre, offsets, strict=True))
    window = np.arange(width)
    left = np.stack([_stencil(window, degree, i, deriv) for i in range(half)]) if half else None
    right = (
        np.stack([_stencil(window, degree, width - half + i, deriv) for i in range(half)])
        if half
        else None
    )
    if half == 0:
        return interior * scale
    dtype = x.dtype
    head = jnp.tensordot(jnp.asarray(left, dtype), x[:width], axes=1)
    tail = jnp.tensordot(jnp.asarray(right, dtype), x[n - width :], axes=1)
    return jnp.concatenate([head, interior, tail]) * scale


def differentiate(
    x: Any,
    dt: float,
    *,
    method: str = "central",
    order: int = 6,
    window: int = 11,
    polyorder: int = 3,
) -> Array:
    """``dx/dt`` of samples ``x`` (shape ``(N, ...)``, time along axis 0) taken every ``dt``.

    Args:
        x: the samples.
        dt: the sampling period (> 0).
        method: ``"central"`` (finite differences) or ``"savgol"`` (Savitzky-Golay).
        order: ``"central"``: the even order of accuracy (2, 4, 6, 8 ...); uses ``order + 1``
            points, one-sided ones at the ends.
        window: ``"savgol"``: the odd window length (> ``polyorder``).
        polyorder: ``"savgol"``: the degree of the local polynomial (>= 1).

    Returns:
        An array shaped like ``x``.

    Raises:
        ValueError: bad options, fewer samples than the stencil needs.

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 1.0, 101)
        >>> err = differentiate(jnp.sin(t), 0.01, order=4) - jnp.cos(t)
        >>> float(jnp.max(jnp.abs(err))) < 1e-4   # float32 rounding; 1e-11 in float64
        True
    """
    check_choice(method, DERIVATIVES, "method")
    check_positive(dt, "dt")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if method == "central":
        check_int_at_least(order, 2, "order")
        if order % 2:
            raise ValueError(f"order must be even for central differences, got {order}")
        return _apply(x, order // 2, order, 1, 1.0 / dt)
    half, degree = _check_savgol(window, polyorder)
    return _apply(x, half, degree, 1, 1.0 / dt)


def smooth(x: Any, *, window: int = 11, polyorder: int = 3) -> Array:
    """Savitzky-Golay smoothing of samples ``x`` along axis 0 (the ``"savgol"`` states).

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 1.0, 50)
        >>> bool(jnp.allclose(smooth(t**3), t**3, atol=1e-5))   # exact for cubics
        True
    """
    half, degree = _check_savgol(window, polyorder)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return _apply(x, half, degree, 0, 1.0)


def _check_savgol(window: int, polyorder: int) -> tuple[int, int]:
    check_int_at_least(window, 3, "window")
    check_int_at_least(polyorder, 1, "polyorder")
    if window % 2 == 0:
        raise ValueError(f"window must be odd, got {window}")
    if polyorder >= window:
        raise ValueError(f"polyorder must be below window ({window}), got {polyorder}")
    return window // 2, polyorder


# ----------------------------------------------------------------------------- library


@dataclasses.dataclass(frozen=True)
class FeatureLibrary:
    """Candidate functions of the inputs ``z = (x, u)``: monomials and optional sin / cos.

    Attributes:
        degree: the highest total degree of the monomials (>= 1).
        trig: also ``sin(z_i)`` and ``cos(z_i)`` for each input.
        include_bias: include the constant ``1``.

    Example:
        >>> import jax.numpy as jnp
        >>> library = FeatureLibrary(degree=2)
        >>> library.names(("x", "y"))
        ('1', 'x', 'y', 'x^2', 'x y', 'y^2')
        >>> library(jnp.array([[2.0, 3.0]])).tolist()
        [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    """

    degree: int = 2
    trig: bool = False
    include_bias: bool = True

    def __post_init__(self) -> None:
        check_int_at_least(self.degree, 1, "degree")

    def _monomials(self, num_inputs: int) -> list[tuple[int, ...]]:
        first = 0 if self.include_bias else 1
        return [
            combo
            for d in range(first, self.degree + 1)
            for combo in itertools.combinations_with_replacement(range(num_inputs), d)
        ]

    def names(self, input_names: tuple[str, ...]) -> tuple[str, ...]:
        """Readable feature names: ``"1"``, ``"x0"``, ``"x0 x1"``, ``"x0^2"``, ``"sin(x0)"``."""
        out = []
        for combo in self._monomials(len(input_names)):
            if not combo:
                out.append("1")
                continue
            parts = []
            for index, group in itertools.groupby(combo):
                power = len(list(group))
                name = input_names[index]
                parts.append(name if power == 1 else f"{name}^{power}")
            out.append(" ".join(parts))
        if self.trig:
            out += [f"{f}({name})" for name in input_names for f in ("sin", "cos")]
        return tuple(out)

    def __call__(self, z: Array) -> Array:
        """``Theta(z)``: shape ``(N, F)`` for inputs ``(N, d)`` (or ``(F,)`` for ``(d,)``)."""
        z = jnp.asarray(z)
        single = z.ndim == 1
        z = z[None] if single else z
        columns = [
            jnp.prod(z[:, list(combo)], axis=1) if combo else jnp.ones(z.shape[0], z.dtype)
            for combo in self._monomials(z.shape[1])
        ]
        if self.trig:
            for i in range(z.shape[1]):
                columns += [jnp.sin(z[:, i]), jnp.cos(z[:, i])]
        theta = jnp.stack(columns, axis=1)
        return theta[0] if single else theta


# ----------------------------------------------------------------------------- STLSQ


class STLSQState(NamedTuple):
    """State of the STLSQ iteration (arrays only).

    Attributes:
        params: coefficients ``(F, n)`` in the data's units (zero off the support).
        value: ``0.5 * mean((Theta Xi - dX)**2)``.
        grad_norm: the norm of the least-squares gradient on the support (zero at a refit).
        num_steps: refits after the first fit.
        support: ``(F, n)`` booleans.
        changed: whether the last step shrank the support.
    """

    params: Array
    value: Array
    grad_norm: Array
    num_steps: Array
    support: Array
    changed: Array


@dataclasses.dataclass(frozen=True)
class STLSQ:
    """Sequentially thresholded least squares as an ``opifex.core.run_solver`` solver.

    ``init(params, theta, targets)`` fits all features (``params`` is only a shape template),
    ``step`` thresholds and refits on the support; ``terminate`` once the support is stable.

    Attributes:
        threshold: coefficients with ``|xi| < threshold`` are dropped (>= 0).
        ridge: ridge penalty on the column-normalised problem (>= 0).

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import run_solver
        >>> theta = jnp.stack([jnp.ones(5), jnp.arange(5.0), jnp.arange(5.0) ** 2], axis=1)
        >>> targets = (2.0 * jnp.arange(5.0) + 1e-3 * jnp.arange(5.0) ** 2)[:, None]
        >>> result = run_solver(STLSQ(0.01), jnp.zeros((3, 1)), theta, targets, max_steps=4)
        >>> result.status_name, [round(float(v), 4) for v in result.params[:, 0]]
        ('SUCCESS', [0.0, 2.0033, 0.0])
    """

    threshold: float
    ridge: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self.threshold, "threshold", allow_zero=True)
        check_positive(self.ridge, "ridge", allow_zero=True)

    def _fit(self, theta: Array, targets: Array, support: Array) -> Array:
        norms = jnp.sqrt(jnp.mean(theta * theta, axis=0))
        norms = jnp.where(norms > 0, norms, 1.0)
        scaled = theta / norms
        rows = jnp.sqrt(jnp.asarray(self.ridge * theta.shape[0], theta.dtype)) * jnp.eye(
            theta.shape[1], dtype=theta.dtype
        )

        def one(mask: Array, target: Array) -> Array:
            a = jnp.concatenate([scaled * mask, rows * mask], axis=0)
            b = jnp.concatenate([target, jnp.zeros(theta.shape[1], theta.dtype)])
            return jnp.linalg.lstsq(a, b)[0] * mask

        xi = jax.vmap(one, in_axes=(1, 1), out_axes=1)(support.astype(theta.dtype), targets)
        return xi / norms[:, None]

    def _state(self, theta, targets, xi, support, num_steps, changed) -> STLSQState:
        error = theta @ xi - targets
        gradient = jnp.where(support, theta.T @ error, 0.0) / theta.shape[0]
        return STLSQState(
            params=xi,
            value=0.5 * jnp.mean(error * error),
            grad_norm=jnp.linalg.norm(gradient),
            num_steps=num_steps,
            support=support,
            changed=changed,
        )

    def init(self, params: Array, theta: Array, targets: Array) -> STLSQState:
        """The least-squares fit on every feature."""
        support = jnp.ones(params.shape, bool)
        xi = self._fit(theta, targets, support)
        return self._state(
            theta, targets, xi, support, jnp.zeros((), jnp.int32), jnp.ones((), bool)
        )

    def step(self, state: STLSQState, theta: Array, targets: Array) -> STLSQState:
        """Drop coefficients below the threshold; refit on the rest."""
        support = state.support & (jnp.abs(state.params) >= self.threshold)
        xi = self._fit(theta, targets, support)
        changed = jnp.any(support != state.support)
        return self._state(theta, targets, xi, support, state.num_steps + 1, changed)

    def terminate(self, state: STLSQState, theta: Array, targets: Array) -> tuple[Array, Array]:
        """Done (``SUCCESS``) once a step leaves the support unchanged."""
        return ~state.changed, jnp.asarray(SolveStatus.SUCCESS, jnp.int32)

    def aux(self, state: STLSQState, theta: Array, targets: Array) -> Array:
        """The support (``SolveResult.aux``)."""
        return state.support


@functools.partial(jax.jit, static_argnames=("solver", "trace_length"))
def _run_stlsq(solver: STLSQ, trace_length: int, theta: Array, targets: Array) -> SolveResult:
    template = jnp.zeros((theta.shape[1], targets.shape[1]), theta.dtype)
    return run_solver(solver, template, theta, targets, max_steps=trace_length)


def stlsq(theta: Any, targets: Any, threshold: float, *, ridge: float = 0.0) -> SolveResult:
    """Sparse ``Xi`` with ``theta @ Xi ~ targets`` by sequentially thresholded least squares.

    Args:
        theta: the library evaluated on the samples, ``(N, F)``.
        targets: the derivatives, ``(N, n)``.
        threshold: drop coefficients with ``|xi| < threshold`` (>= 0).
        ridge: ridge penalty on the column-normalised problem (>= 0).

    Returns:
        A ``SolveResult``: ``params`` the coefficients ``(F, n)``, ``aux`` the support;
        ``SUCCESS`` once the support is stable (at most ``F + 1`` refits).

    Example:
        >>> import jax.numpy as jnp
        >>> theta = jnp.stack([jnp.ones(5), jnp.arange(5.0)], axis=1)
        >>> result = stlsq(theta, (3.0 * jnp.arange(5.0))[:, None], 0.1)
        >>> [round(float(v), 4) for v in result.params[:, 0]], result.aux[:, 0].tolist()
        ([0.0, 3.0], [False, True])
    """
    theta, targets = jnp.asarray(theta), jnp.asarray(targets)
    if theta.ndim != 2 or targets.ndim != 2 or theta.shape[0] != targets.shape[0]:
        raise ValueError(
            f"theta must be (N, F) and targets (N, n) with the same N, got {theta.shape} and"
            f" {targets.shape}"
        )
    check_finite(theta, "theta")
    check_finite(targets, "targets")
    targets = targets.astype(theta.dtype)
    return _run_stlsq(STLSQ(float(threshold), float(ridge)), theta.shape[1] + 1, theta, targets)


# ----------------------------------------------------------------------------- the model


def _term(value: float, name: str, precision: int, first: bool) -> str:
    magnitude = f"{abs(value):.{precision}f}"
    body = magnitude if name == "1" else f"{magnitude} {name}"
    if first:
        return f"-{body}" if value < 0 else body
    return f" - {body}" if value < 0 else f" + {body}"


@dataclasses.dataclass(frozen=True, eq=False)
class SINDyModel:
    """A fitted sparse model ``dx/dt = Theta(x, u) @ coefficients``.

    Attributes:
        coefficients: ``(F, n)``, zero off the support.
        library: the ``FeatureLibrary``.
        state_names: one name per state.
        control_names: one name per control (empty without controls).
        solve: the STLSQ ``SolveResult``.

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 2.0, 201)
        >>> model = fit_sindy(jnp.exp(-0.5 * t)[:, None], 0.01, degree=2, threshold=0.01)
        >>> model.equations()
        ['dx0/dt = -0.500 x0']
    """

    coefficients: Array
    library: FeatureLibrary
    state_names: tuple[str, ...]
    control_names: tuple[str, ...]
    solve: SolveResult

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The library's feature names."""
        return self.library.names(self.state_names + self.control_names)

    @property
    def support(self) -> Array:
        """``(F, n)`` booleans: the active terms."""
        return self.coefficients != 0

    def equations(self, precision: int = 3) -> list[str]:
        """Readable equations, e.g. ``"dx0/dt = 1.000 x0 - 0.100 x0 x1"``."""
        coefficients = np.asarray(self.coefficients)
        out = []
        for j, state in enumerate(self.state_names):
            terms = [
                (float(c), name)
                for c, name in zip(coefficients[:, j], self.feature_names, strict=True)
                if c != 0
            ]
            body = "".join(_term(c, name, precision, i == 0) for i, (c, name) in enumerate(terms))
            out.append(f"d{state}/dt = {body or '0'}")
        return out

    def predict(self, x: Any, u: Any = None) -> Array:
        """``dx/dt`` at states ``x`` (``(n,)`` or ``(N, n)``) and controls ``u``."""
        z = jnp.asarray(x) if u is None else jnp.concatenate([x, u], axis=-1)
        return self.library(z) @ self.coefficients

    def to_dynamics(self, name: str = "sindy") -> Dynamics:
        """The model as a ``Dynamics`` (its ``params`` hold the coefficients)."""
        library, n = self.library, len(self.state_names)

        def rhs(x: Array, u: Array, t: Any, p: dict) -> Array:
            return library(jnp.concatenate([x, u])) @ p["coefficients"]

        return Dynamics(
            rhs,
            n,
            len(self.control_names),
            {"coefficients": self.coefficients},
            name=name,
            state_names=self.state_names,
        )


def fit_sindy(
    states: Any,
    dt: float,
    *,
    controls: Any = None,
    degree: int = 2,
    trig: bool = False,
    threshold: float = 0.05,
    ridge: float = 0.0,
    derivative: str = "central",
    order: int = 6,
    window: int = 11,
    polyorder: int = 3,
    state_names: tuple[str, ...] | None = None,
) -> SINDyModel:
    """Identify a sparse model ``dx/dt = Theta(x, u) Xi`` from sampled trajectories.

    Args:
        states: ``(N, n)`` or ``(B, N, n)`` samples every ``dt``.
        dt: the sampling period (> 0).
        controls: ``None`` or ``(N, m)`` / ``(B, N, m)`` controls at the same instants.
        degree: the monomials' highest degree.
        trig: add ``sin`` / ``cos`` of each input.
        threshold: STLSQ's threshold on the coefficients (data units, >= 0).
        ridge: STLSQ's ridge penalty (>= 0).
        derivative: ``"central"`` or ``"savgol"`` (see ``differentiate``); with
            ``"savgol"`` the library uses the smoothed states too.
        order: central differences' order of accuracy.
        window: Savitzky-Golay window.
        polyorder: Savitzky-Golay degree.
        state_names: names for the equations (default ``x0, x1, ..``; controls are
            ``u0, u1, ..``).

    Returns:
        A ``SINDyModel``: ``coefficients``, ``support``, ``equations()``, ``to_dynamics()``.

    Raises:
        TypeError: non-numeric data.
        ValueError: wrong shapes, NaN / inf, too few samples, bad options.

    Example:
        >>> import jax.numpy as jnp
        >>> t = jnp.linspace(0.0, 5.0, 501)
        >>> xy = jnp.stack([jnp.cos(t), -jnp.sin(t)], axis=1)   # x' = y, y' = -x
        >>> fit_sindy(xy, 0.01, degree=1, threshold=0.1).equations()
        ['dx0/dt = 1.000 x1', 'dx1/dt = -1.000 x0']
    """
    check_positive(dt, "dt")
    check_positive(threshold, "threshold", allow_zero=True)
    check_positive(ridge, "ridge", allow_zero=True)
    check_choice(derivative, DERIVATIVES, "derivative")
    library = FeatureLibrary(degree, bool(trig))
    xs = _batched(states, "states")
    us = None if controls is None else _batched(controls, "controls").astype(xs.dtype)
    if us is not None and us.shape[:2] != xs.shape[:2]:
        raise ValueError(
            f"controls must have shape {xs.shape[:2]} + (m,) like states, got {us.shape}"
        )
    n, m = xs.shape[2], 0 if us is None else us.shape[2]
    names = tuple(f"x{i}" for i in range(n)) if state_names is None else tuple(state_names)
    if len(names) != n:
        raise ValueError(f"state_names must have {n} entries, got {len(names)}")
    options = {"method": derivative, "order": order, "window": window, "polyorder": polyorder}
    rates = jnp.concatenate([differentiate(x, dt, **options) for x in xs])
    if derivative == "savgol":
        xs = jnp.stack([smooth(x, window=window, polyorder=polyorder) for x in xs])
    inputs = xs if us is None else jnp.concatenate([xs, us], axis=-1)
    theta = library(inputs.reshape(-1, n + m))
    result = stlsq(theta, rates, threshold, ridge=ridge)
    controls_names = tuple(f"u{i}" for i in range(m))
    return SINDyModel(result.params, library, names, controls_names, result)


def _batched(x: Any, name: str) -> Array:
    try:
        x = jnp.asarray(x)
    except TypeError as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None
    if not jnp.issubdtype(x.dtype, jnp.number) or jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (N, d) or (B, N, d), got {x.shape}")
    check_finite(x, name)
    return x if x.ndim == 3 else x[None]
