"""CBF safety filter: the sample-and-hold rows (their rates against finite differences along
the trajectory, the intersample guarantee against a fine integration, the obstacle bound
against second derivatives by autodiff), implicit derivatives in the state, model and barrier
parameters against central finite differences, a closed-loop cruise-control episode, jit /
vmap / no recompilation, infeasible and NaN states, bad input. float64.

The QP itself is tested in ``test_control_safety_qp.py``. Tolerances are stated at each
assertion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.control import Dynamics, adaptive_cruise_control, discretize, double_integrator
from opifex.control._barriers import (
    ControlBarrier,
    circular_obstacle_barrier,
    circular_obstacle_bound,
    time_headway_barrier,
)
from opifex.control._safety import SafetyFilter


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _acc_filter():
    return SafetyFilter(adaptive_cruise_control(), [time_headway_barrier(1.8)], alpha=1.0)


def _central(f, args, index, key=None, eps=1e-5):
    """Central differences of the scalar f in args[index] (or in its entry ``key``)."""
    arg = args[index] if key is None else args[index][key]
    flat = np.asarray(arg, float).ravel()
    out = np.zeros_like(flat)
    for k in range(flat.size):
        values = []
        for sign in (1.0, -1.0):
            moved = jnp.asarray((flat + sign * eps * np.eye(flat.size)[k]).reshape(np.shape(arg)))
            new = list(args)
            new[index] = moved if key is None else {**args[index], key: moved}
            values.append(float(f(*new)))
        out[k] = (values[0] - values[1]) / (2 * eps)
    return out


@pytest.mark.e2e
def test_filter_gradients_in_state_params_and_barrier_params():
    safety = _acc_filter()
    x = jnp.array([22.0, 45.0, 13.89])
    u_nom = jnp.array([2000.0])
    params = {k: jnp.asarray(v) for k, v in safety.dynamics.params.items()}
    headway = {"time_headway": jnp.asarray(1.8)}
    assert float(safety.filter(x, u_nom).multipliers[0]) > 0  # the barrier is active

    @jax.jit
    def control(x, params, headway, u_nom):
        return safety.filter(x, u_nom, 0.0, params, (headway,)).control[0]

    args = (x, params, headway, u_nom)
    gx, gp, gb, g_nom = jax.jit(jax.grad(control, argnums=(0, 1, 2, 3)))(*args)
    # central differences (float64, eps 1e-5 relative): 1e-6 relative agreement
    np.testing.assert_allclose(gx, _central(control, args, 0), rtol=1e-6, atol=1e-4)
    for name in ("mass", "f1"):
        step = 1e-5 * float(params[name])
        numeric = _central(control, args, 1, name, eps=step)
        np.testing.assert_allclose(gp[name], numeric, rtol=1e-6)
    numeric = _central(control, args, 2, "time_headway")
    np.testing.assert_allclose(gb["time_headway"], numeric, rtol=1e-6)
    # u_nom: the barrier binds, so the filtered control does not move with the nominal one
    assert abs(float(g_nom[0])) < 1e-12


@pytest.mark.e2e
def test_sample_and_hold_filter_gradients_in_state_and_obstacle():
    """Two discs, both rows of one disc in the QP (the end-of-period row binds): derivatives
    in the state and the disc's centre and radius against central differences."""
    safety = SafetyFilter(
        double_integrator(2, max_accel=2.0),
        [circular_obstacle_barrier([3.0, 0.3], 1.0, 0.5)] * 2,
        alpha=2.0,
        period=0.05,
        intersample_bound=[circular_obstacle_bound(2.0, 2.0, 0.05)] * 2,
    )
    far = {"center": jnp.array([9.0, 5.0]), "radius": jnp.asarray(0.5), "gain": 0.5}
    near = {"center": jnp.array([3.0, 0.3]), "radius": jnp.asarray(1.0), "gain": 0.5}
    x, u_nom = jnp.array([1.98, 0.5, 0.0, 0.1]), jnp.array([2.0, 0.0])  # h2 = 0.08

    @jax.jit
    def control(x, near):
        return safety.filter(x, u_nom, 0.0, None, (near, far)).control @ jnp.array([1.0, -0.7])

    result = safety.filter(x, u_nom, 0.0, None, (near, far))
    assert bool(result.converged) and float(result.multipliers[2]) > 1e-3  # end row binds
    gx, g_near = jax.jit(jax.grad(control, argnums=(0, 1)))(x, near)
    np.testing.assert_allclose(gx, _central(control, (x, near), 0), rtol=1e-6, atol=1e-8)
    for key in ("center", "radius"):
        numeric = _central(control, (x, near), 1, key)
        np.testing.assert_allclose(g_near[key], numeric, rtol=1e-6, atol=1e-8)


def test_closed_loop_cruise_control_stays_safe():
    acc = adaptive_cruise_control()
    safety = _acc_filter()
    mass = acc.params["mass"]
    step = discretize(acc, 0.1, substeps=10)

    @jax.jit
    def episode(x0):
        def advance(x, _):
            drag = 0.1 + 5.0 * x[0] + 0.25 * x[0] ** 2
            u_nom = jnp.array([mass * 2.0 * (24.0 - x[0]) + drag])  # speed tracking, 24 m/s
            result = safety.filter(x, u_nom)
            x_next = step(x, result.control, 0.0, None)
            return x_next, (x_next[1] - 1.8 * x_next[0], result.feasible)

        return jax.lax.scan(advance, x0, None, length=300)[1]

    h, feasible = episode(jnp.array([20.0, 100.0, 13.89]))
    assert float(h.min()) >= -1e-3
    assert bool(feasible.all()), np.where(~np.asarray(feasible))
    assert abs(float(h[-1])) < 0.05  # it ends following at the 1.8 s headway


@pytest.mark.e2e
def test_obstacle_barrier_two_obstacles_jit_vmap_and_no_recompilation():
    safety = SafetyFilter(
        double_integrator(2, max_accel=2.0),
        [circular_obstacle_barrier([3.0, 0.2], 1.0), circular_obstacle_barrier([3.0, -2.0], 1.0)],
        alpha=2.0,
    )
    traces = []

    @jax.jit
    def run(x, u_nom, params):
        traces.append(1)
        return jax.vmap(lambda x, u, p: safety.filter(x, u, barrier_params=p))(x, u_nom, params)

    x = jnp.array([[1.5, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    u_nom = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    params = jax.tree.map(lambda v: jnp.stack([jnp.asarray(v)] * 2), safety.default_barrier_params)
    first = run(x, u_nom, params)
    second = run(x + 0.01, u_nom, params)
    assert len(traces) == 1
    assert first.control.shape == (2, 2) and second.barrier.shape == (2, 2)
    assert bool(first.feasible.all()) and bool(first.converged.all())
    assert np.all(np.asarray(first.constraint) >= -1e-4)
    assert float(first.control[0, 0]) < 2.0  # brakes before the first obstacle
    # the same answer one at a time
    single = jax.jit(safety.filter)(x[0], u_nom[0])
    np.testing.assert_allclose(single.control, first.control[0], atol=1e-12)


def test_nan_state_and_infeasible_state_are_flagged():
    safety = _acc_filter()
    run = jax.jit(safety.filter)
    nan = run(jnp.array([jnp.nan, 40.0, 13.89]), jnp.array([0.0]))
    assert not bool(nan.feasible) and not bool(nan.converged)
    nan = run(jnp.array([20.0, 40.0, 13.89]), jnp.array([jnp.nan]))
    assert not bool(nan.feasible)
    # deep inside the unsafe set, closing fast: even full braking breaks the condition
    bad = run(jnp.array([30.0, 10.0, 10.0]), jnp.array([0.0]))
    assert not bool(bad.feasible)
    bound = safety.control_lower[0]
    assert float(bad.control[0]) == pytest.approx(bound)  # the best effort: full braking
    assert float(bad.constraint[0]) < 0


@pytest.mark.e2e
def test_custom_class_k_and_weights():
    limit = ControlBarrier(lambda x, p: 1.0 - x[1])  # velocity <= 1 for a double integrator
    cubic = SafetyFilter(double_integrator(), [limit], alpha=lambda h: h**3)
    assert cubic.filter(jnp.array([0.0, 0.5]), jnp.array([2.0])).control.tolist() == [0.125]
    weighted = SafetyFilter(
        double_integrator(2),
        [lambda x: 1.0 - x[2] - x[3]],  # vx + vy <= 1
        control_weight=(1.0, 4.0),
    )
    result = weighted.filter(jnp.array([0.0, 0.0, 0.5, 0.5]), jnp.array([1.0, 1.0]))
    # minimise (u1-1)^2 + 4 (u2-1)^2 s.t. u1 + u2 <= 0 (alpha h = 0): u = (-0.6, 0.6)
    np.testing.assert_allclose(result.control, [-0.6, 0.6], atol=1e-5)


def test_bad_input():
    acc = adaptive_cruise_control()
    with pytest.raises(TypeError, match="barriers\\[0\\]"):
        SafetyFilter(acc, [3.0])
    with pytest.raises(TypeError, match="sequence"):
        SafetyFilter(acc, time_headway_barrier())
    with pytest.raises(ValueError, match="empty"):
        SafetyFilter(acc, [])
    with pytest.raises(ValueError, match="alpha"):
        SafetyFilter(acc, [time_headway_barrier()], alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        SafetyFilter(acc, [time_headway_barrier()], alpha=(1.0, 2.0))
    with pytest.raises(TypeError, match="alpha"):
        SafetyFilter(acc, [time_headway_barrier()], alpha="linear")
    with pytest.raises(ValueError, match="control_weight"):
        SafetyFilter(acc, [time_headway_barrier()], control_weight=-1.0)
    with pytest.raises(ValueError, match="exceeds"):
        SafetyFilter(acc, [time_headway_barrier()], control_lower=(1.0,), control_upper=(0.0,))
    with pytest.raises(TypeError, match="unexpected keyword"):
        SafetyFilter(acc, [time_headway_barrier()], solver="osqp")
    with pytest.raises(TypeError, match="Dynamics"):
        SafetyFilter(lambda x: x, [time_headway_barrier()])
    with pytest.raises(TypeError, match="callable"):
        ControlBarrier(1.0)
    with pytest.raises(ValueError, match="time_headway"):
        time_headway_barrier(-1.0)
    safety = _acc_filter()
    with pytest.raises(ValueError, match="x must have shape"):
        safety.filter(jnp.zeros(2), jnp.zeros(1))
    with pytest.raises(ValueError, match="u_nom must have shape"):
        safety.filter(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="barrier_params"):
        safety.filter(jnp.zeros(3), jnp.zeros(1), barrier_params=({}, {}))
    vector = SafetyFilter(acc, [ControlBarrier(lambda x, p: x)])
    with pytest.raises(ValueError, match="scalar"):
        vector.filter(jnp.zeros(3), jnp.zeros(1))
    with pytest.raises(ValueError, match="go together"):
        SafetyFilter(acc, [time_headway_barrier()], period=0.1)
    with pytest.raises(ValueError, match="go together"):
        SafetyFilter(acc, [time_headway_barrier()], intersample_bound=1.0)
    with pytest.raises(ValueError, match="period"):
        SafetyFilter(acc, [time_headway_barrier()], period=0.0, intersample_bound=1.0)
    with pytest.raises(ValueError, match="intersample_bound"):
        SafetyFilter(acc, [time_headway_barrier()], period=0.1, intersample_bound=-1.0)
    with pytest.raises(ValueError, match="intersample_bound"):
        SafetyFilter(acc, [time_headway_barrier()], period=0.1, intersample_bound=(1.0, 2.0))
    with pytest.raises(ValueError, match="max_accel"):
        circular_obstacle_bound(1.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="radius"):
        circular_obstacle_barrier([0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="state of shape"):
        circular_obstacle_barrier([0.0, 0.0], 1.0)(jnp.zeros(3))


def _held_psi(safety, x0, u, alpha, period, points=200):
    """psi = grad h . f(x, u) + alpha h along the held control, by fine RK4 (the reference)."""
    step = discretize(safety.dynamics, period / points)
    barrier = safety.barriers[0]

    def psi(x):
        value, grad = jax.value_and_grad(barrier)(x)
        return grad @ safety.dynamics(x, u) + alpha * value

    def advance(x, _):
        return step(x, u, 0.0, None), psi(x)

    return np.asarray(jax.lax.scan(advance, x0, None, length=points + 1)[1])


@pytest.mark.e2e
def test_end_of_period_rows_match_the_rate_along_the_trajectory():
    """dpsi/dt = c + l u + u' H u / 2 (rows' ingredients) against central differences in time
    along the held control, on a unicycle-like model whose Lg h varies along g (H != 0)."""

    def rhs(x, u, t, p):  # heading x[2] turned by u[1], speed u[0]; a slow drift in t
        return jnp.stack([u[0] * jnp.cos(x[2]) + 0.1 * t, u[0] * jnp.sin(x[2]), u[1]])

    model = Dynamics(rhs, 3, 2, {}, (-1.0, -2.0), (1.0, 2.0))
    wall = ControlBarrier(lambda x, p: 4.0 - x[0] ** 2 - 0.5 * x[1] ** 2)
    safety = SafetyFilter(model, [wall], alpha=1.5, period=0.1, intersample_bound=0.0)
    x, t = jnp.array([0.7, -0.4, 0.3]), 0.2
    c, lin, hess = safety._end_rows(x, t, None, (None,), jnp.float64)
    assert float(jnp.abs(hess).max()) > 0.1  # the quadratic part is there

    def psi(y, s, u):
        value, grad = jax.value_and_grad(wall)(y)
        return grad @ model(y, u, s) + 1.5 * value

    def rk4(y, u, s, h):  # one classic RK4 step of length h (negative: backwards)
        k1 = model(y, u, s)
        k2 = model(y + 0.5 * h * k1, u, s + 0.5 * h)
        k3 = model(y + 0.5 * h * k2, u, s + 0.5 * h)
        k4 = model(y + h * k3, u, s + h)
        return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    eps = 1e-4
    for u in (jnp.array([0.8, -1.5]), jnp.array([-0.3, 0.7])):
        ahead, behind = rk4(x, u, t, eps), rk4(x, u, t, -eps)
        numeric = (psi(ahead, t + eps, u) - psi(behind, t - eps, u)) / (2 * eps)
        predicted = c[0] + lin[0] @ u + 0.5 * u @ hess[0] @ u
        assert float(predicted) == pytest.approx(float(numeric), rel=1e-6)


@pytest.mark.e2e
def test_sample_and_hold_rows_keep_psi_nonnegative_over_the_period():
    """Cruise control at a binding state: the held control of the sample-and-hold filter keeps
    psi >= 0 over the whole period (fine RK4, 200 points); the continuous-only filter's does
    not (psi = 0 at the sample, then negative)."""
    acc = adaptive_cruise_control()
    alpha, period = 1.0, 0.5  # a long period makes the drift visible
    bound = 3.4  # >= |d2 psi/dt2| for speeds in [0, 35] m/s (bench_cbf.acc_intersample_bound)
    x0 = jnp.array([20.0, 45.0, 13.89])  # h = 9 m, closing at 6.1 m/s
    u_nom = jnp.array([4000.0])
    continuous = SafetyFilter(acc, [time_headway_barrier()], alpha=alpha)
    held = SafetyFilter(
        acc, [time_headway_barrier()], alpha=alpha, period=period, intersample_bound=bound
    )
    psi_continuous = _held_psi(continuous, x0, continuous.filter(x0, u_nom).control, alpha, period)
    result = held.filter(x0, u_nom)
    assert bool(result.feasible) and bool(result.converged)
    psi_held = _held_psi(held, x0, result.control, alpha, period)
    assert abs(psi_continuous[0]) < 1e-9 and psi_continuous.min() < -0.1
    assert psi_held.min() >= -1e-9
    # the end-of-period row is the one that binds, with the M T^2 / 2 margin
    assert float(result.multipliers[1]) > 0 and float(result.constraint[1]) == pytest.approx(
        0.0, abs=1e-9
    )


def test_obstacle_bound_covers_the_second_derivative():
    """circular_obstacle_bound >= -d2 psi/dt2 over one period, by autodiff of the exact
    double-integrator trajectory, for random states and box controls (2-D, 400 samples)."""
    alpha, max_accel, period, gain = 2.0, 2.0, 0.05, 0.5
    obstacle = circular_obstacle_barrier([1.0, -0.5], 0.8, gain)
    bound = circular_obstacle_bound(alpha, max_accel, period)
    model = double_integrator(2)

    def psi_at(s, x0, u):  # the state after s seconds of u, exactly
        x = jnp.concatenate([x0[:2] + s * x0[2:] + 0.5 * s**2 * u, x0[2:] + s * u])
        value, grad = jax.value_and_grad(obstacle)(x)
        return grad @ model(x, u) + alpha * value

    second = jax.jit(jax.vmap(jax.grad(jax.grad(psi_at))))
    rng = np.random.default_rng(5)
    x0 = jnp.asarray(
        np.concatenate([rng.uniform(-4, 4, (400, 2)), rng.uniform(-4, 4, (400, 2))], 1)
    )
    u = jnp.asarray(rng.uniform(-max_accel, max_accel, (400, 2)))
    s = jnp.asarray(rng.uniform(0, period, 400))
    margins = jax.vmap(lambda x: bound(x, obstacle.params))(x0) + second(s, x0, u)
    assert float(margins.min()) >= 0.0
