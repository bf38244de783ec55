"""The ``use_scale`` features of the MLP optimiser, against hand-written references."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from opifex.l2o import FeatureConfig
from opifex.l2o._features import init_features, update_features


def test_scale_features_restore_the_raw_values():
    config = FeatureConfig(use_scale=True)
    plain = FeatureConfig()
    params = {"w": jnp.array([0.5, -1.0, 2.0])}
    g = {"w": jnp.array([3.0, -4.0, 12.0])}
    feats, _ = update_features(config, g, init_features(config, params), params)
    base, _ = update_features(plain, g, init_features(plain, params), params)
    names = config.feature_names
    f = dict(zip(names, jnp.moveaxis(feats["w"], -1, 0), strict=True))
    # Without the scale features, the rest is what the plain configuration gives.
    kept = [i for i, n in enumerate(names) if not n.startswith("log_scale_")]
    np.testing.assert_allclose(feats["w"][:, kept], base["w"], rtol=1e-6)
    # normalised feature * exp(scale) = the raw value (first step from zero accumulators).
    raw = {"grad": g["w"], "param": params["w"], "momentum_0.9": 0.1 * g["w"]}
    for name, value in raw.items():
        np.testing.assert_allclose(f[name] * jnp.exp(f[f"log_scale_{name}"]), value, rtol=1e-5)
        np.testing.assert_allclose(
            f[f"log_scale_{name}"], jnp.log(jnp.sqrt(jnp.mean(value**2))), rtol=1e-5
        )
    assert config.num_features == plain.num_features + 16


def test_scale_features_track_the_gradient_scale():
    config = FeatureConfig(use_scale=True)
    params = {"w": jnp.ones(4)}
    g = jnp.array([1.0, -2.0, 0.5, 3.0])
    i = config.feature_names.index("log_scale_grad")
    logs = [
        update_features(config, {"w": c * g}, init_features(config, params), params)[0]["w"][0, i]
        for c in (1.0, 100.0)
    ]
    np.testing.assert_allclose(logs[1] - logs[0], np.log(100.0), rtol=1e-5)


def test_use_scale_must_be_a_bool():
    with pytest.raises(TypeError, match="use_scale"):
        FeatureConfig(use_scale=1)
