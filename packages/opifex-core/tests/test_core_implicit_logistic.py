"""``implicit_root`` on a nonlinear problem with pytree solution and parameters.

The solution is the minimiser of an L2-regularised, sample-weighted logistic regression,
``x = {"w": (3,), "b": ()}``, as a function of ``theta = {"lam": (), "weights": (30,)}``.
There is no closed form, so the implicit derivative (for each linear solver) is checked
against two independent references in float64:

(i) differentiation unrolled through 30 Newton steps (Newton converges quadratically, so the
    derivative of its iterates converges to the derivative of the solution);
(ii) central finite differences of the solver's output (``eps = 1e-6``, error ~1e-9).

The optimality condition is ``jax.grad`` of the objective; the solver is a hand-written Newton
iteration (closed-form gradient and Hessian), so the two do not share code.

Tolerances: dense ``rtol 1e-8``; ``cg`` / ``gmres`` stop at JAX's default relative residual
``1e-5``, so they are compared at ``rtol 1e-4``.

(Split from ``test_core_implicit.py`` to keep each file's compile time short.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from opifex.core._implicit import implicit_root

RTOL = {"dense": 1e-8, "cg": 1e-4, "gmres": 1e-4}


def _logistic_data():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 3))
    true_w = np.array([1.5, -2.0, 0.5])
    labels = np.where(features @ true_w + 0.3 * rng.normal(size=30) > 0, 1.0, -1.0)
    return features, labels


# numpy float64 constants: they become float64 jax arrays inside the x64 fixture
FEATURES, LABELS = _logistic_data()
THETA = {"lam": np.float64(0.8), "weights": np.linspace(0.5, 1.5, 30)}
INIT = {"w": np.zeros(3), "b": np.float64(0.0)}
# rows y_i * [a_i, 1]: the margin of sample i is SIGNED_DESIGN[i] @ [w, b]
SIGNED_DESIGN = np.concatenate([FEATURES, np.ones((30, 1))], axis=1) * LABELS[:, None]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def logistic_objective(x, theta):
    margins = LABELS * (FEATURES @ x["w"] + x["b"])
    data = jnp.sum(theta["weights"] * jnp.logaddexp(0.0, -margins))
    return data + 0.5 * theta["lam"] * (jnp.sum(x["w"] ** 2) + x["b"] ** 2)


def newton(init, theta, num_steps=30):
    """Newton's method with the closed-form gradient and Hessian of ``logistic_objective``."""
    Z = SIGNED_DESIGN
    v0 = jnp.concatenate([jnp.asarray(init["w"]), jnp.reshape(init["b"], (1,))])

    def body(_, v):
        s = jax.nn.sigmoid(-(Z @ v))
        g = -Z.T @ (theta["weights"] * s) + theta["lam"] * v
        H = (Z.T * (theta["weights"] * s * (1 - s))) @ Z + theta["lam"] * jnp.eye(4)
        return v - jnp.linalg.solve(H, g)

    v = jax.lax.fori_loop(0, num_steps, body, v0)
    return {"w": v[:3], "b": v[3]}


def outer_loss(x):
    """A validation-style scalar function of the solution."""
    return jnp.sum(jnp.sin(x["w"]) * jnp.array([1.0, 2.0, -1.0])) + 3.0 * x["b"] ** 2 + x["b"]


def _implicit(linear_solver):
    return implicit_root(
        jax.grad(logistic_objective), newton, linear_solver=linear_solver, symmetric=True
    )


def _central_differences(fun, theta, eps=1e-6):
    flat, unravel = ravel_pytree(theta)
    out = np.empty(flat.size)
    for i in range(flat.size):
        e = np.zeros(flat.size)
        e[i] = eps
        out[i] = (fun(unravel(flat + e)) - fun(unravel(flat - e))) / (2 * eps)
    return unravel(jnp.asarray(out))


@pytest.fixture(scope="module")
def references():
    with jax.enable_x64(True):
        theta = jax.tree.map(jnp.asarray, THETA)
        solve = jax.jit(newton)
        solution = solve(INIT, theta)
        # the solution really is a stationary point of the objective
        residual = ravel_pytree(jax.grad(logistic_objective)(solution, theta))[0]
        assert float(jnp.max(jnp.abs(residual))) < 1e-12
        unrolled = jax.jit(jax.grad(lambda t: outer_loss(newton(INIT, t))))(theta)
        fd = _central_differences(lambda t: outer_loss(solve(INIT, t)), theta)
        return solve, solution, unrolled, fd


@pytest.mark.slow
@pytest.mark.parametrize("linear_solver", ["dense", "cg", "gmres"])
def test_grad_matches_unrolled_and_finite_differences(linear_solver, references):
    _, solution, unrolled, fd = references
    root = _implicit(linear_solver)
    value, grad = jax.jit(jax.value_and_grad(lambda t: outer_loss(root(INIT, t))))(THETA)
    np.testing.assert_allclose(value, outer_loss(solution), rtol=1e-12)
    assert set(grad) == {"lam", "weights"}
    rtol = RTOL[linear_solver]
    for name in ("lam", "weights"):
        np.testing.assert_allclose(grad[name], unrolled[name], rtol=rtol, atol=1e-10)
        np.testing.assert_allclose(grad[name], fd[name], rtol=max(rtol, 1e-6), atol=1e-8)


@pytest.mark.slow
def test_jacfwd_and_jacrev_of_pytrees(references):
    solve = references[0]
    root = _implicit("dense")
    forward, reverse = jax.jit(
        lambda init, theta: (
            jax.jacfwd(root, argnums=1)(init, theta),
            jax.jacrev(root, argnums=1)(init, theta),
        )
    )(INIT, THETA)
    # a dict of dicts: d x[out] / d theta[in]
    assert set(forward) == {"w", "b"} and set(forward["w"]) == {"lam", "weights"}
    assert forward["w"]["weights"].shape == (3, 30)
    assert forward["b"]["lam"].shape == ()
    for a, b in zip(jax.tree.leaves(forward), jax.tree.leaves(reverse), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # the lam column against central differences of the solver's output
    eps = 1e-6
    plus = solve(INIT, {**THETA, "lam": THETA["lam"] + eps})
    minus = solve(INIT, {**THETA, "lam": THETA["lam"] - eps})
    for name in ("w", "b"):
        np.testing.assert_allclose(
            forward[name]["lam"], (plus[name] - minus[name]) / (2 * eps), rtol=1e-6, atol=1e-9
        )


@pytest.mark.slow
def test_vmap_of_grad_over_lam(references):
    solve = references[0]
    root = _implicit("cg")
    lams = np.array([0.1, 1.0, 10.0])

    def grad_lam(lam):
        return jax.grad(lambda t: outer_loss(root(INIT, {**THETA, "lam": t})))(lam)

    batched = jax.jit(jax.vmap(grad_lam))(jnp.asarray(lams))
    eps = 1e-6
    for i, lam in enumerate(lams):
        fd = (
            outer_loss(solve(INIT, {**THETA, "lam": lam + eps}))
            - outer_loss(solve(INIT, {**THETA, "lam": lam - eps}))
        ) / (2 * eps)
        np.testing.assert_allclose(batched[i], fd, rtol=1e-4, atol=1e-8)
