"""Dynamics, discretize, rollout, simulate and the built-in systems.

References: conservation laws (pendulum and cart-pole energy, cart-pole momentum), closed forms
(small-oscillation period, double integrator, quadrotor hover / free fall / spin, cruise
control, a stiff linear ODE), ``scipy.integrate.solve_ivp``, the observed order of RK4, central
finite differences for the gradients, and Python loops for ``rollout``. Everything numeric runs
in float64 (``jax.enable_x64`` around each test) unless a test says otherwise.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from opifex.control._dynamics import Dynamics, discretize, rollout, simulate
from opifex.control._systems import (
    GRAVITY,
    adaptive_cruise_control,
    cartpole,
    double_integrator,
    pendulum,
    planar_quadrotor,
    wrap_angle,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _ivp_reference(dynamics, x0, controls, dt, params=None, method="DOP853", rtol=1e-12):
    """States at the period ends by solve_ivp, one solve per zero-order-hold period."""
    p = dynamics.params if params is None else params
    states = [np.asarray(x0, float)]
    for k, u in enumerate(np.asarray(controls, float)):
        sol = solve_ivp(
            lambda t, x, u=u: np.asarray(dynamics.rhs(jnp.asarray(x), jnp.asarray(u), t, p)),
            (k * dt, (k + 1) * dt),
            states[-1],
            method=method,
            rtol=rtol,
            atol=1e-14,
        )
        assert sol.success
        states.append(sol.y[:, -1])
    return np.stack(states)


def _forced_rhs(x, u, t, p):
    """A damped oscillator with explicit time dependence: q'' = -k q - c q' + u + A sin(w t)."""
    q, v = x[0], x[1]
    return jnp.stack([v, -p["k"] * q - p["c"] * v + u[0] + p["A"] * jnp.sin(p["w"] * t)])


FORCED = Dynamics(_forced_rhs, 2, 1, {"k": 4.0, "c": 0.3, "A": 0.5, "w": 3.0}, name="forced")
FORCED_X0 = np.array([1.0, -0.5])
FORCED_U = np.sin(np.arange(10.0))[:, None]  # a different control each period
FORCED_DT = 0.2

# dx/dt = -LAM (x - cos t) + u: stiff, closed form below
LAM = 1000.0
STIFF = Dynamics(lambda x, u, t, p: -p["lam"] * (x - jnp.cos(t)) + u, 1, 1, {"lam": LAM})


def _stiff_exact(t):
    """x(t) for x(0) = 0: (lam^2 cos t + lam sin t) / (lam^2 + 1) - lam^2 / (lam^2 + 1) e^-lam t."""
    c = LAM**2 / (LAM**2 + 1)
    return c * np.cos(t) + LAM / (LAM**2 + 1) * np.sin(t) - c * np.exp(-LAM * t)


def _forced_reference():
    if not hasattr(_forced_reference, "value"):
        _forced_reference.value = _ivp_reference(FORCED, FORCED_X0, FORCED_U, FORCED_DT)
    return _forced_reference.value


# ------------------------------------------------------------------------------------------
# physics of the built-in systems


def _pendulum_energy(x, p):
    m, length, g = p["mass"], p["length"], p["gravity"]
    return 0.5 * m * length**2 * x[..., 1] ** 2 + m * g * length * np.cos(x[..., 0])


def test_undamped_pendulum_conserves_energy():
    """E = 1/2 m l^2 w^2 + m g l cos(theta): dE/dt = 0 on the rhs (1e-12) and along RK4 (1e-9)."""
    pend = pendulum(damping=0.0, mass=0.7, length=1.3)
    p = pend.params
    rng = np.random.default_rng(0)
    for x in rng.uniform(-4, 4, (5, 2)):
        grad_e = np.array(
            [
                -p["mass"] * p["gravity"] * p["length"] * np.sin(x[0]),
                p["mass"] * p["length"] ** 2 * x[1],
            ]
        )
        assert grad_e @ np.asarray(pend(jnp.asarray(x), jnp.zeros(1))) == pytest.approx(
            0, abs=1e-12
        )
    # a large swing (through the top and back): 5 s in steps of 5 ms
    xs = np.asarray(simulate(pend, jnp.array([2.0, 1.5]), jnp.zeros((500, 1)), 0.01, substeps=2))
    energy = _pendulum_energy(xs, p)
    scale = p["mass"] * p["gravity"] * p["length"]
    assert np.max(np.abs(energy - energy[0])) < 1e-9 * scale
    assert np.ptp(xs[:, 0]) > 1.0  # it really moved


def test_pendulum_small_oscillation_period():
    """Small swings about the hanging position theta = pi: period 2 pi sqrt(l/g) (rel 1e-4)."""
    length, g = 2.0, 9.81
    pend = pendulum(damping=0.0, length=length, gravity=g)
    dt = 0.01
    xs = np.asarray(simulate(pend, jnp.array([np.pi + 0.01, 0.0]), jnp.zeros((900, 1)), dt))
    phi = xs[:, 0] - np.pi
    up = np.flatnonzero((phi[:-1] < 0) & (phi[1:] >= 0))  # upward zero crossings
    crossings = (up + phi[up] / (phi[up] - phi[up + 1])) * dt  # linear interpolation
    assert len(crossings) >= 3
    # finite amplitude 0.01 lengthens the period by theta0^2 / 16 ~ 6e-6
    np.testing.assert_allclose(np.diff(crossings), 2 * np.pi * math.sqrt(length / g), rtol=1e-4)


def _cartpole_invariants(x, p):
    mc, mp, ell, g = p["cart_mass"], p["pole_mass"], p["pole_length"], p["gravity"]
    theta, v, w = x[..., 1], x[..., 2], x[..., 3]
    momentum = mc * v + mp * (v + ell * w * np.cos(theta))
    energy = (
        0.5 * (mc + mp) * v**2
        + mp * ell * v * w * np.cos(theta)
        + 0.5 * (mp * ell**2 + mp * ell**2 / 3) * w**2  # pivot-to-centre distance l, I_c = m l^2/3
        + mp * g * ell * np.cos(theta)
    )
    return momentum, energy


def test_cartpole_conserves_momentum_and_energy():
    """Uniform pole on a free cart, u = 0: horizontal momentum and energy are constant.

    Pointwise on the rhs: dP/dt = u and dE/dt = u v (the pushing force's power), to 1e-12; along a
    4 s RK4 trajectory (h = 2.5 ms) with the pole swinging through the bottom: drift below
    1e-9 (observed 5e-11; 8e-10 at h = 5 ms).
    """
    cp = cartpole(pole_mass=0.4, pole_length=0.6)
    p = cp.params
    mc, mp, ell = p["cart_mass"], p["pole_mass"], p["pole_length"]
    rng = np.random.default_rng(1)
    for x, u in zip(rng.uniform(-3, 3, (5, 4)), rng.uniform(-5, 5, 5), strict=True):
        theta, v, w = x[1], x[2], x[3]
        a, alpha = np.asarray(cp(jnp.asarray(x), jnp.array([u])))[2:]
        dp = (mc + mp) * a + mp * ell * (alpha * np.cos(theta) - w**2 * np.sin(theta))
        de = (
            (mc + mp) * v * a
            + mp * ell * (a * w + v * alpha) * np.cos(theta)
            - mp * ell * v * w**2 * np.sin(theta)
            + (4.0 / 3.0) * mp * ell**2 * w * alpha
            - mp * GRAVITY * ell * np.sin(theta) * w
        )
        assert dp == pytest.approx(u, abs=1e-12)
        assert de == pytest.approx(u * v, abs=1e-12)
    xs = np.asarray(
        simulate(cp, jnp.array([0.3, 2.5, -0.4, 1.2]), jnp.zeros((400, 1)), 0.01, substeps=4)
    )
    momentum, energy = _cartpole_invariants(xs, p)
    assert np.ptp(xs[:, 1]) > 1.0  # a large swing
    assert np.max(np.abs(momentum - momentum[0])) < 1e-9
    assert np.max(np.abs(energy - energy[0])) < 1e-9


def test_double_integrator_is_exact_with_rk4():
    """x'' = u with a piecewise-constant u: p0 + v0 t + a t^2 / 2 per period, RK4 exact (1e-12)."""
    di = double_integrator(dims=2, max_accel=3.0)
    assert di.state_dim == 4 and di.control_dim == 2
    lower, upper = di.bounds(jnp.float64)
    np.testing.assert_array_equal(lower, [-3.0, -3.0])
    np.testing.assert_array_equal(upper, [3.0, 3.0])
    rng = np.random.default_rng(2)
    controls = rng.uniform(-3, 3, (12, 2))
    x0 = np.array([1.0, -2.0, 0.5, 0.25])
    dt = 0.3
    xs = np.asarray(simulate(di, jnp.asarray(x0), jnp.asarray(controls), dt))
    pos, vel = x0[:2].copy(), x0[2:].copy()
    expected = [x0]
    for a in controls:
        pos, vel = pos + vel * dt + 0.5 * a * dt**2, vel + a * dt
        expected.append(np.concatenate([pos, vel]))
    np.testing.assert_allclose(xs, np.stack(expected), rtol=0, atol=1e-12)


def test_planar_quadrotor_hover_fall_and_spin():
    """Thrusts m g / 2 each: rest (1e-12); zero thrust: y'' = -g; T1 != T2: phi'' = r (T1 - T2) / I.

    Free fall and spin are polynomial in t, so RK4 reproduces them exactly (1e-12).
    """
    quad = planar_quadrotor()
    p = quad.params
    m, g, r, inertia = p["mass"], p["gravity"], p["arm"], p["inertia"]
    lower, upper = quad.bounds(jnp.float64)
    np.testing.assert_array_equal(lower, [0.0, 0.0])
    np.testing.assert_array_equal(upper, [10.0, 10.0])
    dt, steps = 0.05, 20
    t = dt * np.arange(steps + 1)
    # hover anywhere with level attitude
    x0 = jnp.array([1.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    hover = jnp.full((steps, 2), m * g / 2)
    np.testing.assert_allclose(
        simulate(quad, x0, hover, dt), np.tile(x0, (steps + 1, 1)), atol=1e-12
    )
    # free fall, drifting and spinning at constant rates
    x0 = np.array([0.5, 10.0, 0.3, 1.5, 2.0, -0.7])
    xs = np.asarray(simulate(quad, jnp.asarray(x0), jnp.zeros((steps, 2)), dt))
    np.testing.assert_allclose(xs[:, 0], x0[0] + x0[3] * t, atol=1e-12)
    np.testing.assert_allclose(xs[:, 1], x0[1] + x0[4] * t - 0.5 * g * t**2, atol=1e-12)
    np.testing.assert_allclose(xs[:, 2], x0[2] + x0[5] * t, atol=1e-12)
    np.testing.assert_allclose(xs[:, 4], x0[4] - g * t, atol=1e-12)
    # unequal thrusts from rest: constant angular acceleration (right minus left, CCW positive)
    thrusts = np.array([3.0, 2.0])
    alpha = r * (thrusts[1] - thrusts[0]) / inertia
    xs = np.asarray(simulate(quad, jnp.zeros(6), jnp.tile(thrusts, (steps, 1)), dt))
    np.testing.assert_allclose(xs[:, 5], alpha * t, rtol=1e-12)
    np.testing.assert_allclose(xs[:, 2], 0.5 * alpha * t**2, rtol=1e-12)


def test_planar_quadrotor_spin_direction_matches_control_labels():
    """Rigid-body reference: rotors at body x = -r (left) and +r (right) pushing along body y.

    Net force and torque in the world frame (phi counter-clockwise, x right, y up) from
    r_i x F_i; the translational part matches the model, so the angle convention is fixed.
    """
    quad = planar_quadrotor()
    p = quad.params
    phi = 0.4
    u_left, u_right = 3.0, 1.0
    rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    force = np.zeros(2)
    torque = 0.0
    for body_x, thrust in ((-p["arm"], u_left), (p["arm"], u_right)):
        arm_vec = rot @ np.array([body_x, 0.0])
        f = rot @ np.array([0.0, thrust])
        force += f
        torque += arm_vec[0] * f[1] - arm_vec[1] * f[0]
    x = jnp.array([0.0, 0.0, phi, 0.0, 0.0, 0.0])
    xdot = np.asarray(quad(x, jnp.array([u_left, u_right])))
    # translation agrees with the reference (the angle is counter-clockwise) ...
    np.testing.assert_allclose(xdot[3:5], force / p["mass"] - [0.0, p["gravity"]], rtol=1e-12)
    # ... and so should the rotation
    assert xdot[5] == pytest.approx(torque / p["inertia"], rel=1e-12)


def test_adaptive_cruise_control_holds_speed_and_gap_rate():
    """u = f0 + f1 v + f2 v^2 holds v; gap' = v_lead - v; lead_accel a: v_lead and gap quadratic.

    With f2 = 0 and constant u, v(t) = v_inf + (v0 - v_inf) exp(-f1 t / m) (rel 1e-10).
    """
    acc = adaptive_cruise_control()
    p = acc.params
    lower, upper = acc.bounds(jnp.float64)
    bound = 0.3 * p["mass"] * GRAVITY
    np.testing.assert_allclose([lower[0], upper[0]], [-bound, bound], rtol=1e-15)
    assert adaptive_cruise_control(mass=1000.0).control_upper == pytest.approx(
        (0.3 * 1000 * GRAVITY,)
    )
    dt, steps = 0.5, 20
    t = dt * np.arange(steps + 1)
    v, v_lead, gap = 20.0, 24.0, 50.0
    hold = p["f0"] + p["f1"] * v + p["f2"] * v**2
    xs = np.asarray(simulate(acc, jnp.array([v, gap, v_lead]), jnp.full((steps, 1), hold), dt))
    np.testing.assert_allclose(xs[:, 0], v, rtol=1e-13)
    np.testing.assert_allclose(xs[:, 1], gap + (v_lead - v) * t, rtol=1e-13)
    np.testing.assert_allclose(xs[:, 2], v_lead, rtol=1e-13)
    # an accelerating lead car
    a = 0.8
    xs = np.asarray(
        simulate(
            acc,
            jnp.array([v, gap, v_lead]),
            jnp.full((steps, 1), hold),
            dt,
            params={**p, "lead_accel": a},
        )
    )
    np.testing.assert_allclose(xs[:, 2], v_lead + a * t, rtol=1e-13)
    np.testing.assert_allclose(xs[:, 1], gap + (v_lead - v) * t + 0.5 * a * t**2, rtol=1e-13)
    # relaxation to a new speed with linear drag
    linear = acc.with_params(f2=0.0)
    m, f0, f1 = linear.params["mass"], linear.params["f0"], linear.params["f1"]
    force = 150.0
    v_inf = (force - f0) / f1
    xs = np.asarray(
        simulate(linear, jnp.array([v, gap, v_lead]), jnp.full((steps, 1), force), dt, substeps=4)
    )
    np.testing.assert_allclose(xs[:, 0], v_inf + (v - v_inf) * np.exp(-f1 * t / m), rtol=1e-10)


def test_wrap_angle():
    """wrap_angle lands in [-pi, pi) and differs from its input by a multiple of 2 pi (1e-12)."""
    theta = np.concatenate([np.linspace(-20, 20, 401), np.pi * np.arange(-5, 6)])
    wrapped = np.asarray(jax.jit(wrap_angle)(jnp.asarray(theta)))
    assert np.all(wrapped >= -np.pi) and np.all(wrapped < np.pi)
    turns = (theta - wrapped) / (2 * np.pi)
    np.testing.assert_allclose(turns, np.round(turns), atol=1e-12)
    assert float(wrap_angle(np.pi)) == pytest.approx(-np.pi)  # pi maps to -pi
    assert float(wrap_angle(3 * np.pi / 2)) == pytest.approx(-np.pi / 2)
    assert float(wrap_angle(0.3)) == pytest.approx(0.3, abs=1e-15)


# ------------------------------------------------------------------------------------------
# discretize against solve_ivp


@pytest.mark.parametrize(
    ("options", "tol"),
    [
        ({"method": "rk4", "substeps": 20}, 1e-8),  # h = 0.01: C h^4 ~ 1e-9
        pytest.param({"method": "dopri5", "substeps": 10}, 1e-9, marks=pytest.mark.slow),
        pytest.param(
            {"method": "tsit5", "adaptive": True, "rtol": 1e-10, "atol": 1e-12},
            1e-8,
            marks=pytest.mark.slow,
        ),
    ],
    ids=["rk4", "dopri5", "tsit5-adaptive"],
)
def test_discretize_matches_solve_ivp(options, tol):
    """A forced, time-dependent oscillator under zero-order hold vs solve_ivp (DOP853, rtol 1e-12).

    The forcing sin(w t) checks that each period starts at t = k dt and each substep at its time.
    """
    xs = simulate(FORCED, jnp.asarray(FORCED_X0), jnp.asarray(FORCED_U), FORCED_DT, **options)
    np.testing.assert_allclose(xs, _forced_reference(), rtol=0, atol=tol)


def test_rk4_converges_at_fourth_order_and_euler_at_first():
    """Errors vs solve_ivp for substeps 4, 8, 16: observed order log2(e_h / e_h/2) in [3.7, 4.3].

    Euler with substeps 32, 64, 128: order in [0.9, 1.1].
    """

    def errors(method, counts):
        return [
            np.max(
                np.abs(
                    simulate(
                        FORCED,
                        jnp.asarray(FORCED_X0),
                        jnp.asarray(FORCED_U),
                        FORCED_DT,
                        method=method,
                        substeps=n,
                    )
                    - _forced_reference()
                )
            )
            for n in counts
        ]

    rk4 = errors("rk4", (4, 8, 16))
    orders = np.log2(np.array(rk4[:-1]) / np.array(rk4[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), (rk4, orders)
    assert rk4[-1] > 1e-12  # still far above the reference's own error
    euler = errors("euler", (32, 64, 128))
    orders = np.log2(np.array(euler[:-1]) / np.array(euler[1:]))
    assert np.all((orders > 0.9) & (orders < 1.1)), (euler, orders)


STIFF_DT, STIFF_STEPS = 0.2, 5


@pytest.mark.e2e
def test_kvaerno5_solves_a_stiff_linear_ode():
    """dx/dt = -1000 (x - cos t): implicit kvaerno5 (adaptive, rtol 1e-9; ~100 steps in the
    first period, through the transient) vs the closed form and solve_ivp (Radau, rtol 1e-10),
    within 1e-8."""
    controls = jnp.zeros((STIFF_STEPS, 1))
    xs = np.asarray(
        simulate(
            STIFF,
            jnp.zeros(1),
            controls,
            STIFF_DT,
            method="kvaerno5",
            adaptive=True,
            rtol=1e-9,
            atol=1e-11,
            max_solver_steps=256,
        )
    )
    t = STIFF_DT * np.arange(STIFF_STEPS + 1)
    np.testing.assert_allclose(xs[:, 0], _stiff_exact(t), atol=1e-8)
    reference = _ivp_reference(
        STIFF, np.zeros(1), np.zeros((STIFF_STEPS, 1)), STIFF_DT, method="Radau", rtol=1e-10
    )
    np.testing.assert_allclose(reference[:, 0], _stiff_exact(t), atol=1e-9)  # the reference itself
    np.testing.assert_allclose(xs, reference, atol=1e-8)


@pytest.mark.e2e
def test_failed_diffrax_solve_is_nan():
    """An explicit adaptive solver on the stiff ODE is held to |lam h| <~ 3.5 (over 128 steps a
    period here): with max_solver_steps=16 the solve fails and the state is NaN, not a number.
    The same step with room enough succeeds (closed form, 1e-6), and a NaN x0 gives NaN."""
    x0, u = jnp.zeros(1), jnp.zeros(1)
    options = {"method": "tsit5", "adaptive": True, "rtol": 1e-8, "atol": 1e-10}
    starved = jax.jit(discretize(STIFF, STIFF_DT, max_solver_steps=16, **options))
    assert np.all(np.isnan(np.asarray(starved(x0, u, 0.0))))
    roomy = jax.jit(discretize(STIFF, STIFF_DT, max_solver_steps=512, **options))
    assert float(roomy(x0, u, 0.0)[0]) == pytest.approx(_stiff_exact(STIFF_DT), abs=1e-6)
    assert np.isnan(np.asarray(roomy(jnp.full(1, jnp.nan), u, 0.0))).all()


# ------------------------------------------------------------------------------------------
# derivatives through a diffrax step

PEND = pendulum(damping=0.2)
# NumPy at import time: jnp arrays made outside the float64 fixture would be float32
PEND_X = np.array([2.5, -0.8])
PEND_U = np.array([0.6])
WEIGHTS = np.array([1.0, -0.7])


def _pend_args():
    return (
        jnp.asarray(PEND_X),
        jnp.asarray(PEND_U),
        {k: jnp.asarray(v) for k, v in PEND.params.items()},
    )


def _loss(step):
    return lambda x, p: jnp.dot(jnp.asarray(WEIGHTS), step(x, jnp.asarray(PEND_U), 0.3, p))


def _central_difference(f, x, eps=1e-6):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        out[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


@pytest.mark.e2e
def test_adjoints_agree_with_each_other_and_finite_differences():
    """Gradients w.r.t. x0 and every parameter through a tsit5 step (10 fixed substeps):
    "direct" and "recursive" differentiate the same discrete map (rel 1e-12); "backsolve" solves
    the continuous adjoint (rel 1e-7); all agree with central differences at eps 1e-4
    (truncation ~1e-11; at eps 1e-6 rounding is already 3e-10 on the small damping gradient),
    rel 1e-7 + abs 1e-10."""
    x, _, params = _pend_args()
    names = sorted(params)
    grads = {}
    for adjoint in ("direct", "recursive", "backsolve"):
        step = discretize(PEND, 0.2, method="tsit5", substeps=10, adjoint=adjoint)
        gx, gp = jax.jit(jax.grad(_loss(step), argnums=(0, 1)))(x, params)
        grads[adjoint] = np.concatenate([gx, [gp[k] for k in names]])
    loss = jax.jit(_loss(discretize(PEND, 0.2, method="tsit5", substeps=10)))
    fd_x = _central_difference(lambda v: float(loss(jnp.asarray(v), params)), PEND_X, 1e-4)
    values = np.array([PEND.params[k] for k in names])
    fd_p = _central_difference(
        lambda v: float(loss(x, dict(zip(names, map(jnp.asarray, v), strict=True)))), values, 1e-4
    )
    fd = np.concatenate([fd_x, fd_p])
    for adjoint, grad in grads.items():
        rel = 1e-12 if adjoint != "backsolve" else 1e-7
        np.testing.assert_allclose(grad, grads["direct"], rtol=rel, err_msg=adjoint)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-10, err_msg=adjoint)


@pytest.mark.e2e
def test_jacfwd_through_a_direct_adjoint_step():
    """jax.jacfwd (forward mode, as iLQR uses) through adaptive tsit5 with adjoint "direct"
    matches central differences of the step, eps 1e-5 (rel 1e-6), and jax.jacrev (rel 1e-12)."""
    x, u, _ = _pend_args()
    step = discretize(PEND, 0.2, method="tsit5", adaptive=True, rtol=1e-10, atol=1e-12)
    f = jax.jit(lambda x, u: step(x, u, 0.3))
    jac_x, jac_u = jax.jit(jax.jacfwd(f, argnums=(0, 1)))(x, u)
    assert jac_x.shape == (2, 2) and jac_u.shape == (2, 1)
    for j in range(2):
        fd_x = _central_difference(lambda v, j=j: float(f(jnp.asarray(v), u)[j]), PEND_X, 1e-5)
        fd_u = _central_difference(lambda v, j=j: float(f(x, jnp.asarray(v))[j]), PEND_U, 1e-5)
        np.testing.assert_allclose(jac_x[j], fd_x, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(jac_u[j], fd_u, rtol=1e-6, atol=1e-9)
    jac_rev = jax.jit(jax.jacrev(f))(x, u)
    np.testing.assert_allclose(jac_x, jac_rev, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# rollout and simulate

ROLL_STEP = discretize(FORCED, FORCED_DT, method="rk4", substeps=3)


def test_rollout_matches_a_python_loop():
    """rollout(step, x0, controls, params, dt) == x_{k+1} = step(x_k, u_k, k dt, params) (1e-14),
    shape (T + 1, n), row 0 = x0; other params are used; simulate gives the same states."""
    params = {**FORCED.params, "k": 2.5}
    xs = rollout(ROLL_STEP, jnp.asarray(FORCED_X0), jnp.asarray(FORCED_U), params, FORCED_DT)
    assert xs.shape == (len(FORCED_U) + 1, 2)
    step = jax.jit(ROLL_STEP)
    x = jnp.asarray(FORCED_X0)
    expected = [x]
    for k, u in enumerate(FORCED_U):
        x = step(x, jnp.asarray(u), k * FORCED_DT, params)
        expected.append(x)
    np.testing.assert_allclose(xs, np.stack(expected), rtol=1e-14, atol=1e-14)
    sim = simulate(FORCED, FORCED_X0, FORCED_U, FORCED_DT, params, method="rk4", substeps=3)
    np.testing.assert_allclose(sim, xs, rtol=1e-14, atol=1e-14)
    default = rollout(ROLL_STEP, jnp.asarray(FORCED_X0), jnp.asarray(FORCED_U), dt=FORCED_DT)
    assert not np.allclose(default, xs)  # params were not ignored


def test_simulate_under_jit_and_vmap_over_x0():
    """jit(vmap(simulate)) over a batch of x0 equals simulate row by row (1e-14)."""
    x0s = jnp.asarray(np.random.default_rng(3).normal(size=(4, 2)))
    controls = jnp.asarray(FORCED_U)

    def sim(x0):
        return simulate(FORCED, x0, controls, FORCED_DT, substeps=3)

    batched = jax.jit(jax.vmap(sim))(x0s)
    assert batched.shape == (4, len(FORCED_U) + 1, 2)
    for i in range(4):
        np.testing.assert_allclose(batched[i], sim(x0s[i]), rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------------------------------
# Dynamics and argument checks


def test_control_affine_reconstructs_the_rhs():
    """control_affine gives (f, g) with rhs(x, u) = f(x) + g(x) u (1e-12) for the control-affine
    cart-pole, quadrotor and pendulum at random states and controls; g has shape (n, m)."""
    rng = np.random.default_rng(4)
    for model in (cartpole(), planar_quadrotor(), pendulum()):
        xs = jnp.asarray(rng.normal(size=(5, model.state_dim)))
        us = jnp.asarray(rng.normal(size=(5, model.control_dim)))
        f, g = jax.jit(jax.vmap(model.control_affine))(xs)
        assert g.shape == (5, model.state_dim, model.control_dim)
        rhs = jax.jit(jax.vmap(model))(xs, us)
        np.testing.assert_allclose(f + jnp.einsum("bij,bj->bi", g, us), rhs, rtol=1e-12, atol=1e-12)


def test_dynamics_call_with_params_and_bounds():
    """__call__ uses the defaults unless params are passed; with_params replaces only the named
    ones and leaves the original untouched; bounds default to -inf / inf."""
    decay = Dynamics(lambda x, u, t, p: -p["k"] * x + u, 1, 1, {"k": 2.0})
    x, u = jnp.ones(1), jnp.zeros(1)
    assert float(decay(x, u)[0]) == -2.0
    assert float(decay(x, u, 0.0, {"k": 5.0})[0]) == -5.0
    faster = decay.with_params(k=3.0)
    assert float(faster(x, u)[0]) == -3.0
    assert decay.params == {"k": 2.0}
    lower, upper = decay.bounds()
    assert np.isneginf(lower).all() and np.isposinf(upper).all()
    lower, upper = pendulum(max_torque=1.5).bounds()
    assert lower.tolist() == [-1.5] and upper.tolist() == [1.5]


def test_dynamics_rejects_bad_arguments():
    """Unknown parameter names, bound / state_names of the wrong length -> ValueError; a
    non-callable rhs -> TypeError."""
    with pytest.raises(ValueError, match="unknown parameters"):
        pendulum().with_params(lenght=2.0)
    with pytest.raises(ValueError, match="unknown parameters"):
        cartpole(pole_len=0.3)
    rhs = lambda x, u, t, p: x  # noqa: E731
    with pytest.raises(ValueError, match="control_lower"):
        Dynamics(rhs, 2, 2, control_lower=(-1.0,))
    with pytest.raises(ValueError, match="control_upper"):
        Dynamics(rhs, 2, 1, control_upper=(1.0, 2.0))
    with pytest.raises(ValueError, match="state_names"):
        Dynamics(rhs, 2, 1, state_names=("a",))
    with pytest.raises(TypeError, match="callable"):
        Dynamics("not a function", 2, 1)


def test_simulate_and_discretize_reject_bad_arguments():
    """simulate: x0 / controls of the wrong shape; discretize: dt <= 0, an unknown method or
    adjoint, substeps < 1, adaptive with a hand-written method -> ValueError."""
    di = double_integrator()
    with pytest.raises(ValueError, match="x0"):
        simulate(di, jnp.zeros(3), jnp.zeros((5, 1)), 0.1)
    with pytest.raises(ValueError, match="x0"):
        simulate(di, jnp.zeros((1, 2)), jnp.zeros((5, 1)), 0.1)
    with pytest.raises(ValueError, match="controls"):
        simulate(di, jnp.zeros(2), jnp.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match="controls"):
        simulate(di, jnp.zeros(2), jnp.zeros(5), 0.1)
    for dt in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="dt"):
            discretize(di, dt)
    with pytest.raises(ValueError, match="method"):
        discretize(di, 0.1, method="rk45")
    with pytest.raises(ValueError, match="adjoint"):
        discretize(di, 0.1, method="tsit5", adjoint="forward")
    with pytest.raises(ValueError, match="substeps"):
        discretize(di, 0.1, substeps=0)
    for method in ("rk4", "euler"):
        with pytest.raises(ValueError, match="adaptive"):
            discretize(di, 0.1, method=method, adaptive=True)
    with pytest.raises(ValueError, match="method"):
        simulate(di, jnp.zeros(2), jnp.zeros((5, 1)), 0.1, method="rk5")


def test_simulate_accepts_an_integer_initial_state():
    """x0 = [0, 0] (a list of ints) should integrate like [0.0, 0.0]: x'' = 1.5 from rest gives
    p = 1.5 t^2 / 2, v = 1.5 t exactly (1e-12)."""
    xs = simulate(double_integrator(), [0, 0], [[1.5]], 0.1)
    np.testing.assert_allclose(xs, [[0.0, 0.0], [0.0075, 0.15]], atol=1e-12)


def test_nan_initial_state_propagates_under_jit():
    """A NaN in x0 gives NaN states after it under jit (RK4), with no exception (the adaptive
    diffrax case is in test_failed_diffrax_solve_is_nan)."""
    x0 = jnp.array([jnp.nan, 0.0])
    sim = jax.jit(lambda x: simulate(FORCED, x, jnp.asarray(FORCED_U), FORCED_DT))
    xs = np.asarray(sim(x0))
    assert xs.shape == (len(FORCED_U) + 1, 2)
    assert np.isnan(xs[1:]).all()
