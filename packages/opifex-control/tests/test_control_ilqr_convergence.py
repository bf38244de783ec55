"""How iLQR / box-DDP converges and when it stops, against references outside the rule itself.

References: plain iLQR (``ILQRConfig(second_order=False)``: the Gauss-Newton model of Li and
Todorov, linear convergence) on the same problem, the same solver run past its own stopping
point (nothing may be left to gain at ``SUCCESS``), and the implicit-function-theorem gradient
(for the unrolled one). The problem is the cart-pole swing-up of ``test_control_ilqr.py``'s
budget test (horizon 30): bounds active, Hessians of the stage Hamiltonians indefinite far from
the minimum, so second-order passes fail there and fall back to Gauss-Newton ones (whose
derivatives, as the unrolled adjoint takes them, must not be NaN).
float64 throughout; each solve compiles for seconds (e2e).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.control import ILQR, ILQRConfig, TrajectoryProblem, cartpole, quadratic_cost
from opifex.control._ilqr import _linearize
from opifex.core import run_solver

HORIZON = 30
X0 = (0.0, float(np.pi), 0.0, 0.0)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@functools.cache
def _cartpole() -> TrajectoryProblem:
    return TrajectoryProblem.from_dynamics(
        cartpole(),
        quadratic_cost([0.1, 1.0, 0.01, 0.01], [0.01], final_weight=[10, 100, 10, 10]),
        horizon=HORIZON,
        dt=0.05,
    )


@functools.cache
def _solve(second_order: bool):
    problem = _cartpole()
    solver = ILQR(problem, ILQRConfig(second_order=second_order))
    return jax.jit(lambda x0: solver.run(jnp.zeros((HORIZON, 1)), x0, trace_length=100))(
        jnp.asarray(X0)
    )


class _NeverStop(ILQR):
    """The same iterations with the stopping rule switched off."""

    def terminate(self, state, x0, theta):
        _, status = super().terminate(state, x0, theta)
        return jnp.zeros((), bool), status


@pytest.mark.e2e
def test_second_order_passes_converge_quadratically_to_the_gauss_newton_minimum():
    """Fewer iterations than plain iLQR, the same minimum, full Newton steps at the end."""
    newton, gauss_newton = _solve(True), _solve(False)
    assert newton.status_name == gauss_newton.status_name == "SUCCESS"
    np.testing.assert_allclose(float(newton.value), float(gauss_newton.value), rtol=1e-12)
    np.testing.assert_allclose(newton.params, gauss_newton.params, atol=1e-6)
    steps = int(newton.num_steps)
    assert steps < int(gauss_newton.num_steps)
    # the last steps are full steps of second-order passes ...
    assert np.all(np.asarray(newton.trace["second_order"])[steps - 2 : steps + 1] == 1.0)
    assert np.all(np.asarray(newton.trace["step_size"])[steps - 2 : steps + 1] == 1.0)
    # ... and the gradient falls superlinearly (Gauss-Newton: a fixed ratio, about 1/2 here)
    norms = np.asarray(newton.trace["grad_norm"])[: steps + 1]
    assert norms[-1] <= 1e-2 * norms[-2]


@pytest.mark.e2e
def test_success_leaves_nothing_to_gain():
    """Fifteen more iterations past SUCCESS lower the cost by no more than its rounding."""
    result = _solve(True)
    problem = _cartpole()
    longer = jax.jit(
        lambda x0: run_solver(
            _NeverStop(problem),
            jnp.zeros((HORIZON, 1)),
            x0,
            problem.default_theta,
            max_steps=int(result.num_steps) + 15,
        )
    )(jnp.asarray(X0))
    assert int(longer.num_steps) == int(result.num_steps) + 15
    gain = float(result.value) - float(longer.value)
    assert gain <= 1e-13 * abs(float(result.value))
    assert float(result.grad_norm) <= 1e-6 * float(jnp.nanmax(result.trace["grad_norm"]))


@pytest.mark.e2e
def test_a_failed_second_order_pass_has_finite_derivatives():
    """A second-order pass that is not positive definite is replaced by the Gauss-Newton one
    without NaN: derivatives through the discarded pass (what the unrolled adjoint computes)
    are finite and equal those of the Gauss-Newton pass alone."""
    problem = _cartpole()
    solver, theta, x0 = ILQR(problem), problem.default_theta, jnp.asarray(X0)
    state = solver.init(jnp.zeros((HORIZON, 1)), x0, theta)
    step = jax.jit(lambda s: solver.step(s, x0, theta))
    for _ in range(5):  # far from the minimum: the Hamiltonians' Hessians are indefinite
        state = step(state)

    def planned(controls, second_order):
        states = problem.rollout(controls, x0, theta)
        lin = _linearize(problem, states, controls, theta)
        backward = solver._plan(lin, states, controls, state.regularization, second_order, theta)
        return jnp.sum(backward.step), backward.second_order

    attempt = jax.jit(functools.partial(planned, second_order=jnp.ones((), bool)))
    assert not bool(attempt(state.params)[1])  # the second-order pass failed here
    grad = jax.jit(jax.grad(lambda u, so: planned(u, so)[0]))
    through_failure = grad(state.params, jnp.ones((), bool))
    assert np.all(np.isfinite(np.asarray(through_failure)))
    np.testing.assert_allclose(
        through_failure, grad(state.params, jnp.zeros((), bool)), rtol=1e-12, atol=1e-12
    )
