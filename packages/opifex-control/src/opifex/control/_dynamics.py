"""Continuous-time models ``f(x, u, t, params)`` and their discrete-time views.

A ``Dynamics`` holds the right-hand side of ``dx/dt = f(x, u, t, params)`` with its sizes,
default parameters and control bounds. ``discretize`` turns it into a step
``x_next = step(x, u, t, params)`` over one control period with the control held constant
(zero-order hold), either with a hand-written fixed-step integrator (``"rk4"``, ``"euler"``:
cheapest, any derivative) or with any diffrax solver (explicit or implicit, fixed or adaptive
steps, adjoint of your choice). ``rollout`` applies a step along a control sequence;
``simulate`` does so for a model directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
from jax import lax

from opifex.core import check_choice, check_int_at_least, check_positive

Array = jax.Array
StepFn = Callable[[Array, Array, Array, Any], Array]

FIXED_STEP_METHODS = ("rk4", "euler")
DIFFRAX_SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "implicit_euler": diffrax.ImplicitEuler,
    "kvaerno3": diffrax.Kvaerno3,
    "kvaerno5": diffrax.Kvaerno5,
}
ADJOINTS = {
    "direct": diffrax.DirectAdjoint,  # forward and reverse mode (iLQR needs Jacobians)
    "recursive": diffrax.RecursiveCheckpointAdjoint,  # reverse mode only, bounded memory
    "backsolve": diffrax.BacksolveAdjoint,  # continuous adjoint, reverse mode only
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dynamics:
    """A continuous-time model ``dx/dt = rhs(x, u, t, params)``.

    Static (hashed by identity), so it can be closed over or passed as a static argument.

    Attributes:
        rhs: ``rhs(x, u, t, params) -> dx/dt`` with ``x`` of shape ``(state_dim,)`` and ``u`` of
            shape ``(control_dim,)``.
        state_dim: length of the state vector.
        control_dim: length of the control vector.
        params: the default parameters (a dict of floats), used when none are passed.
        control_lower: lower control bounds (a tuple of floats, ``-inf`` for none) or ``None``.
        control_upper: upper control bounds or ``None``.
        name: a label for messages and plots.
        state_names: one label per state component.

    Example:
        >>> import jax.numpy as jnp
        >>> decay = Dynamics(lambda x, u, t, p: -p["k"] * x + u, 1, 1, {"k": 2.0})
        >>> decay(jnp.ones(1), jnp.zeros(1), 0.0).tolist()
        [-2.0]
    """

    rhs: Callable[[Array, Array, Any, Any], Array]
    state_dim: int
    control_dim: int
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    control_lower: tuple[float, ...] | None = None
    control_upper: tuple[float, ...] | None = None
    name: str = "dynamics"
    state_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not callable(self.rhs):
            raise TypeError(f"rhs must be callable, got {type(self.rhs).__name__}")
        check_int_at_least(self.state_dim, 1, "state_dim")
        check_int_at_least(self.control_dim, 0, "control_dim")
        for name in ("control_lower", "control_upper"):
            bound = getattr(self, name)
            if bound is not None and len(bound) != self.control_dim:
                raise ValueError(f"{name} must have {self.control_dim} entries, got {len(bound)}")
        if self.state_names is not None and len(self.state_names) != self.state_dim:
            raise ValueError(f"state_names must have {self.state_dim} entries")

    def __call__(self, x: Array, u: Array, t: Any = 0.0, params: Any = None) -> Array:
        """Evaluate ``dx/dt`` (default parameters when ``params`` is ``None``)."""
        return self.rhs(x, u, t, self.params if params is None else params)

    def bounds(self, dtype: Any = jnp.float32) -> tuple[Array, Array]:
        """The control bounds as arrays (``-inf`` / ``inf`` where there are none)."""
        lower = self.control_lower or (-jnp.inf,) * self.control_dim
        upper = self.control_upper or (jnp.inf,) * self.control_dim
        return jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)

    def with_params(self, **params: float) -> Dynamics:
        """A copy with some default parameters replaced (unknown names raise ``ValueError``)."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = sorted(self.params)
            raise ValueError(f"unknown parameters {unknown} for {self.name}; known: {known}")
        return dataclasses.replace(self, params={**self.params, **params})

    def control_affine(self, x: Array, t: Any = 0.0, params: Any = None) -> tuple[Array, Array]:
        """``(f(x), g(x))`` with ``dx/dt = f(x) + g(x) u`` (exact for control-affine models)."""
        u0 = jnp.zeros((self.control_dim,), jnp.result_type(x))
        drift = self(x, u0, t, params)
        gain = jax.jacfwd(lambda u: self(x, u, t, params))(u0)
        return drift, gain


def _rk4(rhs: Callable, x: Array, u: Array, t: Array, dt: Array, params: Any) -> Array:
    k1 = rhs(x, u, t, params)
    k2 = rhs(x + 0.5 * dt * k1, u, t + 0.5 * dt, params)
    k3 = rhs(x + 0.5 * dt * k2, u, t + 0.5 * dt, params)
    k4 = rhs(x + dt * k3, u, t + dt, params)
    return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def discretize(
    dynamics: Dynamics,
    dt: float,
    *,
    method: str = "rk4",
    substeps: int = 1,
    adaptive: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    adjoint: str = "direct",
    max_solver_steps: int = 256,
) -> StepFn:
    """The discrete-time view of ``dynamics`` over one control period ``dt`` (zero-order hold).

    Args:
        dynamics: the continuous-time model.
        dt: the control period (> 0).
        method: ``"rk4"`` or ``"euler"`` (hand-written, fixed step, the cheapest) or a diffrax
            solver: ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"heun"``, ``"midpoint"``, or the
            implicit ``"implicit_euler"``, ``"kvaerno3"``, ``"kvaerno5"`` (stiff models).
        substeps: fixed steps per control period (and the initial step count when adaptive).
        adaptive: diffrax only: adaptive step size with a PID controller at ``rtol`` / ``atol``.
        rtol: relative tolerance of the adaptive controller (and of implicit solvers' root find).
        atol: absolute tolerance of the same.
        adjoint: diffrax only: ``"direct"`` (forward and reverse mode: Jacobians for iLQR),
            ``"recursive"`` (reverse mode, checkpointed) or ``"backsolve"`` (continuous adjoint).
        max_solver_steps: diffrax only: the most internal steps per control period.

    Returns:
        ``step(x, u, t, params) -> x_next`` (``params=None`` uses the model's defaults);
        jit-, vmap- and grad-compatible.

    Raises:
        ValueError: ``dt`` not positive, an unknown method or adjoint, ``substeps < 1``, or
            ``adaptive`` with a hand-written method.

    Example:
        >>> import jax.numpy as jnp
        >>> decay = Dynamics(lambda x, u, t, p: -x, 1, 1)
        >>> step = discretize(decay, 0.1)
        >>> round(float(step(jnp.ones(1), jnp.zeros(1), 0.0)[0]), 6)   # exp(-0.1)
        0.904837
    """
    check_positive(dt, "dt")
    check_int_at_least(substeps, 1, "substeps")
    check_choice(method, FIXED_STEP_METHODS + tuple(DIFFRAX_SOLVERS), "method")
    check_choice(adjoint, tuple(ADJOINTS), "adjoint")
    if method in FIXED_STEP_METHODS and adaptive:
        raise ValueError(f'adaptive=True needs a diffrax method, not "{method}"')
    defaults = dynamics.params
    h = dt / substeps

    if method in FIXED_STEP_METHODS:

        def fixed_step(x: Array, u: Array, t: Any = 0.0, params: Any = None) -> Array:
            p = defaults if params is None else params
            t = jnp.asarray(t, jnp.result_type(x))

            def one(k: int, x: Array) -> Array:
                tk = t + k * h
                if method == "rk4":
                    return _rk4(dynamics.rhs, x, u, tk, h, p)
                return x + h * dynamics.rhs(x, u, tk, p)

            return lax.fori_loop(0, substeps, one, x) if substeps > 1 else one(0, x)

        return fixed_step

    solver = DIFFRAX_SOLVERS[method]()
    if isinstance(solver, diffrax.AbstractImplicitSolver):
        solver = type(solver)(root_finder=diffrax.VeryChord(rtol=rtol, atol=atol))
    controller = (
        diffrax.PIDController(rtol=rtol, atol=atol) if adaptive else diffrax.ConstantStepSize()
    )
    term = diffrax.ODETerm(lambda t, x, args: dynamics.rhs(x, args[0], t, args[1]))
    adjoint_obj = ADJOINTS[adjoint]()

    def diffrax_step(x: Array, u: Array, t: Any = 0.0, params: Any = None) -> Array:
        p = defaults if params is None else params
        t0 = jnp.asarray(t, jnp.result_type(x))
        solution = diffrax.diffeqsolve(
            term,
            solver,
            t0,
            t0 + dt,
            h,
            x,
            args=(u, p),
            stepsize_controller=controller,
            adjoint=adjoint_obj,
            max_steps=max_solver_steps,
            throw=False,
        )
        ok = solution.result == diffrax.RESULTS.successful
        return jnp.where(ok, solution.ys[-1], jnp.nan)  # a failed solve is NaN, never silent

    return diffrax_step


def rollout(step: StepFn, x0: Array, controls: Array, params: Any = None, dt: float = 1.0) -> Array:
    """States ``x_0 .. x_T`` from ``x0`` under ``controls`` (shape ``(T, control_dim)``).

    Args:
        step: a discrete step ``step(x, u, t, params) -> x_next`` (e.g. from ``discretize``).
        x0: the initial state.
        controls: one control per period.
        params: model parameters (``None``: the step's defaults).
        dt: the period, only used for the time passed to ``step``.

    Returns:
        An array of shape ``(T + 1, state_dim)``.

    Example:
        >>> import jax.numpy as jnp
        >>> step = lambda x, u, t, p: x + u
        >>> rollout(step, jnp.zeros(1), jnp.ones((3, 1))).ravel().tolist()
        [0.0, 1.0, 2.0, 3.0]
    """

    def advance(x: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        u, k = inputs
        x_next = step(x, u, k * dt, params)
        return x_next, x_next

    times = jnp.arange(controls.shape[0], dtype=jnp.result_type(x0))
    _, states = lax.scan(advance, x0, (controls, times))
    return jnp.concatenate([x0[None], states])


def simulate(
    dynamics: Dynamics,
    x0: Array,
    controls: Array,
    dt: float,
    params: Any = None,
    **discretize_options: Any,
) -> Array:
    """Integrate ``dynamics`` from ``x0`` holding each control for ``dt``.

    Args:
        dynamics: the model.
        x0: initial state of shape ``(state_dim,)``.
        controls: shape ``(T, control_dim)``.
        dt: the control period.
        params: model parameters (``None``: the model's defaults).
        **discretize_options: passed to ``discretize`` (``method``, ``adaptive``, ``adjoint`` ...).

    Returns:
        States of shape ``(T + 1, state_dim)``.

    Raises:
        ValueError: ``x0`` or ``controls`` of the wrong shape, or a bad option.

    Example:
        >>> import jax.numpy as jnp
        >>> decay = Dynamics(lambda x, u, t, p: -x + u, 1, 1)
        >>> xs = simulate(decay, jnp.ones(1), jnp.zeros((2, 1)), 1.0, method="tsit5", adaptive=True)
        >>> [round(float(v), 4) for v in xs.ravel()]
        [1.0, 0.3679, 0.1353]
    """
    x0 = jnp.asarray(x0)
    x0 = x0.astype(jnp.result_type(float, x0))  # integer states integrate as floats
    controls = jnp.asarray(controls)
    if x0.shape != (dynamics.state_dim,):
        raise ValueError(f"x0 must have shape ({dynamics.state_dim},), got {x0.shape}")
    if controls.ndim != 2 or controls.shape[1] != dynamics.control_dim:
        raise ValueError(
            f"controls must have shape (T, {dynamics.control_dim}), got {controls.shape}"
        )
    step = discretize(dynamics, dt, **discretize_options)
    return rollout(step, x0, controls.astype(x0.dtype), params, dt)
