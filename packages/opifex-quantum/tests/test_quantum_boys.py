"""The Boys function against scipy quadrature: values, derivatives, shapes and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import IntegrationWarning, quad

from opifex.quantum._boys import MAX_ORDER, boys

N_MAX = 16
T_GRID = np.concatenate(
    [
        [0.0, 1e-14, 1e-8, 1e-4, 0.024, 0.025, 0.026],
        np.linspace(0.1, 29.9, 37),
        [30.0 - 1e-9, 30.0, 30.0 + 1e-9],
        np.geomspace(31.0, 1e4, 12),
    ]
)


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)


def reference(n: int, t: float) -> float:
    """``int_0^1 s^(2n) exp(-t s^2) ds`` by adaptive quadrature, split where the mass lies."""
    split = min(1.0, 8.0 / np.sqrt(t)) if t > 0 else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        total = 0.0
        for lo, hi in ((0.0, split), (split, 1.0)):
            if hi > lo:
                total += quad(
                    lambda s: s ** (2 * n) * np.exp(-t * s * s), lo, hi, epsabs=0, epsrel=2e-14
                )[0]
    return total


@pytest.fixture(scope="module")
def reference_table():
    return np.array([[reference(n, t) for n in range(N_MAX + 2)] for t in T_GRID])


def test_values_match_quadrature(reference_table):
    values = np.asarray(boys(N_MAX, jnp.asarray(T_GRID)))
    assert values.shape == (T_GRID.size, N_MAX + 1)
    relative = np.abs(values / reference_table[:, : N_MAX + 1] - 1)
    assert relative.max() < 1e-13, relative.max()


@pytest.mark.slow
def test_exact_at_zero_and_highest_order():
    np.testing.assert_allclose(
        boys(MAX_ORDER, jnp.zeros(())), 1.0 / (2 * np.arange(MAX_ORDER + 1) + 1), rtol=1e-15
    )
    t = jnp.asarray([0.5, 12.0, 45.0])
    top = np.asarray(boys(MAX_ORDER, t))[:, -1]
    np.testing.assert_allclose(top, [reference(MAX_ORDER, x) for x in t], rtol=1e-13)


def test_derivative_is_minus_next_order(reference_table):
    t = jnp.asarray(T_GRID)
    tangent = jax.jvp(lambda x: boys(N_MAX, x), (t,), (jnp.ones_like(t),))[1]
    assert np.all(np.isfinite(tangent))
    np.testing.assert_allclose(tangent, -reference_table[:, 1 : N_MAX + 2], rtol=1e-13)
    second = jax.grad(jax.grad(lambda x: boys(3, x)[2]))(0.0)
    np.testing.assert_allclose(second, 1 / 9, rtol=1e-14)  # F_4(0)


@pytest.mark.slow
def test_derivative_matches_finite_differences():
    t, h = jnp.asarray([0.3, 7.0, 29.99, 30.01, 80.0]), 1e-5
    grad = jax.vmap(jax.grad(lambda x: boys(6, x).sum()))(t)
    fd = (boys(6, t + h).sum(-1) - boys(6, t - h).sum(-1)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-8)


def test_continuous_across_the_switch():
    below, above = boys(12, jnp.asarray(np.nextafter(30.0, 0.0))), boys(12, jnp.asarray(30.0))
    np.testing.assert_allclose(below, above, rtol=1e-13)


def test_shapes_jit_and_vmap():
    t = jnp.linspace(0.0, 50.0, 6).reshape(2, 3)
    out = jax.jit(boys, static_argnums=0)(4, t)
    assert out.shape == (2, 3, 5) and out.dtype == jnp.float64
    np.testing.assert_allclose(jax.vmap(lambda x: boys(4, x))(t), out, rtol=1e-15)


@pytest.mark.parametrize("n_max", [-1, MAX_ORDER + 1, 2.0, True])
def test_bad_order_is_rejected(n_max):
    with pytest.raises(ValueError, match="n_max"):
        boys(n_max, jnp.ones(2))
