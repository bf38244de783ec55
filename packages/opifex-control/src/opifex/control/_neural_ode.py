"""Neural ODEs: an MLP vector field ``dx/dt = MLP([x, u])`` fitted to trajectories with Adam.

The network is a plain pytree (a list of ``{"w", "b"}`` dicts, tanh hidden layers, a linear
output) inside an ordinary ``Dynamics``, so that a fitted model simulates, discretises and
plans like any other. Inputs are standardised and outputs scaled with statistics of the
training data (the mean and spread of the states and controls, and of finite-difference
derivatives), kept as fixed entries of the model's parameters: the network then learns an
order-one map whatever the units.

Training minimises the mean squared error of simulated minus observed states through the
integrator (``discretize``: RK4 by default, or any diffrax solver such as ``"tsit5"``), with
Adam run by ``opifex.core.OptaxSolver``. With ``shooting="multiple"`` the horizon is cut into
segments whose initial states are trained too, tied by a continuity penalty (the formulation
of ``fit_parameters``): short rollouts keep the gradients well-conditioned early in training.
Each trajectory's first state is taken as observed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from opifex.control._dynamics import Dynamics, discretize
from opifex.control._sysid import (
    SysIdResult,
    _as_float,
    _check_trajectories,
    _finish,
    _initial_unknowns,
    _resolve_segments,
    _Shooting,
    _solve_shooting,
)
from opifex.core import check_int_at_least, check_positive

Array = jax.Array


def mlp_init(key: Array, sizes: tuple[int, ...], dtype: Any = None) -> list[dict[str, Array]]:
    """Weights of an MLP with layer widths ``sizes`` (LeCun-normal weights, zero biases).

    Args:
        key: a ``jax.random`` key.
        sizes: ``(inputs, hidden..., outputs)``, each >= 1.
        dtype: the float dtype (default: JAX's default float).

    Returns:
        A list of ``{"w": (fan_in, fan_out), "b": (fan_out,)}``, one per layer.

    Example:
        >>> import jax
        >>> layers = mlp_init(jax.random.key(0), (3, 8, 2))
        >>> [layer["w"].shape for layer in layers]
        [(3, 8), (8, 2)]
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must name at least inputs and outputs, got {sizes}")
    for size in sizes:
        check_int_at_least(size, 1, "sizes")
    dtype = jnp.result_type(float) if dtype is None else dtype
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (a, b), dtype) / jnp.sqrt(jnp.asarray(a, dtype)),
            "b": jnp.zeros((b,), dtype),
        }
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_apply(layers: list[dict[str, Array]], z: Array) -> Array:
    """The MLP: tanh hidden layers, a linear output layer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layers = mlp_init(jax.random.key(0), (3, 8, 2))
        >>> mlp_apply(layers, jnp.ones(3)).shape
        (2,)
    """
    for layer in layers[:-1]:
        z = jnp.tanh(z @ layer["w"] + layer["b"])
    return z @ layers[-1]["w"] + layers[-1]["b"]


def _neural_rhs(x: Array, u: Array, t: Any, p: dict) -> Array:
    z = (jnp.concatenate([x, u]) - p["input_mean"]) / p["input_scale"]
    return p["output_scale"] * mlp_apply(p["layers"], z)


def neural_dynamics(
    key: Array,
    state_dim: int,
    control_dim: int,
    hidden_sizes: tuple[int, ...] = (32, 32),
    *,
    input_mean: Any = None,
    input_scale: Any = None,
    output_scale: Any = None,
    name: str = "neural_ode",
) -> Dynamics:
    """A ``Dynamics`` whose right-hand side is an MLP of the standardised ``[x, u]``.

    ``dx/dt = output_scale * MLP((concat(x, u) - input_mean) / input_scale)``.

    Args:
        key: initialises the weights.
        state_dim: ``n`` (>= 1).
        control_dim: ``m`` (>= 0).
        hidden_sizes: the hidden layers' widths.
        input_mean: ``(n + m,)`` shift of the inputs (default 0).
        input_scale: ``(n + m,)`` scale of the inputs (default 1).
        output_scale: ``(n,)`` scale of the outputs (default 1).
        name: the model's label.

    Returns:
        A ``Dynamics`` with ``params`` ``{"layers", "input_mean", "input_scale",
        "output_scale"}``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = neural_dynamics(jax.random.key(0), 2, 1, (16,))
        >>> model(jnp.zeros(2), jnp.zeros(1)).shape
        (2,)
    """
    check_int_at_least(state_dim, 1, "state_dim")
    check_int_at_least(control_dim, 0, "control_dim")
    width = state_dim + control_dim
    dtype = jnp.result_type(float)

    def vector(value: Any, size: int, default: float, label: str) -> Array:
        out = jnp.full((size,), default, dtype) if value is None else jnp.asarray(value, dtype)
        if out.shape != (size,):
            raise ValueError(f"{label} must have shape ({size},), got {out.shape}")
        return out

    params = {
        "layers": mlp_init(key, (width, *hidden_sizes, state_dim), dtype),
        "input_mean": vector(input_mean, width, 0.0, "input_mean"),
        "input_scale": vector(input_scale, width, 1.0, "input_scale"),
        "output_scale": vector(output_scale, state_dim, 1.0, "output_scale"),
    }
    return Dynamics(_neural_rhs, state_dim, control_dim, params, name=name)


def fit_neural_ode(
    key: Array,
    observed_states: Any,
    controls: Any,
    dt: float,
    *,
    hidden_sizes: tuple[int, ...] = (32, 32),
    shooting: str = "single",
    segment_length: int | None = None,
    continuity_weight: float = 1.0,
    learning_rate: float = 3e-3,
    max_steps: int = 1000,
    method: str = "rk4",
    substeps: int = 1,
) -> SysIdResult:
    """Fit a neural ODE (``neural_dynamics``) to trajectories with Adam.

    Args:
        key: initialises the network.
        observed_states: ``(T + 1, n)`` or ``(B, T + 1, n)``, sampled every ``dt``.
        controls: ``(T, m)`` or ``(B, T, m)`` (zero-order hold).
        dt: the sampling period (> 0).
        hidden_sizes: the hidden layers' widths.
        shooting: ``"single"`` or ``"multiple"`` (segment starts trained too).
        segment_length: periods per segment for multiple shooting (default 20).
        continuity_weight: multiple shooting: the factor on the continuity defects.
        learning_rate: Adam's learning rate.
        max_steps: Adam steps.
        method: the integrator (``"rk4"``, ``"tsit5"`` ...).
        substeps: integrator steps per sampling period.

    Returns:
        A ``SysIdResult``: ``dynamics`` is the trained model; ``train_rmse`` its error over
        the training window; ``rmse(states, controls, since=k)`` the error of a longer
        rollout beyond step ``k`` (extrapolation) or on other trajectories.

    Raises:
        TypeError / ValueError: as ``fit_parameters`` for the data and options.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from opifex.control import simulate
        >>> decay = Dynamics(lambda x, u, t, p: -x + u, 1, 1)
        >>> us = jnp.zeros((20, 1))
        >>> ys = simulate(decay, jnp.ones(1), us, 0.1)
        >>> fit = fit_neural_ode(jax.random.key(0), ys, us, 0.1, hidden_sizes=(8,),
        ...                      learning_rate=1e-2, max_steps=300)
        >>> fit.train_rmse < 0.05
        True
    """
    observed, controls = _promote(observed_states, controls)
    sizes = Dynamics(_neural_rhs, observed.shape[2], controls.shape[2])
    observed, controls = _check_trajectories(sizes, observed, controls)
    check_positive(dt, "dt")
    check_positive(continuity_weight, "continuity_weight")
    discretize(sizes, dt, method=method, substeps=substeps)  # validates method, substeps
    horizon = observed.shape[1] - 1
    length = _resolve_segments(shooting, segment_length, horizon)
    scales = _standardisation(observed, controls, float(dt))
    model = neural_dynamics(key, sizes.state_dim, sizes.control_dim, hidden_sizes, **scales)
    as_data = lambda v: jnp.asarray(v, observed.dtype)  # noqa: E731
    fixed = {k: as_data(v) for k, v in model.params.items() if k != "layers"}
    layers = jax.tree.map(as_data, model.params["layers"])
    shoot = _Shooting(
        model, float(dt), horizon, length, float(continuity_weight), False, method, substeps
    )
    unknowns = _initial_unknowns(shoot, {"layers": layers}, observed)
    result = _solve_shooting(
        shoot,
        unknowns,
        fixed,
        observed,
        controls,
        optimizer="adam",
        max_steps=max_steps,
        learning_rate=learning_rate,
        config=None,
    )
    return _finish(shoot, result, model, fixed, observed, controls, budgeted=True)


def _promote(observed_states: Any, controls: Any) -> tuple[Array, Array]:
    """Float arrays of shapes ``(B, T + 1, n)`` / ``(B, T, m)`` (sizes checked next)."""
    ys, us = _as_float(observed_states, "observed_states"), _as_float(controls, "controls")
    if ys.ndim not in (2, 3) or us.ndim != ys.ndim:
        raise ValueError(
            "observed_states and controls must have shapes (T+1, n) and (T, m), or"
            f" (B, T+1, n) and (B, T, m); got {ys.shape} and {us.shape}"
        )
    return (ys[None], us[None]) if ys.ndim == 2 else (ys, us)


def _standardisation(observed: Array, controls: Array, dt: float) -> dict[str, Array]:
    """Input mean and spread of ``[x, u]`` and the spread of ``dx/dt`` (finite differences)."""
    inputs = jnp.concatenate([observed[:, :-1], controls], axis=-1)
    inputs = inputs.reshape(-1, inputs.shape[-1])
    rates = (jnp.diff(observed, axis=1) / dt).reshape(-1, observed.shape[-1])

    def spread(v: Array) -> Array:
        s = jnp.std(v, axis=0)
        return jnp.where(s > 1e-8 * (1 + jnp.abs(jnp.mean(v, axis=0))), s, 1.0)

    return {
        "input_mean": jnp.mean(inputs, axis=0),
        "input_scale": spread(inputs),
        "output_scale": spread(rates),
    }
