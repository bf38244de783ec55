"""The per-coordinate MLP optimiser: its update against a NumPy forward pass of the MLP on the
features, the small steps of an untrained ``phi``, the loss features' ``value=``, the init and
bad ``phi`` / options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.l2o import FeatureConfig, init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o.optimizers import FeatureState, init_features, update_features


def _np_mlp(phi, x):
    for layer in phi[:-1]:
        x = np.maximum(x @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0.0)
    return x @ np.asarray(phi[-1]["w"]) + np.asarray(phi[-1]["b"])


@pytest.mark.slow
@pytest.mark.parametrize("use_loss", [False, True])
def test_update_is_minus_lr_d_exp_m(use_loss):
    with jax.enable_x64(True):
        features = FeatureConfig(use_loss=use_loss)
        phi = init_mlp_optimizer_params(
            jax.random.key(0), features=features, hidden_sizes=(16, 8), dtype=jnp.float64
        )
        opt = mlp_optimizer(phi, features=features, lr_scale=0.02, magnitude_scale=0.3)
        rng = np.random.default_rng(0)
        params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=4))}
        state, feature_state = opt.init(params), init_features(features, params)
        for factor in (1.0, 2.0, 3.0):
            grads = jax.tree.map(lambda p, f=factor: f * p, params)
            value = jnp.asarray(10.0 / factor)
            updates, state = opt.update(grads, state, params, value=value)
            inputs, feature_state = update_features(features, grads, feature_state, params, value)
            for key in params:
                out = _np_mlp(phi, np.asarray(inputs[key]))
                want = -0.02 * out[..., 0] * np.exp(0.3 * out[..., 1])
                np.testing.assert_allclose(updates[key], want, rtol=1e-12)
        assert isinstance(state, FeatureState) and int(state.count) == 3


@pytest.mark.e2e
def test_untrained_steps_are_small():
    phi = init_mlp_optimizer_params(jax.random.key(3))
    opt = mlp_optimizer(phi)  # lr_scale = magnitude_scale = 1e-3
    params = {"w": jax.random.normal(jax.random.key(4), (50, 20))}
    updates, _ = opt.update({"w": 100.0 * params["w"]}, opt.init(params), params)
    # |d| is O(1) on unit-RMS features, exp(1e-3 m) is about 1: steps of about 1e-3,
    # whatever the scale of the gradient
    size = float(jnp.sqrt(jnp.mean(updates["w"] ** 2)))
    assert 1e-5 < size < 1e-2
    assert updates["w"].dtype == jnp.float32


def test_init_params_layout():
    features = FeatureConfig(timescales=(), use_loss=True)
    phi = init_mlp_optimizer_params(jax.random.key(0), features=features, hidden_sizes=())
    assert len(phi) == 1 and phi[0]["w"].shape == (features.num_features, 2)
    phi = init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=[64])
    assert [layer["w"].shape for layer in phi] == [(20, 64), (64, 2)]
    assert all(float(jnp.max(jnp.abs(layer["b"]))) == 0.0 for layer in phi)
    assert phi[0]["w"].dtype == jnp.float32


def test_loss_features_need_value():
    features = FeatureConfig(use_loss=True)
    opt = mlp_optimizer(
        init_mlp_optimizer_params(jax.random.key(0), features=features), features=features
    )
    params = {"w": jnp.ones(3)}
    with pytest.raises(TypeError, match="value="):
        opt.update(params, opt.init(params), params)


def test_update_needs_params():
    opt = mlp_optimizer(init_mlp_optimizer_params(jax.random.key(0)))
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs params"):
        opt.update(params, opt.init(params))


def _edit(phi, i, key, value):
    phi = [dict(layer) for layer in phi]
    phi[i][key] = value
    return phi


PHI = init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=(8, 4))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: mlp_optimizer({"w": PHI[0]["w"]}), TypeError, "non-empty list"),
        (lambda: mlp_optimizer([]), TypeError, "non-empty list"),
        (lambda: mlp_optimizer([{"w": PHI[0]["w"]}, *PHI[1:]]), TypeError, r"phi\[0\]"),
        (
            lambda: mlp_optimizer(PHI, features=FeatureConfig(use_loss=True)),
            ValueError,
            "FeatureConfig gives 24 features",
        ),
        (lambda: mlp_optimizer(_edit(PHI, 1, "w", jnp.zeros((7, 4)))), ValueError, r"phi\[1\]"),
        (lambda: mlp_optimizer(_edit(PHI, 2, "w", jnp.zeros((4, 3)))), ValueError, r"\(4, 2\)"),
        (lambda: mlp_optimizer(_edit(PHI, 0, "b", jnp.zeros(9))), ValueError, r"phi\[0\]\['b'\]"),
        (
            lambda: mlp_optimizer(_edit(PHI, 0, "b", np.zeros(8, np.int32))),
            TypeError,
            "floating-point",
        ),
        (lambda: mlp_optimizer(PHI, features={"use_loss": True}), TypeError, "FeatureConfig"),
        (lambda: mlp_optimizer(PHI, lr_scale=0.0), ValueError, "lr_scale"),
        (lambda: mlp_optimizer(PHI, magnitude_scale=float("nan")), ValueError, "magnitude"),
        (lambda: mlp_optimizer(PHI, learning_rate=0.1), TypeError, "learning_rate"),
        (
            lambda: init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=(8, 0)),
            ValueError,
            r"hidden_sizes\[1\]",
        ),
        (lambda: init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=8), TypeError, "hidden"),
        (
            lambda: init_mlp_optimizer_params(jax.random.key(0), dtype=jnp.int32),
            TypeError,
            "dtype",
        ),
    ],
)
def test_bad_phi_and_options(make, error, match):
    with pytest.raises(error, match=match):
        make()
