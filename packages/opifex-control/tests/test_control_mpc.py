"""Receding-horizon control: warm starts, budgets, fallbacks and closed-loop swing-ups.

References: the physics (the pendulum ends upright and stays there), the problem's own cost
(a budget-limited iterate is never worse than the plan it started from), the control bounds,
and JAX's compilation cache (a new budget does not recompile). float64 throughout.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.control import (
    ILQR,
    SWING_UPS,
    DirectShooting,
    MPCController,
    TrajectoryProblem,
    closed_loop,
    discretize,
    mpc_init,
    mpc_step,
    pendulum,
    quadratic_cost,
    swing_up,
    swing_up_model,
    wrap_angle,
)
from opifex.control._mpc import _warm_start
from opifex.core import SolveStatus


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@functools.cache
def _problem(horizon: int = 15) -> TrajectoryProblem:
    cost = quadratic_cost([1.0, 0.1], [0.05], final_weight=[10.0, 1.0])
    return TrajectoryProblem.from_dynamics(pendulum(max_torque=2.0), cost, horizon=horizon, dt=0.1)


@functools.cache
def _controller() -> MPCController:
    """One compiled controller shared by the tests (budgets up to 8)."""
    return MPCController(_problem(), max_steps=4, max_budget=8)


def _jitted_step():
    """``jit(mpc_step)`` with a trace of 8: the controller's own, so one compilation serves all."""
    return _controller()._step


@pytest.mark.e2e  # 4-6 s cold (compilation)
def test_the_plan_is_the_solution_shifted_by_one_period():
    problem = _problem()
    x = jnp.array([0.6, -0.2])
    u, state = _jitted_step()(
        mpc_init(problem), x, problem.default_theta, jnp.asarray(8, jnp.int32)
    )
    assert int(state.status) == SolveStatus.SUCCESS
    solution = jnp.concatenate([u[None], state.plan[:-1]])  # undo the shift
    # the unshifted plan is a stationary point: its projected gradient vanishes
    residual = problem.optimality(solution, x, problem.default_theta)
    assert float(jnp.max(jnp.abs(residual))) < 1e-8
    np.testing.assert_allclose(state.plan[-1], state.plan[-2])  # the last control repeated
    assert not bool(state.used_fallback)


def test_the_feedback_warm_start_is_the_plan_on_the_predicted_state_and_corrects_off_it():
    problem = _problem()
    theta = problem.default_theta
    x = jnp.array([0.1, -0.2])  # inside the bound's reach: the gains are not clamped
    _, state = _jitted_step()(mpc_init(problem), x, theta, jnp.asarray(8, jnp.int32))
    # where the model says the system will be: the warm start is the shifted plan itself
    on_plan = _warm_start(problem, state, state.states[0], theta)
    np.testing.assert_allclose(on_plan, state.plan, atol=1e-12)
    # elsewhere: the plan corrected by the gains, clipped, as a hand-written policy rollout
    off = state.states[0] + jnp.array([0.05, -0.1])
    xs, expected = off, []
    for t in range(problem.horizon):
        k, x_ref = state.gains[t], state.states[t]
        u = jnp.clip(state.plan[t] + k @ (xs - x_ref), -2.0, 2.0)
        expected.append(u)
        xs = problem.step(xs, u, t * problem.dt, theta[0])
    np.testing.assert_allclose(
        _warm_start(problem, state, off, theta), jnp.stack(expected), atol=1e-12
    )
    assert float(jnp.max(jnp.abs(state.gains))) > 0.1  # the gains are not trivially zero


def test_a_short_budget_returns_a_feasible_iterate_no_worse_than_the_start():
    problem = _problem()
    theta = problem.default_theta
    x = jnp.array([math.pi - 0.3, 0.0])
    start = mpc_init(problem)
    u, state = _jitted_step()(start, x, theta, jnp.asarray(1, jnp.int32))
    assert int(state.status) == SolveStatus.MAX_STEPS_REACHED
    assert int(state.num_steps) == 1
    planned = jnp.concatenate([u[None], state.plan[:-1]])  # undo the shift
    assert float(problem.total_cost(planned, x, theta)) <= float(
        problem.total_cost(start.plan, x, theta)
    )
    assert np.all(np.abs(np.asarray(planned)) <= 2.0 + 1e-12)
    np.testing.assert_allclose(float(state.value), float(problem.total_cost(planned, x, theta)))


def test_a_new_budget_does_not_recompile_and_is_honoured():
    controller = _controller()
    controller.reset()
    x = jnp.array([math.pi - 0.5, 0.0])
    controller.step(x, max_steps=4)
    compiled = controller._step._cache_size()
    for budget in (1, 3, 8, 2):
        controller.step(x, max_steps=budget)
        assert int(controller.state.num_steps) <= budget
    assert controller._step._cache_size() == compiled


def test_a_nonfinite_solve_applies_the_fallback():
    problem = _problem()
    params, cost = problem.default_theta
    broken = ({**params, "mass": jnp.nan}, cost)
    state = mpc_init(problem, jnp.full((problem.horizon, 1), 0.7))
    x = jnp.array([0.4, 0.0])
    u, new_state = _jitted_step()(state, x, broken, jnp.asarray(4, jnp.int32))
    assert bool(new_state.used_fallback)
    assert int(new_state.status) == SolveStatus.NONFINITE
    np.testing.assert_allclose(u, [0.7])  # the previous plan's control for this period
    assert np.all(np.isfinite(np.asarray(new_state.plan)))


@pytest.mark.e2e
def test_a_callers_fallback_is_clipped_to_the_bounds():
    problem = _problem()
    params, cost = problem.default_theta
    solver = ILQR(problem)
    x = jnp.array([0.4, 0.0])
    u, state = mpc_step(
        solver,
        mpc_init(problem),
        x,
        ({**params, "mass": jnp.nan}, cost),
        3,
        trace_length=3,
        fallback=lambda x: jnp.array([-50.0]),
    )
    assert bool(state.used_fallback)
    np.testing.assert_allclose(u, [-2.0])


def test_controller_rejects_bad_input():
    controller = _controller()
    with pytest.raises(ValueError, match="shape"):
        controller.step(jnp.zeros(3))
    with pytest.raises(ValueError, match="max_steps"):
        controller.step(jnp.zeros(2), max_steps=9)
    with pytest.raises(ValueError, match="max_steps"):
        controller.step(jnp.zeros(2), max_steps=0)
    with pytest.raises(ValueError, match="solver"):
        MPCController(_problem(), solver="sqp")
    with pytest.raises(ValueError, match="same TrajectoryProblem"):
        MPCController(_problem(), solver=ILQR(_problem(16)))
    with pytest.raises(ValueError, match="warm_start"):
        MPCController(_problem(), warm_start="guess")
    with pytest.raises(ValueError, match="max_budget"):
        MPCController(_problem(), max_steps=5, max_budget=3)
    assert controller.status_name in SolveStatus.__members__


@pytest.mark.e2e
def test_direct_shooting_runs_in_the_controller():
    problem = _problem()
    controller = MPCController(problem, DirectShooting(problem), max_steps=20)
    u = controller.step(jnp.array([0.3, 0.0]))
    reference = ILQR(problem).run(jnp.zeros((problem.horizon, 1)), jnp.array([0.3, 0.0])).params
    np.testing.assert_allclose(u, reference[0], atol=1e-4)


@pytest.mark.e2e
def test_closed_loop_swing_up_from_hanging_under_the_torque_bound():
    """|u| <= 5 N m (half of m g l): the controller must pump; then the pendulum stays up.

    No plan to start from (zeros) and 10 iterations per period.
    """
    model = pendulum(max_torque=5.0)
    cost = quadratic_cost([1.0, 0.1], [0.01], final_weight=[100.0, 10.0])
    problem = TrajectoryProblem.from_dynamics(model, cost, horizon=50, dt=0.08)
    plant = discretize(model, 0.08, substeps=8)  # a finer integration than the planner's
    episode = jax.jit(
        lambda x0: closed_loop(
            ILQR(problem),
            lambda x, u, t: plant(x, u, t),
            x0,
            120,
            problem.default_theta,
            10,
            trace_length=10,
        )
    )(jnp.array([math.pi, 0.0]))
    angle = np.abs(np.asarray(wrap_angle(episode.states[:, 0])))
    assert angle[0] > 3.0
    assert np.all(angle[-50:] < 0.05)  # the last 4 s upright
    assert np.max(np.abs(np.asarray(episode.controls))) <= 5.0 + 1e-12
    assert not np.any(np.asarray(episode.used_fallback))


@pytest.mark.e2e
@pytest.mark.parametrize(
    "system, name, factor", [("pendulum", "mass", 0.9), ("cartpole", "pole_mass", 1.1)]
)
def test_swing_up_with_a_ten_percent_wrong_model(system, name, factor):
    """The planner's model is 10 % off the plant; the feedback warm start keeps MPC on track."""
    task = SWING_UPS[system]
    truth = swing_up_model(system)
    problem, x0 = swing_up(system, **{name: truth.params[name] * factor})
    plant = discretize(truth, task.dt, substeps=8)
    periods = round(12.0 / task.dt)
    episode = jax.jit(
        lambda x0: closed_loop(
            ILQR(problem),
            lambda x, u, t: plant(x, u, t),
            x0,
            periods,
            problem.default_theta,
            10,
            trace_length=10,
        )
    )(x0)
    angle = np.abs(np.asarray(wrap_angle(episode.states[:, task.angle_index])))
    assert np.all(angle[-round(2.0 / task.dt) :] < 0.05)  # the last 2 s upright
