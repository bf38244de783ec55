"""iLQR / box-DDP and direct shooting against independent references.

References: the finite-horizon discrete Riccati recursion (unbounded linear-quadratic
problems), scipy's L-BFGS-B on the same cost (bounded nonlinear problems), brute-force box QPs,
central finite differences and unrolled differentiation (gradients through the solution).
Everything numeric runs in float64 (``jax.enable_x64`` around each test) unless it says float32.
Each iLQR solve compiles for seconds on one core, so most tests run in the end-to-end job (e2e).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from opifex.control import (
    ILQR,
    DirectShooting,
    ILQRConfig,
    TrajectoryProblem,
    cartpole,
    double_integrator,
    pendulum,
    quadratic_cost,
)
from opifex.control._box_qp import box_qp
from opifex.core import run_solver


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _lq_problem(horizon=15, dt=0.1, bounded=False):
    model = double_integrator(max_accel=0.5)
    cost = quadratic_cost([1.0, 0.2], [0.05], final_weight=[5.0, 1.0])
    return TrajectoryProblem.from_dynamics(model, cost, horizon=horizon, dt=dt, bounded=bounded)


@functools.cache
def _pendulum_problem(horizon=20, max_torque=1.0):
    cost = quadratic_cost([1.0, 0.1], [0.1], final_weight=[10.0, 1.0])
    return TrajectoryProblem.from_dynamics(
        pendulum(max_torque=max_torque), cost, horizon=horizon, dt=0.1
    )


def _theta(problem):
    dynamics_params, cost = problem.default_theta
    return {k: jnp.asarray(v) for k, v in dynamics_params.items()}, cost


def _riccati_controls(problem, x0):
    """Open-loop optimal controls of an unbounded LQ problem from the discrete Riccati recursion."""
    _, cost = problem.default_theta
    q, r, qf = (np.asarray(w) for w in (cost.state_weight, cost.control_weight, cost.final_weight))
    n, m = problem.state_dim, problem.control_dim
    a = np.asarray(jax.jacfwd(problem.step, 0)(jnp.zeros(n), jnp.zeros(m), 0.0, {}))
    b = np.asarray(jax.jacfwd(problem.step, 1)(jnp.zeros(n), jnp.zeros(m), 0.0, {}))
    p, gains = qf, []
    for _ in range(problem.horizon):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
        gains.append(k)
    x, controls = np.asarray(x0), []
    for k in reversed(gains):
        u = -k @ x
        controls.append(u)
        x = a @ x + b @ u
    return np.stack(controls)


@pytest.mark.e2e
def test_unbounded_lq_matches_the_riccati_solution():
    """A linear-quadratic problem is solved exactly by one iLQR iteration (Riccati reference)."""
    problem = _lq_problem()
    x0 = jnp.array([1.0, -0.5])
    result = ILQR(problem).run(jnp.zeros((15, 1)), x0)
    assert result.status_name == "SUCCESS"
    assert int(result.num_steps) <= 6  # regularised (mu from 1e-3) steps converge fast
    np.testing.assert_allclose(result.params, _riccati_controls(problem, x0), atol=1e-10)


def _scipy_reference(problem, x0, guess):
    """L-BFGS-B on the same cost with the same bounds (gradients by JAX), tight tolerances."""
    theta = _theta(problem)
    shape = (problem.horizon, problem.control_dim)
    fun = jax.jit(jax.value_and_grad(lambda u: problem.total_cost(u.reshape(shape), x0, theta)))
    lower, upper = problem.bounds(jnp.float64)
    bounds = list(zip(np.ravel(lower), np.ravel(upper), strict=True))
    res = scipy.optimize.minimize(
        lambda u: tuple(np.asarray(v, float) for v in fun(jnp.asarray(u))),
        np.ravel(guess),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 5000},
    )
    return res.fun, res.x.reshape(shape)


@pytest.mark.e2e
def test_bounded_pendulum_matches_scipy_lbfgsb_with_active_bounds():
    """Box-DDP reaches the same local minimum as scipy's L-BFGS-B, with bounds active."""
    problem = _pendulum_problem()
    x0 = jnp.array([0.8, 0.0])
    guess = jnp.zeros((20, 1))
    result = ILQR(problem).run(guess, x0, _theta(problem))
    reference_cost, reference_controls = _scipy_reference(problem, x0, guess)
    assert result.status_name == "SUCCESS"
    assert np.sum(np.isclose(np.abs(result.params), 1.0)) >= 2  # the torque bound binds
    np.testing.assert_allclose(float(result.value), reference_cost, rtol=1e-9)
    np.testing.assert_allclose(result.params, reference_controls, atol=1e-4)
    assert float(result.grad_norm) < 1e-6


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["lbfgs", "gauss_newton"])
def test_direct_shooting_agrees_with_ilqr(method):
    """Direct shooting (opifex-second-order inside) finds iLQR's minimum on a bounded problem."""
    problem = _pendulum_problem(max_torque=2.0)
    x0 = jnp.array([0.5, 0.0])
    guess = jnp.zeros((20, 1))
    ilqr = ILQR(problem).run(guess, x0)
    shooting = DirectShooting(problem, method).run(guess, x0, max_steps=2000)
    assert shooting.status_name == "SUCCESS", shooting.message
    np.testing.assert_allclose(float(shooting.value), float(ilqr.value), rtol=1e-6)


@pytest.mark.e2e
def test_box_qp_matches_brute_force_over_active_sets():
    """Projected Newton's answer equals the best KKT point over every active set (3 variables)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        root = rng.normal(size=(3, 3))
        hessian = root @ root.T + 0.1 * np.eye(3)
        gradient = rng.normal(size=3) * 3
        lower, upper = -np.ones(3), np.ones(3)
        solution = box_qp(
            jnp.asarray(hessian),
            jnp.asarray(gradient),
            jnp.asarray(lower),
            jnp.asarray(upper),
            jnp.zeros(3),
            iterations=20,
        )
        best = np.inf
        for pattern in itertools.product((-1, 0, 1), repeat=3):  # at lower / free / at upper
            x = np.where(np.array(pattern) < 0, lower, upper).astype(float)
            free = np.array(pattern) == 0
            if free.any():
                rhs = -(gradient[free] + hessian[np.ix_(free, ~free)] @ x[~free])
                x[free] = np.linalg.solve(hessian[np.ix_(free, free)], rhs)
            if np.all(x >= lower - 1e-12) and np.all(x <= upper + 1e-12):
                best = min(best, 0.5 * x @ hessian @ x + gradient @ x)
        x = np.asarray(solution.x)
        assert 0.5 * x @ hessian @ x + gradient @ x == pytest.approx(best, abs=1e-10)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _solution_cost(problem, x0, theta, adjoint):
    result = run_solver(
        ILQR(problem), jnp.zeros((problem.horizon, 1)), x0, theta, max_steps=40, adjoint=adjoint
    )
    return result.value + jnp.sum(jnp.sin(result.params))  # depends on the controls too


@pytest.mark.e2e
def test_implicit_gradients_match_unrolled_and_finite_differences():
    """d/d(x0, mass, Q) of a solution: implicit == unrolled (1e-6) == central differences."""
    problem = _pendulum_problem(horizon=10, max_torque=3.0)
    x0, theta = jnp.array([0.4, 0.1]), _theta(problem)
    grad = jax.jit(jax.grad(_solution_cost, argnums=(1, 2)), static_argnums=(0, 3))
    implicit = grad(problem, x0, theta, "implicit")
    unrolled = grad(problem, x0, theta, "unrolled")
    flat_implicit = jax.flatten_util.ravel_pytree(implicit)[0]
    flat_unrolled = jax.flatten_util.ravel_pytree(unrolled)[0]
    np.testing.assert_allclose(flat_implicit, flat_unrolled, rtol=1e-5, atol=1e-7)
    h = 1e-5
    fd_x0 = [
        (
            _solution_cost(problem, x0.at[i].add(h), theta, "implicit")
            - _solution_cost(problem, x0.at[i].add(-h), theta, "implicit")
        )
        / (2 * h)
        for i in range(2)
    ]
    np.testing.assert_allclose(implicit[0], fd_x0, rtol=1e-4)

    def with_mass(mass):
        return _solution_cost(problem, x0, ({**theta[0], "mass": mass}, theta[1]), "implicit")

    fd_mass = (with_mass(1.0 + h) - with_mass(1.0 - h)) / (2 * h)
    np.testing.assert_allclose(implicit[1][0]["mass"], fd_mass, rtol=1e-4)
    assert float(jnp.abs(implicit[1][1].state_weight).max()) > 0  # cost weights get gradients


@pytest.mark.e2e
def test_budget_is_traced_and_an_exhausted_budget_returns_the_best_iterate():
    """One compilation for every budget; a short budget stops with MAX_STEPS_REACHED, J <= J0."""
    problem = TrajectoryProblem.from_dynamics(
        cartpole(),
        quadratic_cost([0.1, 1.0, 0.01, 0.01], [0.01], final_weight=[10, 100, 10, 10]),
        horizon=30,
        dt=0.05,
    )
    traces = []

    def solve(budget):
        traces.append(None)
        return run_solver(
            ILQR(problem),
            jnp.zeros((30, 1)),
            jnp.array([0.0, jnp.pi, 0.0, 0.0]),
            problem.default_theta,
            max_steps=budget,
            trace_length=50,
        )

    run = jax.jit(solve)
    short, longer = run(3), run(50)
    assert len(traces) == 1
    assert short.status_name == "MAX_STEPS_REACHED" and int(short.num_steps) == 3
    values = np.asarray(longer.trace["value"][: int(longer.num_steps) + 1])
    assert np.all(np.diff(values) <= 1e-12)  # monotone: the last iterate is the best
    assert float(longer.value) < float(short.value) < float(short.trace["value"][0])
    assert float(jnp.abs(longer.params).max()) <= 10.0  # within the force bound


@pytest.mark.e2e
def test_vmap_over_initial_states_matches_single_solves():
    """A batch of solves equals one solve per initial state."""
    problem = _pendulum_problem(horizon=10)
    starts = jnp.array([[0.3, 0.0], [-0.5, 0.2], [0.9, -0.1]])
    solve = jax.jit(lambda x0: ILQR(problem).run(jnp.zeros((10, 1)), x0, max_steps=100).params)
    batched = jax.vmap(solve)(starts)
    for i, x0 in enumerate(starts):
        np.testing.assert_allclose(batched[i], solve(x0), atol=1e-5)


@pytest.mark.e2e
def test_float32_solve_reaches_success():
    """Default tolerances follow the dtype: the float32 swing-up problem ends in SUCCESS."""
    with jax.enable_x64(False):
        problem = _pendulum_problem(max_torque=3.0)
        result = ILQR(problem).run(jnp.zeros((20, 1)), jnp.array([0.8, 0.0]))
        assert result.params.dtype == jnp.float32
        assert result.status_name == "SUCCESS"


@pytest.mark.e2e
def test_nonfinite_initial_state_is_a_status_not_an_answer():
    """A NaN initial state stops with NONFINITE under jit."""
    problem = _pendulum_problem()
    result = jax.jit(lambda x0: ILQR(problem).run(jnp.zeros((20, 1)), x0))(
        jnp.array([jnp.nan, 0.0])
    )
    assert result.status_name == "NONFINITE"


def test_bad_arguments_raise_clear_errors():
    """Wrong shapes, bad configs and bad problems are rejected outside jit."""
    problem = _pendulum_problem()
    with pytest.raises(ValueError, match="controls must have shape"):
        ILQR(problem).run(jnp.zeros((19, 1)), jnp.zeros(2))
    with pytest.raises(TypeError, match="TrajectoryProblem"):
        ILQR(object())
    with pytest.raises(ValueError, match="regularization_factor"):
        ILQRConfig(regularization_factor=1.0)
    with pytest.raises(ValueError, match="line_search_steps"):
        ILQRConfig(line_search_steps=0)
    with pytest.raises(ValueError, match="method"):
        DirectShooting(problem, "newton")
    with pytest.raises(ValueError, match="quadratic costs"):
        general = TrajectoryProblem.from_dynamics(
            pendulum(),
            horizon=5,
            dt=0.1,
            running_cost=lambda x, u, t, c: jnp.sum(u**2),
            final_cost=lambda x, c: x @ x,
        )
        DirectShooting(general, "gauss_newton")
    with pytest.raises(ValueError, match="lower"):
        TrajectoryProblem(
            problem.step, problem.running_cost, problem.final_cost, 5, 2, 1, (1.0,), (0.0,)
        )
    with pytest.raises(ValueError, match="horizon"):
        TrajectoryProblem.from_dynamics(pendulum(), quadratic_cost([1, 1], [1]), horizon=0, dt=0.1)
