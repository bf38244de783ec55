"""The coordinate-wise LSTM optimiser against a NumPy transcription of Andrychowicz et al.
(2016): the gradient preprocessing (Appendix A, p = 10), two LSTM layers per coordinate with
states carried over steps, the scaled read-out; the init and bad ``phi``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.l2o import init_lstm_optimizer_params, lstm_optimizer
from opifex.l2o.optimizers import LSTMOptimizerState, preprocess_gradient


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _np_preprocess(g, p):
    """The paper's preprocessing, coordinate by coordinate."""
    out = np.empty((g.size, 2))
    for i, x in enumerate(g.ravel()):
        if abs(x) >= np.exp(-p):
            out[i] = (np.log(abs(x)) / p, np.sign(x))
        else:
            out[i] = (-1.0, np.exp(p) * x)
    return out.reshape((*g.shape, 2))


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_lstm_step(phi, g, hs, cs, scale, p):
    """One step of the reference optimiser for one coordinate: ``(update, hs, cs)``."""
    x = _np_preprocess(np.array(g), p)
    new_h, new_c = [], []
    for cell, h, c in zip(phi["cells"], hs, cs, strict=True):
        z = x @ np.asarray(cell["w_x"]) + h @ np.asarray(cell["w_h"]) + np.asarray(cell["b"])
        i, f, cand, o = np.split(z, 4)
        c = _np_sigmoid(f) * c + _np_sigmoid(i) * np.tanh(cand)
        h = _np_sigmoid(o) * np.tanh(c)
        new_h.append(h)
        new_c.append(c)
        x = h
    out = x @ np.asarray(phi["out"]["w"]) + np.asarray(phi["out"]["b"])
    return scale * out[0], new_h, new_c


def test_preprocessing_matches_the_paper():
    g = np.array([3.0, -0.2, 1e-3, -1e-5, 4e-5, 0.0, np.exp(-10.0), -np.exp(-10.0) * 0.999])
    for p in (10.0, 2.0):
        np.testing.assert_allclose(preprocess_gradient(jnp.asarray(g), p), _np_preprocess(g, p))
    # finite derivative everywhere, also at 0 and across the threshold
    jac = jax.vmap(jax.jacfwd(preprocess_gradient))(jnp.asarray(g))
    assert np.all(np.isfinite(jac))
    np.testing.assert_allclose(jac[5], [0.0, np.exp(10.0)])  # at g = 0: (-1, e^p g)
    np.testing.assert_allclose(jac[0], [1.0 / (10.0 * 3.0), 0.0])  # d/dg log|g| / p


@pytest.mark.slow
def test_updates_match_a_numpy_lstm_over_several_steps():
    phi = init_lstm_optimizer_params(jax.random.key(0), hidden_size=5, num_layers=2)
    phi = jax.tree.map(lambda w: w.astype(jnp.float64), phi)
    scale, p = 0.3, 10.0
    opt = lstm_optimizer(phi, output_scale=scale, preprocess_p=p)
    rng = np.random.default_rng(0)
    params = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(())}
    state = opt.init(params)
    assert isinstance(state, LSTMOptimizerState)
    assert state.hidden["a"].shape == (2, 2, 2, 5) and state.cell["b"].shape == (2, 5)
    coords = {"a": [(i, j) for i in range(2) for j in range(2)], "b": [()]}
    ref = {(k, c): ([np.zeros(5)] * 2, [np.zeros(5)] * 2) for k in coords for c in coords[k]}
    for _ in range(4):
        grads = {"a": rng.normal(size=(2, 2)) * 1e-3, "b": rng.normal() * 1e-6}
        updates, state = opt.update(jax.tree.map(jnp.asarray, grads), state, params)
        for key, cs in coords.items():
            for c in cs:
                hs, cells = ref[key, c]
                want, hs, cells = _np_lstm_step(phi, np.asarray(grads[key])[c], hs, cells, scale, p)
                ref[key, c] = (hs, cells)
                np.testing.assert_allclose(updates[key][c], want, rtol=1e-12, atol=1e-15)
                np.testing.assert_allclose(state.hidden[key][c], np.stack(hs), rtol=1e-12)
                np.testing.assert_allclose(state.cell[key][c], np.stack(cells), rtol=1e-12)


def test_init_params_layout():
    phi = init_lstm_optimizer_params(jax.random.key(1), hidden_size=3, num_layers=3)
    assert [c["w_x"].shape for c in phi["cells"]] == [(2, 12), (3, 12), (3, 12)]
    for cell in phi["cells"]:
        np.testing.assert_array_equal(cell["b"].reshape(4, 3), [[0] * 3, [1] * 3, [0] * 3, [0] * 3])
        assert cell["w_h"].shape == (3, 12) and cell["w_h"].dtype == jnp.float32
    assert phi["out"]["w"].shape == (3, 1) and phi["out"]["b"].shape == (1,)


def _with(phi, path, value):
    phi = jax.tree.map(lambda x: x, phi)  # a copy of the containers
    node = phi
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return phi


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda phi: {"cells": phi["cells"]}, TypeError, "keys"),
        (lambda phi: {**phi, "cells": []}, TypeError, "non-empty list"),
        (lambda phi: _with(phi, ("cells", 0, "w_x"), jnp.zeros((3, 16))), ValueError, "w_x"),
        (lambda phi: _with(phi, ("cells", 1, "w_h"), jnp.zeros((4, 12))), ValueError, "w_h"),
        (lambda phi: _with(phi, ("cells", 1, "b"), jnp.zeros(15)), ValueError, r"\['b'\]"),
        (lambda phi: _with(phi, ("out", "w"), jnp.zeros((4, 2))), ValueError, "out"),
        (lambda phi: _with(phi, ("out", "b"), np.zeros(1, np.int32)), TypeError, "floating"),
    ],
)
def test_bad_phi(edit, error, match):
    phi = init_lstm_optimizer_params(jax.random.key(0), hidden_size=4, num_layers=2)
    with pytest.raises(error, match=match):
        lstm_optimizer(edit(phi))


def test_bad_options():
    phi = init_lstm_optimizer_params(jax.random.key(0), hidden_size=4, num_layers=1)
    with pytest.raises(ValueError, match="output_scale"):
        lstm_optimizer(phi, output_scale=0.0)
    with pytest.raises(ValueError, match="preprocess_p"):
        lstm_optimizer(phi, preprocess_p=-1.0)
    with pytest.raises(ValueError, match="hidden_size"):
        init_lstm_optimizer_params(jax.random.key(0), hidden_size=0)
    with pytest.raises(TypeError, match="dtype"):
        init_lstm_optimizer_params(jax.random.key(0), dtype=jnp.int32)
