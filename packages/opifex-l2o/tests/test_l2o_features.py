"""Learned-optimiser features against closed forms: the moving averages after k steps of a
constant gradient, every feature channel from those closed forms, per-tensor normalisation
(unit RMS, scale invariance), time and loss features, dtypes and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.l2o import FeatureConfig
from opifex.l2o.optimizers import FeatureState, init_features, update_features


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


CONFIG = FeatureConfig(
    momentum_decays=(0.5, 0.9), rms_decays=(0.8, 0.99), timescales=(3.0, 30.0), eps=1e-8
)


def _run(config, grads, params, steps, values=None):
    state = init_features(config, params)
    features = None
    for k in range(steps):
        value = None if values is None else values[k]
        features, state = update_features(config, grads, state, params, value)
    return features, state


def test_moving_averages_after_k_constant_steps():
    g = np.array([[0.3, -1.2, 2.0], [0.0, 5.0, -0.01]])
    params = {"w": jnp.ones((2, 3))}
    k = 7
    _, state = _run(CONFIG, {"w": jnp.asarray(g)}, params, k)
    assert state.count.dtype == jnp.int32 and int(state.count) == k
    for i, beta in enumerate(CONFIG.momentum_decays):
        # m_k = (1 - beta^k) g for a constant gradient, from m_0 = 0
        np.testing.assert_allclose(state.momentum["w"][..., i], (1 - beta**k) * g, rtol=1e-13)
    for j, beta in enumerate(CONFIG.rms_decays):
        np.testing.assert_allclose(
            state.second_moment["w"][..., j], (1 - beta**k) * g**2, rtol=1e-13
        )


def test_every_feature_matches_its_closed_form():
    rng = np.random.default_rng(0)
    g, p = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    k, eps = 5, CONFIG.eps
    features, _ = _run(CONFIG, {"w": jnp.asarray(g)}, {"w": jnp.asarray(p)}, k)
    got = np.asarray(features["w"])
    assert got.shape == (4, 3, CONFIG.num_features)
    names = CONFIG.feature_names

    def normalised(x):
        return x / np.sqrt(np.mean(x**2) + eps**2)

    momenta = {b: (1 - b**k) * g for b in CONFIG.momentum_decays}
    rms = {b: np.sqrt((1 - b**k) * g**2 + eps**2) for b in CONFIG.rms_decays}
    last = rms[CONFIG.rms_decays[-1]]
    expected = {"grad": normalised(g), "param": normalised(p)}
    for b, m in momenta.items():
        expected[f"momentum_{b}"] = normalised(m)
        expected[f"momentum_{b}_over_rms_{CONFIG.rms_decays[-1]}"] = normalised(m / last)
    for b, r in rms.items():
        expected[f"rms_{b}"] = normalised(r)
        expected[f"grad_over_rms_{b}"] = normalised(g / r)
    for scale in CONFIG.timescales:
        expected[f"time_{scale:g}"] = np.full_like(g, np.tanh(k / scale))
    assert set(expected) == set(names)
    for name, value in expected.items():
        np.testing.assert_allclose(got[..., names.index(name)], value, rtol=1e-10, err_msg=name)


@pytest.mark.slow
def test_normalisation_is_per_tensor_and_scale_invariant():
    rng = np.random.default_rng(1)
    grads = {"a": jnp.asarray(rng.normal(size=(5,))), "b": jnp.asarray(rng.normal(size=(2, 2)))}
    params = {"a": jnp.asarray(rng.normal(size=(5,))), "b": jnp.asarray(rng.normal(size=(2, 2)))}
    features, _ = _run(CONFIG, grads, params, 3)
    own = 2 + 2 * len(CONFIG.momentum_decays) + 2 * len(CONFIG.rms_decays)
    for leaf in features.values():
        axes = tuple(range(leaf.ndim - 1))  # every axis but the features'
        rms = np.sqrt(np.mean(np.asarray(leaf[..., :own]) ** 2, axis=axes))
        np.testing.assert_allclose(rms, 1.0, rtol=1e-10)
    # the "b" tensor scaled by 1000 (gradient and parameter): the same features
    scaled_g = {"a": grads["a"], "b": 1e3 * grads["b"]}
    scaled_p = {"a": params["a"], "b": 1e3 * params["b"]}
    scaled, _ = _run(CONFIG, scaled_g, scaled_p, 3)
    for key in ("a", "b"):
        np.testing.assert_allclose(scaled[key], features[key], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_loss_features():
    config = FeatureConfig(momentum_decays=(0.5, 0.9), timescales=(), use_loss=True)
    assert config.feature_names[-2:] == ("loss_0.5", "loss_0.9")
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.array([1.0, 2.0, 3.0])}
    features, state = _run(config, grads, params, 4, values=[2.5] * 4)
    np.testing.assert_allclose(features["w"][..., -2:], 0.0, atol=1e-12)  # constant loss
    assert state.loss_average.shape == (2,)
    f1, f2 = 4.0, 1.0
    features, _ = _run(config, grads, params, 2, values=[f1, f2])
    for i, beta in enumerate(config.momentum_decays):
        average = (beta * f1 + f2) / (1 + beta)  # bias-corrected average of the two
        want = np.tanh((f2 - average) / (abs(average) + config.eps))
        np.testing.assert_allclose(features["w"][..., -2 + i], want, rtol=1e-12)


@pytest.mark.slow
def test_float32_stays_float32():
    params = {"w": jnp.ones((2, 2), jnp.float32), "b": jnp.zeros((), jnp.float32)}
    config = FeatureConfig(use_loss=True)
    state = init_features(config, params)
    features, state = update_features(
        config, params, state, params, value=jnp.asarray(1.0, jnp.float64)
    )
    assert features["w"].shape == (2, 2, config.num_features) and features["b"].shape == (
        config.num_features,
    )
    leaves = jax.tree.leaves((features, state.momentum, state.second_moment, state.loss_average))
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert state.count.dtype == jnp.int32


def test_jit_and_vmap_match_eager():
    rng = np.random.default_rng(2)
    grads = jnp.asarray(rng.normal(size=(3, 4)))
    params = jnp.asarray(rng.normal(size=(3, 4)))
    state = jax.vmap(lambda p: init_features(CONFIG, p))(params)
    assert isinstance(state, FeatureState) and state.count.shape == (3,)
    step = jax.jit(jax.vmap(lambda g, s, p: update_features(CONFIG, g, s, p)))
    features, _ = step(grads, state, params)
    for i in range(3):
        one, _ = _run(CONFIG, grads[i], params[i], 1)
        np.testing.assert_allclose(features[i], one, rtol=1e-12)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"momentum_decays": (0.9, 1.0)}, ValueError, r"momentum_decays\[1\]"),
        ({"momentum_decays": ()}, ValueError, "momentum_decays"),
        ({"rms_decays": (-0.1,)}, ValueError, "rms_decays"),
        ({"rms_decays": 0.9}, TypeError, "rms_decays"),
        ({"rms_decays": ("0.9",)}, TypeError, "rms_decays"),
        ({"timescales": (10.0, 0.0)}, ValueError, "timescales"),
        ({"timescales": (float("inf"),)}, ValueError, "timescales"),
        ({"use_loss": 1}, TypeError, "use_loss"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"momentum_decay": (0.9,)}, TypeError, "momentum_decay"),
    ],
)
def test_config_validation(options, error, match):
    with pytest.raises(error, match=match):
        FeatureConfig(**options)


def test_config_is_hashable_and_normalises_lists():
    config = FeatureConfig(momentum_decays=[0.5, 0.9])
    assert config.momentum_decays == (0.5, 0.9)
    assert hash(config) == hash(FeatureConfig(momentum_decays=(0.5, 0.9)))


def test_bad_input():
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="empty pytree"):
        init_features(CONFIG, {})
    with pytest.raises(TypeError, match="floating-point"):
        init_features(CONFIG, {"w": jnp.ones(3, jnp.int32)})
    with pytest.raises(TypeError, match="FeatureConfig"):
        init_features({"use_loss": True}, params)
    state = init_features(CONFIG, params)
    with pytest.raises(ValueError, match="same pytree structure"):
        update_features(CONFIG, {"w": jnp.ones(4)}, state, params)
    with pytest.raises(ValueError, match="needs params"):
        update_features(CONFIG, params, state, None)
    config = FeatureConfig(use_loss=True)
    state = init_features(config, params)
    with pytest.raises(TypeError, match="value="):
        update_features(config, params, state, params)
    with pytest.raises(ValueError, match="scalar"):
        update_features(config, params, state, params, value=jnp.ones(2))
