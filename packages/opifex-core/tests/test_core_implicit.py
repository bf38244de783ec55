"""Tests for ``implicit_root``: derivatives of a solution through its optimality condition.

References (all float64):

* ridge regression ``x*(lam) = argmin ||Ax - b||^2 + lam ||x||^2`` has the closed form
  ``x* = (A'A + lam I)^{-1} A'b`` and ``dx*/dlam = -(A'A + lam I)^{-1} x*``;
* a linear, non-symmetric system ``Mx = theta`` has ``dx*/dtheta = M^{-1}`` (checks the
  transposed solve used in reverse mode);
* ``sqrt(a)`` as the root of ``x**2 - a`` (the docstring example).

The nonlinear case (logistic regression, pytree x and theta, against unrolled differentiation
and finite differences) is in ``test_core_implicit_logistic.py``.

Tolerances: the dense solver is exact up to rounding (``rtol 1e-9``); ``cg`` and ``gmres``
stop at JAX's default relative residual ``1e-5``, so they are compared at ``rtol 1e-4``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core._driver import run_solver
from opifex.core._gradient_descent import GradientDescent
from opifex.core._implicit import implicit_root

RTOL = {"dense": 1e-9, "cg": 1e-4, "gmres": 1e-4}
SOLVERS = ("dense", "cg", "gmres")


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------------------------
# ridge regression: closed form


def _ridge_data():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(12, 4))
    b = rng.normal(size=12)
    return A, b


def _ridge_closed_form(A, b, lam):
    H = A.T @ A + lam * np.eye(A.shape[1])
    x = np.linalg.solve(H, A.T @ b)
    return x, -np.linalg.solve(H, x)


def _ridge_root(linear_solver, *, use_gd=False):
    A, b = _ridge_data()
    A, b = jnp.asarray(A), jnp.asarray(b)

    def objective(x, lam):
        return jnp.sum((A @ x - b) ** 2) + lam * jnp.sum(x**2)

    optimality = jax.grad(objective)  # F(x, lam) = 2 A'(Ax - b) + 2 lam x

    if use_gd:
        # any solver will do: here gradient descent on the driver (its loop is not unrolled)
        # step 1/L with L = 2 (||A||^2 + lam) for the largest lam used here
        lipschitz = 2.0 * (np.linalg.norm(A, 2) ** 2 + 1.0)
        gd = GradientDescent(objective, learning_rate=1.0 / lipschitz, atol=1e-12)

        def solve(init, lam):
            return run_solver(gd, init, lam, max_steps=5000).params

    else:

        def solve(init, lam):
            del init
            return jnp.linalg.solve(A.T @ A + lam * jnp.eye(A.shape[1]), A.T @ b)

    return implicit_root(optimality, solve, linear_solver=linear_solver, symmetric=True)


@pytest.mark.slow
@pytest.mark.parametrize("linear_solver", SOLVERS)
def test_ridge_jacobian_matches_closed_form(linear_solver):
    A, b = _ridge_data()
    lam = 0.7
    x_ref, dx_ref = _ridge_closed_form(A, b, lam)
    root = _ridge_root(linear_solver)
    c = np.arange(1.0, 5.0)

    @jax.jit  # one compilation for all the modes (eager gmres / cg are slow to dispatch)
    def everything(x0, lam):
        return (
            root(x0, lam),
            jax.jacfwd(root, argnums=1)(x0, lam),  # forward mode
            jax.grad(lambda t: jnp.dot(c, root(x0, t)))(lam),  # reverse mode
        )

    x, forward, grad = everything(jnp.zeros(4), lam)
    rtol = RTOL[linear_solver]
    np.testing.assert_allclose(x, x_ref, rtol=1e-10)
    np.testing.assert_allclose(forward, dx_ref, rtol=rtol)
    np.testing.assert_allclose(grad, c @ dx_ref, rtol=rtol)
    if linear_solver == "dense":  # full reverse-mode Jacobian (vmap of the transposed solve)
        reverse = jax.jit(jax.jacrev(root, argnums=1))(jnp.zeros(4), lam)
        np.testing.assert_allclose(reverse, dx_ref, rtol=rtol)


def test_ridge_with_an_iterative_solver_on_the_driver():
    A, b = _ridge_data()
    lam = 0.7
    _, dx_ref = _ridge_closed_form(A, b, lam)
    root = _ridge_root("dense", use_gd=True)
    dx = jax.jit(jax.jacfwd(root, argnums=1))(jnp.zeros(4), lam)
    # GD stops at ||grad|| <= 1e-12, so x* (and hence the derivative) is accurate to ~1e-11
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-8)


def test_ridge_vmap_of_grad_and_jit():
    A, b = _ridge_data()
    lams = jnp.array([0.01, 0.5, 3.0, 40.0])
    c = jnp.arange(1.0, 5.0)
    root = _ridge_root("cg")
    traces = []

    @jax.jit
    def grad_fn(lam):
        traces.append(None)
        return jax.grad(lambda t: jnp.dot(c, root(jnp.zeros(4), t)))(lam)

    batched = jax.vmap(grad_fn)(lams)
    expected = [np.asarray(c) @ _ridge_closed_form(A, b, float(lam))[1] for lam in lams]
    np.testing.assert_allclose(batched, expected, rtol=1e-4)

    # jit alone, and no recompilation for a new value
    before = len(traces)
    g1 = grad_fn(0.2)
    g2 = grad_fn(0.9)
    assert len(traces) == before + 1
    np.testing.assert_allclose(g2, np.asarray(c) @ _ridge_closed_form(A, b, 0.9)[1], rtol=1e-4)
    assert float(g1) != float(g2)


def test_init_receives_no_gradient():
    root = _ridge_root("dense")
    g_init = jax.jit(jax.grad(lambda x0: jnp.sum(root(x0, 0.7))))(jnp.ones(4))
    np.testing.assert_array_equal(g_init, np.zeros(4))


# --------------------------------------------------------------------------------------------
# non-symmetric linear system: checks the transposed solve of reverse mode


@pytest.mark.slow
@pytest.mark.parametrize("linear_solver", ["dense", "gmres"])
def test_nonsymmetric_jacobian_in_both_modes(linear_solver):
    rng = np.random.default_rng(1)
    M = rng.normal(size=(5, 5)) + 5.0 * np.eye(5)  # well conditioned, not symmetric
    M_inv = np.linalg.inv(M)
    Mj = jnp.asarray(M)

    def optimality(x, theta):
        return Mj @ x - theta

    def solve(init, theta):
        return jnp.linalg.solve(Mj, theta)

    root = implicit_root(optimality, solve, linear_solver=linear_solver)
    theta = jnp.asarray(rng.normal(size=5))
    c = jnp.asarray(rng.normal(size=5))

    @jax.jit
    def jacobians(theta):
        return (
            jax.jacfwd(root, argnums=1)(theta, theta),
            jax.grad(lambda t: jnp.dot(c, root(jnp.zeros(5), t)))(theta),
        )

    forward, grad = jacobians(theta)
    rtol = RTOL[linear_solver]
    np.testing.assert_allclose(forward, M_inv, rtol=rtol)
    np.testing.assert_allclose(grad, M_inv.T @ np.asarray(c), rtol=rtol)


# --------------------------------------------------------------------------------------------
# the documented example and bad input


def test_docstring_square_root_example():
    def newton_sqrt(x, a):
        return jax.lax.fori_loop(0, 30, lambda _, x: x - (x**2 - a) / (2 * x), x)

    sqrt = implicit_root(lambda x, a: x**2 - a, newton_sqrt)
    for a in (0.25, 4.0, 9.0):
        assert float(sqrt(jnp.ones(()), a)) == pytest.approx(np.sqrt(a), rel=1e-12)
        d = jax.jit(jax.grad(lambda a: sqrt(jnp.ones(()), a)))(a)
        assert float(d) == pytest.approx(0.5 / np.sqrt(a), rel=1e-12)


@pytest.mark.parametrize("bad", ["lu", "CG", "", None])
def test_unknown_linear_solver(bad):
    with pytest.raises(ValueError, match="linear_solver must be one of 'dense', 'cg', 'gmres'"):
        implicit_root(lambda x, t: x - t, lambda x, t: t, linear_solver=bad)
