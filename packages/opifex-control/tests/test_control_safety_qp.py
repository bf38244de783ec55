"""The safety filter's QP (``filter_qp``): the exact one-row and one-control paths and the
Goldfarb-Idnani active-set method against scipy SLSQP and the KKT conditions, infeasibility
flags and best efforts, implicit derivatives against central finite differences. float64.

References: ``scipy.optimize.minimize(method="SLSQP")`` at ``ftol=1e-14``, a brute-force grid,
closed forms; tolerances are stated at each assertion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from opifex.control._qp import filter_qp


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _random_problem(rng, m, p):
    u_nom = 2.0 * rng.normal(size=m)
    normals, offsets = rng.normal(size=(p, m)), rng.normal(size=p)
    lower, upper = -rng.uniform(0.5, 2.0, m), rng.uniform(0.5, 2.0, m)
    return u_nom, normals, offsets, lower, upper, rng.uniform(0.5, 2.0, m)


def _slsqp(u_nom, normals, offsets, lower, upper, weight):
    result = minimize(
        lambda u: 0.5 * np.sum(weight * (u - u_nom) ** 2),
        np.clip(u_nom, lower, upper),
        jac=lambda u: weight * (u - u_nom),
        bounds=list(zip(lower, upper, strict=True)),
        constraints=[
            {"type": "ineq", "fun": lambda u: normals @ u - offsets, "jac": lambda u: normals}
        ],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    feasible = result.success and np.all(normals @ result.x - offsets >= -1e-8)
    return result.x, feasible


_QP = jax.jit(filter_qp)


def test_one_constraint_closed_form_matches_slsqp_and_grid():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(40):
        problem = _random_problem(rng, int(rng.integers(1, 4)), 1)
        solution = _QP(*problem)
        reference, feasible = _slsqp(*problem)
        assert bool(solution.feasible) == feasible
        if feasible:
            compared += 1
            assert bool(solution.converged)
            np.testing.assert_allclose(solution.control, reference, atol=1e-6)  # SLSQP's accuracy
    assert compared >= 20
    # scalar control: a clip; brute force over a grid of the box (spacing 1e-4)
    u_nom, normals, offsets, lower, upper, weight = _random_problem(np.random.default_rng(1), 1, 1)
    grid = np.linspace(lower[0], upper[0], 40_001)
    ok = normals[0, 0] * grid >= offsets[0]
    best = grid[ok][np.argmin(np.abs(grid[ok] - u_nom[0]))]
    solution = _QP(u_nom, normals, offsets, lower, upper, weight)
    assert abs(float(solution.control[0]) - best) <= 1e-4


def test_one_constraint_infeasible_is_flagged_with_the_box_corner():
    solution = _QP(
        jnp.array([0.0, 0.0]),
        jnp.array([[1.0, -2.0]]),
        jnp.array([10.0]),
        jnp.array([-1.0, -1.0]),
        jnp.array([1.0, 1.0]),
        None,
    )
    assert not bool(solution.feasible) and not bool(solution.converged)
    assert solution.control.tolist() == [1.0, -1.0]  # maximises a' u over the box


def test_several_constraints_match_slsqp_and_kkt():
    rng = np.random.default_rng(2)
    compared = scipy_feasible = 0
    for trial in range(60):
        problem = _random_problem(rng, *((2, 2), (3, 3))[trial % 2])  # two compiled shapes
        solution = _QP(*problem)
        reference, feasible = _slsqp(*problem)
        scipy_feasible += feasible
        if bool(solution.feasible) and bool(solution.converged):
            u, lam = np.asarray(solution.control), np.asarray(solution.multipliers)
            u_nom, normals, offsets, lower, upper, weight = problem
            # KKT: stationarity over the box, lam >= 0, complementarity (1e-8)
            assert np.all(lam >= 0)
            np.testing.assert_allclose(
                u, np.clip(u_nom + lam @ normals / weight, lower, upper), atol=1e-8
            )
            assert np.all(np.abs(lam * (normals @ u - offsets)) <= 1e-7)
            if feasible:
                compared += 1
                np.testing.assert_allclose(u, reference, atol=1e-6)
        if not feasible:  # scipy found no feasible point: we must not claim one
            assert not bool(solution.feasible) or np.all(np.asarray(solution.residual) >= -1e-7)
    assert compared >= 25 and compared >= 0.9 * scipy_feasible  # random, some ill-posed


@pytest.mark.e2e
def test_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    u_nom, normals, offsets, lower, upper, weight = _random_problem(rng, 3, 2)
    u_nom = np.array([2.5, -0.3, 0.4])
    normals = np.array([[-1.0, 0.2, 0.3], [0.1, 1.0, -0.5]])
    offsets = np.array([-0.5, 0.2])

    @jax.jit
    def loss(u_nom, normals, offsets):
        sol = filter_qp(u_nom, normals, offsets, lower, upper, weight)
        return jnp.sum(sol.control * jnp.array([1.0, -2.0, 0.5]))

    sol = filter_qp(u_nom, normals, offsets, lower, upper, weight)
    assert bool(sol.converged) and np.all(np.asarray(sol.multipliers) > 1e-3)
    args = (jnp.asarray(u_nom), jnp.asarray(normals), jnp.asarray(offsets))
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    eps = 1e-6
    for i, arg in enumerate(args):
        flat = np.asarray(arg).ravel()
        numeric = np.zeros_like(flat)
        for k in range(flat.size):
            step = np.zeros_like(flat)
            step[k] = eps
            plus = [*args]
            minus = [*args]
            plus[i] = jnp.asarray((flat + step).reshape(arg.shape))
            minus[i] = jnp.asarray((flat - step).reshape(arg.shape))
            numeric[k] = (loss(*plus) - loss(*minus)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(grads[i]).ravel(), numeric, atol=1e-6)


def test_one_control_several_rows_is_the_clip_to_an_interval():
    # rows: 2 u >= 1 (u >= 0.5), -u >= -3 (u <= 3), 0.5 u >= 0 (u >= 0); box [-1, 2]
    normals, offsets = jnp.array([[2.0], [-1.0], [0.5]]), jnp.array([1.0, -3.0, 0.0])
    lower, upper = jnp.array([-1.0]), jnp.array([2.0])
    for u_nom, expected in ((-4.0, 0.5), (1.2, 1.2), (9.0, 2.0)):
        sol = _QP(jnp.array([u_nom]), normals, offsets, lower, upper, None)
        assert bool(sol.feasible) and bool(sol.converged)
        assert float(sol.control[0]) == pytest.approx(expected, abs=1e-12)
    sol = _QP(jnp.array([-4.0]), normals, offsets, lower, upper, None)
    # the binding row's multiplier: w (u - u_nom) / a = 4.5 / 2
    np.testing.assert_allclose(sol.multipliers, [2.25, 0.0, 0.0], atol=1e-12)
    # derivatives of the binding row's bound u = b_0 / a_0 (closed form: 1 / a_0, -b_0 / a_0^2)
    grads = jax.jit(
        jax.grad(lambda a, b: filter_qp(jnp.array([-4.0]), a, b, lower, upper).control[0], (0, 1))
    )(normals, offsets)
    np.testing.assert_allclose(grads[1], [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(grads[0][:, 0], [-0.25, 0.0, 0.0], atol=1e-12)
    # u >= 0.5 and u <= -0.5 cannot both hold: the best effort is the middle, 0
    sol = _QP(jnp.array([1.0]), jnp.array([[1.0], [-1.0]]), jnp.array([0.5, 0.5]), None, None, None)
    assert not bool(sol.feasible) and not bool(sol.converged)
    assert float(sol.control[0]) == pytest.approx(0.0, abs=1e-12)
    # every row an upper bound beyond the box: the lower bound (brake hardest)
    sol = _QP(
        jnp.array([1.0]), jnp.array([[-1.0], [-2.0]]), jnp.array([3.0, 5.0]), lower, upper, None
    )
    assert not bool(sol.feasible) and float(sol.control[0]) == -1.0


def test_active_set_detects_infeasibility_and_degenerate_rows():
    # u1 >= 1 and u1 <= -1 (with a redundant copy of the first row): no solution
    normals = jnp.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]])
    offsets = jnp.array([1.0, 1.0, 2.0])
    sol = _QP(jnp.array([0.0, 3.0]), normals, offsets, None, None, None)
    assert not bool(sol.feasible) and not bool(sol.converged)
    # three rows through one point in two dimensions (degenerate): the optimum is that point
    normals = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sol = _QP(jnp.array([-1.0, -1.0]), normals, jnp.array([1.0, 1.0, 2.0]), None, None, None)
    assert bool(sol.feasible) and bool(sol.converged)
    np.testing.assert_allclose(sol.control, [1.0, 1.0], atol=1e-12)
    # a NaN row: flagged, in jit
    sol = _QP(jnp.array([0.0, 0.0]), normals.at[0, 0].set(jnp.nan), jnp.ones(3), None, None, None)
    assert not bool(sol.feasible) and not bool(sol.converged)


def test_bad_input():
    with pytest.raises(ValueError, match="normals"):
        filter_qp(jnp.zeros(2), jnp.zeros((1, 3)), jnp.zeros(1))
    with pytest.raises(ValueError, match="offsets"):
        filter_qp(jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros(3))
    with pytest.raises(ValueError, match="u_nom"):
        filter_qp(jnp.zeros((2, 1)), jnp.zeros((1, 2)), jnp.zeros(1))
    with pytest.raises(ValueError, match="lower"):
        filter_qp(jnp.zeros(2), jnp.zeros((1, 2)), jnp.zeros(1), lower=jnp.zeros(3))
    with pytest.raises(ValueError, match="max_steps"):
        filter_qp(jnp.zeros(2), jnp.zeros((1, 2)), jnp.zeros(1), max_steps=0)
    with pytest.raises(ValueError, match="rtol"):
        filter_qp(jnp.zeros(2), jnp.zeros((1, 2)), jnp.zeros(1), rtol=-1.0)
