"""System identification: fit a ``Dynamics``' unknown parameters to observed trajectories.

The data are ``B`` trajectories of states ``y_0 .. y_T`` sampled every ``dt`` under known
controls ``u_0 .. u_{T-1}``, each held constant over its period (zero-order hold). The model
is simulated with ``discretize(dynamics, dt, method=..., substeps=...)`` and its parameters
minimise the sum of squared differences between simulated and observed states.

* **Single shooting**: one simulation per trajectory from its (fitted) initial state. Cheap,
  but over a long horizon the residual is a very non-convex function of the parameters (a
  slightly wrong frequency puts the simulation out of phase) and a local method started far
  from the truth stalls in a wrong minimum.
* **Multiple shooting** (Bock & Plitt 1984): the horizon is cut into segments of
  ``segment_length`` periods; each segment starts from its own unknown state ``s_k``
  (initialised at the observation), so each simulation is short and the residual nearly
  linear in the states. Continuity is **a penalty**: the defects ``x_k(end) - s_{k+1}``
  (segment ``k`` simulated to its end minus the next segment's start) are extra residual
  terms multiplied by ``continuity_weight``. Where the data are noise-free the defects vanish
  at the solution and it is the single-shooting solution; with noise they are small but
  nonzero (``SysIdResult.max_defect`` reports them), and a larger weight moves the solution
  towards the single-shooting one. At a defect-free point the data terms are exactly those of
  single shooting (each observation is compared once).

Levenberg-Marquardt (``opifex.second_order.least_squares``, the default) or Adam
(``opifex.core.OptaxSolver`` on the mean squared residual) minimises the residual; the
solver's ``SolveResult`` (status included) is part of the result, and a run that did not
converge is logged as a warning. The solve is jit-compiled once per model and problem shape:
new data or initial guesses of the same shapes do not recompile.

Reference: Bock, H. G. & Plitt, K. J. (1984), "A multiple shooting algorithm for direct
solution of optimal control problems", IFAC Proceedings 17(2), 1603-1608.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from opifex.control._dynamics import Dynamics, discretize
from opifex.core import (
    OptaxSolver,
    SolveResult,
    check_choice,
    check_finite,
    check_int_at_least,
    check_positive,
    run_solver,
)
from opifex.second_order import GaussNewtonConfig, least_squares

LOG = logging.getLogger(__name__)
Array = jax.Array

SHOOTING = ("single", "multiple")
OPTIMIZERS = ("levenberg_marquardt", "adam")
DEFAULT_SEGMENT_LENGTH = 20


@dataclasses.dataclass(frozen=True)
class _Shooting:
    """The residual of a (single or multiple) shooting fit: static and hashable.

    ``residual(unknowns, fixed, observed, controls)`` with ``unknowns`` a dict of
    ``"params"`` (the fitted model parameters, a pytree), ``"initial"`` (``(B, n)`` initial
    states, present when ``fit_initial_state``) and ``"segments"`` (``(B, K - 1, n)`` starts of
    segments 2..K, present when ``K > 1``); ``fixed`` the model parameters that are not fitted
    (a dict merged under ``params``); ``observed`` ``(B, T + 1, n)``; ``controls`` ``(B, T, m)``.

    Attributes:
        dynamics: the model.
        dt: the sampling (and control) period.
        horizon: ``T``, the number of periods per trajectory.
        segment_length: periods per segment (``horizon`` for single shooting).
        continuity_weight: the factor on the continuity defects (multiple shooting).
        fit_initial_state: whether the first states are unknowns (else the observed ones).
        method: the integrator of ``discretize``.
        substeps: integrator steps per period.
        positive: ``unknowns["params"]`` hold the logarithms of the fitted parameters.
    """

    dynamics: Dynamics
    dt: float
    horizon: int
    segment_length: int
    continuity_weight: float = 10.0
    fit_initial_state: bool = True
    method: str = "rk4"
    substeps: int = 1
    positive: bool = False

    @property
    def num_segments(self) -> int:
        """``K = ceil(T / segment_length)``."""
        return math.ceil(self.horizon / self.segment_length)

    def model_params(self, fitted: Any) -> Any:
        """The fitted parameters in the model's units (``exp`` of the unknowns if positive)."""
        return jax.tree.map(jnp.exp, fitted) if self.positive else fitted

    def simulate(self, unknowns: dict, fixed: Any, observed: Array, controls: Array) -> tuple:
        """``(predicted (B, K L + 1, n), defects (B, K - 1, n))`` of the segments' rollouts."""
        step = discretize(self.dynamics, self.dt, method=self.method, substeps=self.substeps)
        params = {**fixed, **self.model_params(unknowns["params"])}
        length, count = self.segment_length, self.num_segments
        first = unknowns["initial"] if self.fit_initial_state else observed[:, 0]
        starts = first[:, None]
        if count > 1:
            starts = jnp.concatenate([starts, unknowns["segments"]], axis=1)
        batch, _, m = controls.shape
        pad = count * length - self.horizon
        padded = jnp.pad(controls, ((0, 0), (0, pad), (0, 0))).reshape(batch, count, length, m)
        offsets = jnp.arange(count) * length

        def segment(x0: Array, us: Array, offset: Array) -> Array:
            def advance(x: Array, inputs: tuple) -> tuple[Array, Array]:
                u, j = inputs
                x_next = step(x, u, (offset + j) * self.dt, params)
                return x_next, x_next

            index = jnp.arange(length, dtype=x0.dtype)
            _, xs = lax.scan(advance, x0, (us, index))
            return jnp.concatenate([x0[None], xs])

        runs = jax.vmap(jax.vmap(segment, (0, 0, 0)), (0, 0, None))(starts, padded, offsets)
        # each segment contributes its states 0 .. L-1, the last one its end state as well
        predicted = runs[:, :, :length].reshape(batch, count * length, -1)
        predicted = jnp.concatenate([predicted, runs[:, -1, -1:]], axis=1)
        defects = runs[:, :-1, -1] - starts[:, 1:]
        return predicted, defects

    def residual(self, unknowns: dict, fixed: Any, observed: Array, controls: Array) -> dict:
        """``{"data": masked simulated minus observed, "defects": weighted defects}``."""
        predicted, defects = self.simulate(unknowns, fixed, observed, controls)
        pad = predicted.shape[1] - observed.shape[1]
        target = jnp.pad(observed, ((0, 0), (0, pad), (0, 0)))
        inside = (jnp.arange(predicted.shape[1]) <= self.horizon)[None, :, None]
        out = {"data": jnp.where(inside, predicted - target, 0.0)}
        if self.num_segments > 1:
            out["defects"] = self.continuity_weight * defects
        return out

    def __call__(self, unknowns: dict, fixed: Any, observed: Array, controls: Array) -> dict:
        """The residual, jit-compiled once per ``_Shooting`` (cached for eager calls too)."""
        return _jit_residual(self, unknowns, fixed, observed, controls)

    def mean_squared(self, unknowns: dict, fixed: Any, observed: Array, controls: Array) -> Array:
        """``0.5 * sum(r**2) / (number of observed values)``: the objective of Adam."""
        residual = self.residual(unknowns, fixed, observed, controls)
        total = sum(jnp.sum(r * r) for r in residual.values())
        return 0.5 * total / observed.size


_jit_residual = jax.jit(_Shooting.residual, static_argnums=0)
_jit_simulate = jax.jit(_Shooting.simulate, static_argnums=0)


@dataclasses.dataclass(frozen=True, eq=False)
class SysIdResult:
    """A fitted model: parameters, the solver's result and the fit's errors.

    Attributes:
        params: the fitted parameters (a dict: the names fitted, 0-d arrays; for a neural ODE
            ``{"layers": ...}``); ``dynamics.with_params(**params)`` uses them.
        dynamics: the model with ``params`` as its defaults (simulate it directly).
        solve: the solver's ``SolveResult`` (``status``, ``num_steps``, ``trace`` ...).
        initial_states: the fitted (or observed) initial states, ``(B, n)``.
        segment_states: multiple shooting's fitted segment starts ``(B, K - 1, n)`` (``None``
            for single shooting).
        max_defect: the largest continuity defect ``|x_k(end) - s_{k+1}|`` (0 for single
            shooting).
        train_rmse: the RMSE of the fitted model simulated from ``initial_states`` over the
            whole training horizon (no segments) against the training data.
        dt: the sampling period.
        method: the integrator.
        substeps: integrator steps per period.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import simulate
        >>> decay = Dynamics(lambda x, u, t, p: -p["k"] * x + u, 1, 1, {"k": 1.0})
        >>> ys = simulate(decay.with_params(k=2.0), jnp.ones(1), jnp.zeros((10, 1)), 0.1)
        >>> fit = fit_parameters(decay, ys, jnp.zeros((10, 1)), 0.1, {"k": 1.0})
        >>> fit.converged, round(float(fit.params["k"]), 4)
        (True, 2.0)
    """

    params: dict[str, Any]
    dynamics: Dynamics
    solve: SolveResult
    initial_states: Array
    segment_states: Array | None
    max_defect: float
    train_rmse: float
    dt: float
    method: str = "rk4"
    substeps: int = 1

    @property
    def converged(self) -> bool:
        """Whether the solver reported ``SUCCESS``."""
        return bool(self.solve.converged)

    @property
    def status_name(self) -> str:
        """The solver's ``SolveStatus`` name."""
        return self.solve.status_name

    def rmse(self, observed_states: Any, controls: Any, *, since: int = 0) -> float:
        """The held-out error: RMSE of the fitted model simulated from each observed start.

        Args:
            observed_states: ``(T + 1, n)`` or ``(B, T + 1, n)`` trajectories not used for
                fitting.
            controls: ``(T, m)`` or ``(B, T, m)``.
            since: only states ``since ..  T`` count (e.g. beyond a training window).

        Example:
            >>> import jax.numpy as jnp
            >>> from opifex.control import simulate
            >>> decay = Dynamics(lambda x, u, t, p: -p["k"] * x + u, 1, 1, {"k": 1.0})
            >>> us = jnp.zeros((10, 1))
            >>> ys = simulate(decay.with_params(k=2.0), jnp.ones(1), us, 0.1)
            >>> fit = fit_parameters(decay, ys, us, 0.1, {"k": 1.0})
            >>> held_out = simulate(decay.with_params(k=2.0), 3 * jnp.ones(1), us, 0.1)
            >>> fit.rmse(held_out, us) < 1e-5
            True
        """
        return trajectory_rmse(
            self.dynamics,
            observed_states,
            controls,
            self.dt,
            since=since,
            method=self.method,
            substeps=self.substeps,
        )


# ----------------------------------------------------------------------------- checks


def _check_trajectories(dynamics: Dynamics, observed_states: Any, controls: Any) -> tuple:
    """``(observed (B, T + 1, n), controls (B, T, m))`` as float arrays, validated.

    Raises:
        TypeError: ``dynamics`` not a ``Dynamics``; non-numeric data.
        ValueError: wrong ranks or sizes, fewer than 2 samples, NaN or inf.
    """
    if not isinstance(dynamics, Dynamics):
        raise TypeError(f"dynamics must be a Dynamics, got {type(dynamics).__name__}")
    ys, us = _as_float(observed_states, "observed_states"), _as_float(controls, "controls")
    if ys.ndim not in (2, 3):
        raise ValueError(f"observed_states must have shape (T+1, n) or (B, T+1, n), got {ys.shape}")
    if us.ndim != ys.ndim:
        raise ValueError(
            f"controls must have {ys.ndim} dimensions like observed_states, got shape {us.shape}"
        )
    if ys.ndim == 2:
        ys, us = ys[None], us[None]
    n, m = dynamics.state_dim, dynamics.control_dim
    if ys.shape[2] != n or ys.shape[1] < 2:
        raise ValueError(
            f"observed_states must have shape (B, T+1, {n}) with T >= 1, got {ys.shape}"
        )
    expected = (ys.shape[0], ys.shape[1] - 1, m)
    if us.shape != expected:
        raise ValueError(
            f"controls must have shape {expected} (one control per period, zero-order hold),"
            f" got {us.shape}"
        )
    check_finite(ys, "observed_states")
    check_finite(us, "controls")
    return ys, us.astype(ys.dtype)


def _as_float(x: Any, name: str) -> Array:
    try:
        x = jnp.asarray(x)
    except TypeError as error:
        raise TypeError(f"{name} must be an array of numbers: {error}") from None
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if not jnp.issubdtype(x.dtype, jnp.number) or jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        x = x.astype(jnp.result_type(float))
    return x


def _check_initial_params(dynamics: Dynamics, initial_params: Any, dtype: Any) -> dict:
    if not isinstance(initial_params, Mapping):
        raise TypeError(
            f"initial_params must be a dict of parameter names to floats, got"
            f" {type(initial_params).__name__}"
        )
    if not initial_params:
        raise ValueError("initial_params is empty: name at least one parameter to fit")
    unknown = sorted(set(initial_params) - set(dynamics.params))
    if unknown:
        raise ValueError(
            f"unknown parameters {unknown} for {dynamics.name}; known: {sorted(dynamics.params)}"
        )
    out = {}
    for name, value in initial_params.items():
        if isinstance(value, bool) or jnp.ndim(value) != 0:
            raise TypeError(f"initial_params[{name!r}] must be a real number, got {value!r}")
        out[name] = _as_float(value, f"initial_params[{name!r}]").astype(dtype)
    check_finite(out, "initial_params")
    return out


def _resolve_segments(shooting: str, segment_length: int | None, horizon: int) -> int:
    """The segment length: ``horizon`` (single shooting) or ``segment_length``."""
    check_choice(shooting, SHOOTING, "shooting")
    if shooting == "single":
        if segment_length is not None:
            raise ValueError('segment_length is for shooting="multiple" only')
        return horizon
    length = DEFAULT_SEGMENT_LENGTH if segment_length is None else segment_length
    check_int_at_least(length, 1, "segment_length")
    return min(length, horizon)


def _initial_unknowns(shoot: _Shooting, params: Any, observed: Array) -> dict:
    """The starting point: ``params`` and the observed states at segment starts."""
    unknowns = {"params": params}
    if shoot.fit_initial_state:
        unknowns["initial"] = observed[:, 0]
    if shoot.num_segments > 1:
        unknowns["segments"] = observed[:, shoot.segment_length :: shoot.segment_length][
            :, : shoot.num_segments - 1
        ]
    return unknowns


# ----------------------------------------------------------------------------- solvers


@functools.partial(jax.jit, static_argnames=("shoot", "learning_rate", "trace_length"))
def _adam_solve(
    shoot: _Shooting,
    learning_rate: float,
    trace_length: int,
    unknowns: dict,
    fixed: Any,
    observed: Array,
    controls: Array,
    max_steps: Array,
) -> SolveResult:
    solver = OptaxSolver(shoot.mean_squared, optax.adam(learning_rate), divergence_factor=1e6)
    return run_solver(
        solver,
        unknowns,
        fixed,
        observed,
        controls,
        max_steps=max_steps,
        trace_length=trace_length,
    )


def _solve_shooting(
    shoot: _Shooting,
    unknowns: dict,
    fixed: Any,
    observed: Array,
    controls: Array,
    *,
    optimizer: str,
    max_steps: int,
    learning_rate: float,
    config: GaussNewtonConfig | None,
) -> SolveResult:
    """Minimise ``shoot``'s residual over ``unknowns`` with LM or Adam."""
    check_choice(optimizer, OPTIMIZERS, "optimizer")
    check_int_at_least(max_steps, 0, "max_steps")
    if optimizer == "adam":
        check_positive(learning_rate, "learning_rate")
        budget = jnp.asarray(max_steps, jnp.int32)
        args = (unknowns, fixed, observed, controls, budget)
        return _adam_solve(shoot, learning_rate, max_steps, *args)
    config = GaussNewtonConfig() if config is None else config
    if config.max_steps is None:
        config = dataclasses.replace(config, max_steps=max_steps)
    return least_squares(shoot, unknowns, fixed, observed, controls, config=config)


def _finish(
    shoot: _Shooting,
    result: SolveResult,
    dynamics: Dynamics,
    fixed: Any,
    observed: Array,
    controls: Array,
    budgeted: bool = False,
) -> SysIdResult:
    """Wrap a solve as a ``SysIdResult`` (errors, defects; a warning if unconverged).

    ``budgeted``: a run of a fixed budget (Adam), for which ``MAX_STEPS_REACHED`` is expected.
    """
    unknowns = result.params
    fitted = shoot.model_params(unknowns["params"])
    initial = unknowns["initial"] if shoot.fit_initial_state else observed[:, 0]
    segments = unknowns.get("segments")
    _, defects = _jit_simulate(shoot, unknowns, fixed, observed, controls)
    max_defect = float(jnp.max(jnp.abs(defects))) if defects.size else 0.0
    model = dynamics.with_params(**fitted)
    out = SysIdResult(
        params=fitted,
        dynamics=model,
        solve=result,
        initial_states=initial,
        segment_states=segments,
        max_defect=max_defect,
        train_rmse=float("nan"),
        dt=shoot.dt,
        method=shoot.method,
        substeps=shoot.substeps,
    )
    with_starts = jnp.concatenate([initial[:, None], observed[:, 1:]], axis=1)
    out = dataclasses.replace(out, train_rmse=out.rmse(with_starts, controls))
    expected = budgeted and out.status_name == "MAX_STEPS_REACHED"
    if not out.converged and not expected:
        LOG.warning(
            "system identification of %s did not converge: %s after %d steps (%s)",
            dynamics.name,
            out.status_name,
            int(result.num_steps),
            result.message,
        )
    return out


# ----------------------------------------------------------------------------- public API


def fit_parameters(
    dynamics: Dynamics,
    observed_states: Any,
    controls: Any,
    dt: float,
    initial_params: Mapping[str, float],
    *,
    shooting: str = "single",
    segment_length: int | None = None,
    continuity_weight: float = 10.0,
    fit_initial_state: bool = True,
    positive: bool = False,
    optimizer: str = "levenberg_marquardt",
    max_steps: int = 200,
    learning_rate: float = 1e-2,
    method: str = "rk4",
    substeps: int = 1,
    config: GaussNewtonConfig | None = None,
) -> SysIdResult:
    """Fit the parameters named in ``initial_params`` to observed trajectories.

    The other parameters stay at ``dynamics.params``. See the module docstring for single and
    multiple shooting and the continuity penalty.

    Args:
        dynamics: the model, ``dx/dt = f(x, u, t, params)``.
        observed_states: ``(T + 1, n)`` or ``(B, T + 1, n)``: states at times ``0, dt, ..,
            T dt``.
        controls: ``(T, m)`` or ``(B, T, m)``: ``u_k`` is held over ``[k dt, (k + 1) dt)``.
        dt: the sampling period (> 0).
        initial_params: the parameters to fit and their starting values (names of
            ``dynamics.params``).
        shooting: ``"single"`` or ``"multiple"``.
        segment_length: periods per segment for multiple shooting (default 20).
        continuity_weight: multiple shooting: the factor on the continuity defects (> 0).
        fit_initial_state: fit each trajectory's initial state (starting at the observed one)
            instead of taking the observation as exact; advisable with noisy data.
        positive: fit the logarithms of the parameters (all must start > 0 and stay so; a
            parameter cannot cross zero, and scale-free steps suit masses and lengths).
        optimizer: ``"levenberg_marquardt"`` (``opifex.second_order.least_squares``) or
            ``"adam"`` (on ``0.5 * sum(r**2) / observed_states.size``; it runs its whole budget,
            so its status is ``MAX_STEPS_REACHED`` unless the run failed: ``NONFINITE`` or
            ``DIVERGED``).
        max_steps: the solver's iteration budget (LM: unless ``config.max_steps`` is set).
        learning_rate: Adam's learning rate.
        method: the integrator (``discretize``'s ``method``: ``"rk4"``, ``"tsit5"`` ...).
        substeps: integrator steps per sampling period.
        config: a ``GaussNewtonConfig`` for LM (tolerances, damping rule).

    Returns:
        A ``SysIdResult``: ``params`` (0-d arrays, for ``dynamics.with_params(**params)``),
        ``dynamics`` (with them), ``solve`` (``status`` says whether it converged),
        ``rmse(...)`` for held-out trajectories.

    Raises:
        TypeError: ``dynamics`` not a ``Dynamics``; non-numeric data or parameter values.
        ValueError: shapes that do not match the model or each other, NaN / inf in the data
            or the initial parameters, unknown parameter names, bad options.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.control import pendulum, simulate
        >>> truth = pendulum(damping=0.3)
        >>> us = 0.5 * jnp.sin(jnp.arange(40.0) / 5.0)[:, None]
        >>> ys = simulate(truth, jnp.array([0.5, 0.0]), us, 0.05)
        >>> fit = fit_parameters(pendulum(), ys, us, 0.05, {"damping": 0.1})
        >>> fit.status_name, round(float(fit.params["damping"]), 3)
        ('SUCCESS', 0.3)
    """
    observed, controls = _check_trajectories(dynamics, observed_states, controls)
    check_positive(dt, "dt")
    check_positive(continuity_weight, "continuity_weight")
    if not isinstance(fit_initial_state, bool):
        raise TypeError(f"fit_initial_state must be a bool, got {type(fit_initial_state).__name__}")
    fitted = _check_initial_params(dynamics, initial_params, observed.dtype)
    if not isinstance(positive, bool):
        raise TypeError(f"positive must be a bool, got {type(positive).__name__}")
    if positive:
        negative = sorted(k for k, v in fitted.items() if not float(v) > 0)
        if negative:
            raise ValueError(f"positive=True needs initial_params > 0; not so for {negative}")
        fitted = {k: jnp.log(v) for k, v in fitted.items()}
    horizon = observed.shape[1] - 1
    shoot = _Shooting(
        dynamics,
        float(dt),
        horizon,
        _resolve_segments(shooting, segment_length, horizon),
        float(continuity_weight),
        fit_initial_state,
        method,
        substeps,
        positive,
    )
    discretize(dynamics, dt, method=method, substeps=substeps)  # validates method, substeps
    fixed = {
        k: jnp.asarray(v, observed.dtype) for k, v in dynamics.params.items() if k not in fitted
    }
    unknowns = _initial_unknowns(shoot, fitted, observed)
    result = _solve_shooting(
        shoot,
        unknowns,
        fixed,
        observed,
        controls,
        optimizer=optimizer,
        max_steps=max_steps,
        learning_rate=learning_rate,
        config=config,
    )
    budgeted = optimizer == "adam"
    return _finish(shoot, result, dynamics, fixed, observed, controls, budgeted)


def trajectory_rmse(
    dynamics: Dynamics,
    observed_states: Any,
    controls: Any,
    dt: float,
    params: Any = None,
    *,
    since: int = 0,
    method: str = "rk4",
    substeps: int = 1,
) -> float:
    """RMSE of ``dynamics`` simulated from each trajectory's first state against the data.

    Args:
        dynamics: the model.
        observed_states: ``(T + 1, n)`` or ``(B, T + 1, n)``.
        controls: ``(T, m)`` or ``(B, T, m)`` (zero-order hold).
        dt: the sampling period.
        params: model parameters (``None``: ``dynamics.params``).
        since: only states ``since .. T`` count (``0``: all, the initial one included).
        method: the integrator.
        substeps: integrator steps per period.

    Returns:
        ``sqrt(mean((x_k - y_k)**2))`` over trajectories, states ``k >= since`` and
        components (NaN if the simulation fails).

    Example:
        >>> import jax.numpy as jnp
        >>> decay = Dynamics(lambda x, u, t, p: -x + u, 1, 1)
        >>> trajectory_rmse(decay, jnp.ones((3, 1)), jnp.ones((2, 1)), 0.1)
        0.0
    """
    observed, controls = _check_trajectories(dynamics, observed_states, controls)
    check_positive(dt, "dt")
    check_int_at_least(since, 0, "since")
    if since >= observed.shape[1]:
        raise ValueError(f"since must be below the number of states {observed.shape[1]}")
    params = dynamics.params if params is None else params
    params = jax.tree.map(lambda v: jnp.asarray(v, observed.dtype), params)
    # the right-hand side, not the Dynamics, is static: a copy with other defaults (such as a
    # fit's result) reuses the compiled program
    static = (dynamics.rhs, dynamics.state_dim, dynamics.control_dim, float(dt), method, substeps)
    return float(_rmse(static, since, observed, controls, params))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _rmse(static: tuple, since: int, observed: Array, controls: Array, params: Any) -> Array:
    rhs, n, m, dt, method, substeps = static
    step = discretize(Dynamics(rhs, n, m), dt, method=method, substeps=substeps)

    def one(y: Array, us: Array) -> Array:
        def advance(x: Array, inputs: tuple) -> tuple[Array, Array]:
            u, k = inputs
            x_next = step(x, u, k * dt, params)
            return x_next, x_next

        index = jnp.arange(us.shape[0], dtype=y.dtype)
        _, xs = lax.scan(advance, y[0], (us, index))
        return jnp.concatenate([y[:1], xs])

    predicted = jax.vmap(one)(observed, controls)
    return jnp.sqrt(jnp.mean((predicted[:, since:] - observed[:, since:]) ** 2))
