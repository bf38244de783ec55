"""Learning through MPC (imitation): gradients of an imitation loss through iLQR.

An expert solves a torque-limited pendulum swing-up with iLQR at the true parameters; a learner
with the same solver and unknown parameters is fitted to the expert's controls through the
solver's implicit gradient (Amos et al., "Differentiable MPC", 2018). References: central
finite differences of the loss (the gradient), and the true parameters that generated the
expert's controls (the fit), which the learner never sees. float64 throughout.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.control import ILQR, ILQRConfig, TrajectoryProblem, pendulum, quadratic_cost
from opifex.control._problem import QuadraticCost


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


HORIZON, DT, MAX_TORQUE, R = 30, 0.08, 5.0, 0.1
# log of (mass, length, damping, Q_theta); the other weights are known (R fixes the cost scale)
TRUTH = np.log([1.0, 1.0, 0.1, 1.0])
STARTS = ((0.8, 0.0), (-1.0, 0.5), (1.5, -0.5), (-0.4, 1.0), (2.0, 0.5), (-2.5, 0.0))


@functools.cache
def _problem() -> TrajectoryProblem:
    cost = quadratic_cost([1.0, 0.1], [R], final_weight=[100.0, 10.0])
    return TrajectoryProblem.from_dynamics(
        pendulum(max_torque=MAX_TORQUE), cost, horizon=HORIZON, dt=DT
    )


def _theta(log_params):
    p = jnp.exp(log_params)
    dynamics = {"mass": p[0], "length": p[1], "damping": p[2], "gravity": jnp.asarray(9.81)}
    cost = QuadraticCost(
        jnp.diag(jnp.stack([p[3], jnp.asarray(0.1)])),
        jnp.full((1, 1), R),
        jnp.diag(jnp.array([100.0, 10.0])),
        jnp.zeros(2),
    )
    return dynamics, cost


@functools.cache
def _solve_and_grad():
    """One compiled program: the batch of solves, the imitation loss and its implicit gradient.

    ``guesses`` are the initial control sequences (the expert's controls when learning, zeros
    to make the expert); the loss is the mean squared difference to ``target``.
    """
    solver = ILQR(_problem(), ILQRConfig(max_steps=200))

    def loss(log_params, x0s, guesses, target):
        theta = _theta(log_params)
        result = jax.vmap(lambda x0, guess: solver.run(guess, x0, theta))(x0s, guesses)
        return jnp.mean((result.params - target) ** 2), result

    def run(log_params, x0s, guesses, target):
        (value, result), grad = jax.value_and_grad(loss, has_aux=True)(
            log_params, x0s, guesses, target
        )
        return value, grad, result.params, result.status

    return jax.jit(run)


@functools.cache
def _expert():
    x0s = jnp.asarray(STARTS)
    zeros = jnp.zeros((len(STARTS), HORIZON, 1))
    _, _, controls, status = _solve_and_grad()(jnp.asarray(TRUTH), x0s, zeros, zeros)
    assert np.all(np.asarray(status) == 0), "every expert solve ends in SUCCESS"
    assert np.mean(np.isclose(np.abs(controls), MAX_TORQUE)) > 0.2  # the torque bound binds
    return x0s, controls


def _loss_and_grad(log_params):
    x0s, expert = _expert()
    value, grad, _, status = _solve_and_grad()(jnp.asarray(log_params), x0s, expert, expert)
    return float(value), np.asarray(grad), np.asarray(status)


@pytest.mark.e2e
def test_implicit_gradient_of_the_imitation_loss_matches_finite_differences():
    """d loss / d log(mass, length, damping, Q_theta) == central differences.

    iLQR stops at attainable precision, where the controls (and the loss) are accurate to about
    1e-8 relative; the differences therefore carry an absolute error of about 1e-8 / h, and the
    truncation error is O(h^2): h = 1e-3, tolerance 1e-4 relative plus 1e-5 of the largest
    component (the damping's derivative is 100x smaller than the others').
    """
    point = TRUTH + np.array([0.15, -0.1, 0.2, -0.2])
    value, grad, status = _loss_and_grad(point)
    assert value > 1e-3 and np.all(status == 0)  # away from the truth, every solve converged
    h = 1e-3
    differences = np.array(
        [
            (_loss_and_grad(point + h * e)[0] - _loss_and_grad(point - h * e)[0]) / (2 * h)
            for e in np.eye(len(point))
        ]
    )
    np.testing.assert_allclose(grad, differences, rtol=1e-4, atol=1e-5 * np.abs(differences).max())


@pytest.mark.e2e
def test_adam_through_the_implicit_mpc_gradient_recovers_the_parameters():
    """Adam on the implicit gradient: the loss falls 1000x and each parameter is within 2 %."""
    start = TRUTH + np.array([0.3, -0.25, 0.35, -0.3])  # up to 42 % off
    initial_error = np.abs(np.exp(start - TRUTH) - 1.0)
    optimizer = optax.adam(0.05)
    params = jnp.asarray(start)
    state = optimizer.init(params)
    losses = []
    for _ in range(150):
        value, grad, _ = _loss_and_grad(params)
        losses.append(value)
        updates, state = optimizer.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
    final_error = np.abs(np.exp(np.asarray(params) - TRUTH) - 1.0)
    assert losses[-1] < 1e-3 * losses[0]
    assert np.max(final_error) < 0.02 < 0.1 * np.max(initial_error)
