"""Tests for the optional Flax NNX adapter (skipped when flax is not installed).

Reference: a linear ``nnx.Linear`` model trained on noisy linear data must reach the
least-squares solution that ``numpy.linalg.lstsq`` computes in float64, with both optax.adam
and opifex's ``GradientDescent`` on the ``run_solver`` driver.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core import _nnx
from opifex.core._checkpoint import load_pytree, save_pytree
from opifex.core._driver import run_solver
from opifex.core._gradient_descent import GradientDescent
from opifex.core._nnx import merge_nnx, nnx_objective, nnx_params, split_nnx


@pytest.mark.slow
def test_importing_opifex_core_does_not_import_flax():
    code = (
        "import sys, opifex.core, opifex.core._nnx; "
        "assert 'flax' not in sys.modules, 'flax imported'; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_missing_flax_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)  # makes `from flax import nnx` fail
    for call in (
        lambda: split_nnx(object()),
        lambda: merge_nnx(None, {}, None),
        lambda: nnx_objective(lambda m: 0.0, None, None),
        lambda: nnx_params(object()),
    ):
        with pytest.raises(ImportError, match=r"pip install 'opifex-core\[flax\]'"):
            call()


try:  # flax is optional: everything below needs it (the two tests above do not)
    import optax
    from flax import nnx
except ImportError:
    nnx = None

requires_flax = pytest.mark.skipif(nnx is None, reason="flax is not installed")


def _linear_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    true_w = np.array([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]], np.float32)
    y = x @ true_w + np.array([0.3, -0.7], np.float32) + 0.1 * rng.normal(size=(64, 2))
    return x, y.astype(np.float32)


def _lstsq(x, y):
    """Closed-form least squares in float64: returns (kernel, bias, mean squared error)."""
    design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, y.astype(np.float64), rcond=None)
    mse = np.mean((design @ coef - y) ** 2)
    return coef[:-1], coef[-1], mse


def mse(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


@requires_flax
def test_split_and_merge_round_trip():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, params, rest = split_nnx(model)
    assert isinstance(params, dict) and set(params) == {"kernel", "bias"}
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(params))
    x = jnp.ones((4, 3))
    rebuilt = merge_nnx(graphdef, params, rest)
    assert isinstance(rebuilt, nnx.Linear)
    np.testing.assert_array_equal(rebuilt(x), model(x))
    # the rebuilt model is independent of the original
    rebuilt.kernel[...] = jnp.zeros((3, 2))
    assert not np.allclose(model.kernel[...], 0.0)
    # new params give the expected function
    new = {"kernel": jnp.eye(3, 2), "bias": jnp.array([1.0, 2.0])}
    expected = np.asarray(x) @ np.eye(3, 2) + np.array([1.0, 2.0])
    np.testing.assert_allclose(merge_nnx(graphdef, new, rest)(x), expected, rtol=1e-6)


if nnx is not None:

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(1, 16, rngs=rngs)
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.layers = nnx.List([nnx.Linear(16, 16, rngs=rngs), nnx.Linear(16, 1, rngs=rngs)])

        def __call__(self, x):
            h = self.norm(jnp.tanh(self.hidden(x)))
            h = jnp.tanh(self.layers[0](h))
            return self.layers[1](h)


@requires_flax
def test_params_of_nested_modules_and_rest():
    model = MLP(nnx.Rngs(1))
    _, params, rest = split_nnx(model)
    assert set(params) == {"hidden", "norm", "layers"}
    assert set(params["layers"]) == {0, 1}  # list positions are int keys
    assert params["layers"][1]["kernel"].shape == (16, 1)
    assert "mean" in rest["norm"] and "mean" not in params["norm"]
    # a custom filter: train only the last layer
    only_head = nnx.All(nnx.Param, nnx.PathContains(1))
    _, head_params, head_rest = split_nnx(model, only_head)
    assert set(head_params) == {"layers"} and set(head_params["layers"]) == {1}
    assert "kernel" in head_rest["hidden"]


@pytest.mark.slow
@requires_flax
def test_objective_is_pure_under_jit_grad_and_vmap():
    model = MLP(nnx.Rngs(1))  # BatchNorm in training mode would update its statistics
    graphdef, params, rest = split_nnx(model)
    fun = nnx_objective(mse, graphdef, rest)
    x = jnp.linspace(-1, 1, 8)[:, None]
    y = jnp.sin(3 * x)
    value, grad = jax.jit(jax.value_and_grad(fun))(params, x, y)
    assert value.shape == ()
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    # the objective did not change the model's (or rest's) statistics
    np.testing.assert_array_equal(model.norm.mean[...], np.zeros(16))
    np.testing.assert_array_equal(rest["norm"]["mean"][...], np.zeros(16))
    # the same value twice, eager and jitted, and under vmap over a batch of params
    np.testing.assert_allclose(fun(params, x, y), value, rtol=1e-6)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
    values = jax.vmap(fun, in_axes=(0, None, None))(stacked, x, y)
    np.testing.assert_allclose(values[0], value, rtol=1e-6)
    # finite-difference check of one gradient entry (float32: loose tolerance)
    eps = 1e-2
    bumped = jax.tree.map(lambda p: p, params)
    bumped["layers"][1]["bias"] = params["layers"][1]["bias"] + eps
    lowered = jax.tree.map(lambda p: p, params)
    lowered["layers"][1]["bias"] = params["layers"][1]["bias"] - eps
    fd = (fun(bumped, x, y) - fun(lowered, x, y)) / (2 * eps)
    np.testing.assert_allclose(grad["layers"][1]["bias"][0], fd, rtol=1e-2, atol=1e-4)


@requires_flax
def test_fit_linear_model_with_optax_adam_matches_lstsq():
    x, y = _linear_data()
    kernel_star, bias_star, mse_star = _lstsq(x, y)
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, params, rest = split_nnx(model)
    fun = nnx_objective(mse, graphdef, rest)
    schedule = optax.exponential_decay(0.05, transition_steps=300, decay_rate=0.3)
    optimizer = optax.adam(schedule)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            value, grad = jax.value_and_grad(fun)(params, x, y)
            updates, state = optimizer.update(grad, state, params)
            return (optax.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=1500)
        return params, losses

    initial = float(fun(params, x, y))
    params, _ = train(params)
    final = float(fun(params, x, y))
    assert final < 0.05 * initial
    # float32 training against the float64 closed form
    assert final == pytest.approx(mse_star, rel=1e-4)
    np.testing.assert_allclose(params["kernel"], kernel_star, atol=2e-3)
    np.testing.assert_allclose(params["bias"], bias_star, atol=2e-3)
    # the trained model, rebuilt, predicts like the least-squares fit
    trained = merge_nnx(graphdef, params, rest)
    np.testing.assert_allclose(trained(x), x @ kernel_star + bias_star, atol=5e-3)


@requires_flax
def test_fit_linear_model_with_gradient_descent_on_the_driver():
    x, y = _linear_data()
    kernel_star, bias_star, mse_star = _lstsq(x, y)
    params, rebuild = nnx_params(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    graphdef, _, rest = split_nnx(rebuild(params))
    fun = nnx_objective(mse, graphdef, rest)
    # fixed step 1/L, L = largest eigenvalue of the Hessian 2/n [x 1]'[x 1]
    design = np.concatenate([x, np.ones((64, 1))], axis=1).astype(np.float64)
    lipschitz = 2.0 * np.linalg.eigvalsh(design.T @ design / 64).max()
    solver = GradientDescent(fun, learning_rate=1.0 / lipschitz, atol=1e-5)
    result = jax.jit(lambda p: run_solver(solver, p, x, y, max_steps=2000))(params)
    assert bool(result.converged)
    assert result.trace["value"][0] > 10 * result.value
    assert float(result.value) == pytest.approx(mse_star, rel=1e-5)
    # ||grad|| <= 1e-5 and the Hessian's smallest eigenvalue bound the parameter error
    np.testing.assert_allclose(result.params["kernel"], kernel_star, atol=1e-4)
    np.testing.assert_allclose(result.params["bias"], bias_star, atol=1e-4)
    np.testing.assert_allclose(rebuild(result.params)(x), x @ kernel_star + bias_star, atol=1e-4)


@pytest.mark.slow
@requires_flax
def test_fit_small_mlp_with_adam_loss_drops(tmp_path):
    model = MLP(nnx.Rngs(2))
    model.eval()  # BatchNorm uses its (fixed) running statistics
    graphdef, params, rest = split_nnx(model)
    fun = nnx_objective(mse, graphdef, rest)
    x = jnp.linspace(-1, 1, 32)[:, None]
    y = jnp.sin(3 * x)
    optimizer = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(jax.grad(fun)(params, x, y), state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, optimizer.init(params)), length=400)[0][0]

    initial = float(fun(params, x, y))
    trained = train(params)
    assert float(fun(trained, x, y)) < 0.02 * initial
    # the params dict checkpoints as it is and rebuilds the same model
    save_pytree(tmp_path / "mlp.npz", trained)
    restored = load_pytree(tmp_path / "mlp.npz", like=trained)
    np.testing.assert_array_equal(
        merge_nnx(graphdef, restored, rest)(x), merge_nnx(graphdef, trained, rest)(x)
    )


@requires_flax
def test_bad_arguments():
    graphdef, params, rest = split_nnx(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        split_nnx({"w": jnp.ones(2)})
    with pytest.raises(TypeError, match=r"graphdef must be the flax\.nnx\.GraphDef"):
        merge_nnx(params, params, rest)
    with pytest.raises(TypeError, match=r"graphdef must be the flax\.nnx\.GraphDef"):
        nnx_objective(mse, "graphdef", rest)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        nnx_objective("mse", graphdef, rest)
    fun = nnx_objective(lambda model, x: model(x), graphdef, rest)  # not a scalar
    with pytest.raises(ValueError, match="must return a scalar, got shape"):
        fun(params, jnp.ones((3, 2)))


@requires_flax
def test_module_docstring_mentions_install_extra():
    assert "opifex-core[flax]" in _nnx.__doc__
