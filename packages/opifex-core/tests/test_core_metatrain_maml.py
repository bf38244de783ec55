"""Learned initialisations (MAML, FOMAML, Meta-SGD, a start for Adam) against closed forms and
finite differences of NumPy transcriptions, in float64.

Tasks are quadratics ``f_c(x) = 0.5 (x - c)^T H (x - c)`` with a fixed SPD ``H`` and a random
centre ``c ~ N(MEAN, I)`` per task. MAML (``LearnedInit(family, optax.sgd(alpha))``) takes
``K`` SGD steps from ``phi``: ``x_K - c = M (phi - c)`` with ``M = (I - alpha H)^K``, so the
query loss after the steps is ``0.5 (phi - c)^T M^T H M (phi - c)`` and

* MAML's meta-gradient (``full_backprop``) is ``M^T H M (phi - c)``;
* FOMAML's (``first_order``), the query gradient at the adapted parameters, ``H M (phi - c)``;
* Reptile's direction (``reptile``), the start minus the adapted parameters, ``(I - M)(phi - c)``.

All three vanish on average at ``phi = MEAN``, which ``meta_train`` must find. Meta-SGD and a start
for Adam are checked against central differences (step 1e-6, float64) of NumPy loops.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.metatrain import (
    InnerLoop,
    LearnedInit,
    LearnedOptimizer,
    MetaTrainConfig,
    first_order,
    full_backprop,
    meta_train,
    reptile,
)

H = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
MEAN = np.array([1.0, -2.0, 0.5])
ALPHA, K = 0.3, 4
M = np.linalg.matrix_power(np.eye(3) - ALPHA * H, K)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@dataclasses.dataclass(frozen=True)
class Centres:
    """``0.5 (x - c)^T H (x - c)`` with ``c ~ N(MEAN, I)``; the loss ignores its key."""

    def sample(self, key):
        return {"centre": jnp.asarray(MEAN) + jax.random.normal(key, (3,), jnp.float64)}

    def init(self, key, task):
        return jnp.zeros(3)

    def loss(self, params, task, key):
        d = params - task["centre"]
        return 0.5 * d @ jnp.asarray(H) @ d


FAMILY = Centres()
PHI = np.array([0.2, 0.1, -0.3])


def estimate(estimator, phi, num_tasks=4, seed=1):
    """One estimate from a fresh state; returns the gradient, the state and the info."""
    state = estimator.init(jax.random.key(0), phi, num_tasks, K)
    return jax.jit(estimator.estimate)(jax.random.key(seed), phi, state, K)


@pytest.mark.slow
def test_maml_and_fomaml_meta_gradients_are_the_closed_forms():
    maml = LearnedInit(FAMILY, optax.sgd(ALPHA))
    grads = {}
    for name, build, matrix in (
        ("maml", full_backprop, M.T @ H @ M),
        ("fomaml", first_order, H @ M),
    ):
        grad, state, info = estimate(build(maml, K, meta_loss="final_query"), jnp.asarray(PHI))
        c = np.asarray(state.task["centre"])  # (tasks, 3): this estimate's tasks
        offset = PHI - c
        np.testing.assert_allclose(state.params, c + offset @ M.T, rtol=1e-12)  # adapted
        query = 0.5 * np.einsum("ti,ij,tj->t", offset @ M.T, H, offset @ M.T)
        np.testing.assert_allclose(info.task_meta_loss, query, rtol=1e-12)
        np.testing.assert_allclose(grad, np.mean(offset @ matrix.T, axis=0), rtol=1e-10)
        grads[name] = np.asarray(grad)
    assert np.linalg.norm(grads["maml"] - grads["fomaml"]) > 0.1 * np.linalg.norm(grads["maml"])


def test_reptile_direction_is_the_start_minus_the_adapted_parameters():
    estimator = reptile(LearnedInit(FAMILY, optax.sgd(ALPHA)), K, meta_loss="final_query")
    direction, state, info = estimate(estimator, jnp.asarray(PHI))
    offset = PHI - np.asarray(state.task["centre"])
    np.testing.assert_allclose(direction, np.mean(offset @ (np.eye(3) - M).T, axis=0), rtol=1e-10)
    query = 0.5 * np.einsum("ti,ij,tj->t", offset @ M.T, H, offset @ M.T)
    np.testing.assert_allclose(info.task_meta_loss, query, rtol=1e-12)  # reported, not used
    learned_optimizer = LearnedOptimizer(FAMILY, lambda phi: optax.sgd(phi["lr"]))
    with pytest.raises(TypeError, match="starts from phi"):
        estimate(reptile(learned_optimizer, K), {"lr": jnp.asarray(0.1)})


@pytest.mark.slow
def test_first_order_is_the_query_gradient_at_the_adapted_parameters():
    fomaml = first_order(LearnedInit(FAMILY, optax.sgd(ALPHA)), K, meta_loss="final_query")
    grad, state, _ = estimate(fomaml, jnp.asarray(PHI), num_tasks=1)
    query_grad = jax.grad(FAMILY.loss)(state.params[0], {"centre": state.task["centre"][0]}, None)
    np.testing.assert_allclose(grad, query_grad, rtol=1e-12)


@dataclasses.dataclass(frozen=True)
class MetaSGD:
    """Meta-SGD (Li et al., 2017): start ``phi["init"]``, steps ``-phi["rates"] * grad``."""

    family: Any

    def start(self, phi, key, task):
        return phi["init"]

    def optimizer(self, phi):
        def update(grads, state, params=None, **extra):
            return jax.tree.map(lambda g, r: -r * g, grads, phi["rates"]), state

        return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def meta_sgd_reference(init, rates, centres):
    """NumPy: mean over tasks of the query loss after K Meta-SGD steps; also the first-order
    gradients (the inner gradients held constant)."""
    losses, d_init, d_rates = [], [], []
    for c in centres:
        x, grads = init.copy(), []
        for _ in range(K):
            grads.append(H @ (x - c))
            x = x - rates * grads[-1]
        query_grad = H @ (x - c)
        losses.append(0.5 * (x - c) @ query_grad)
        d_init.append(query_grad)  # d x_K / d init = I when the gradients are constants
        d_rates.append(-query_grad * np.sum(grads, axis=0))  # d x_K / d rates = -sum of g_t
    return np.mean(losses), np.mean(d_init, axis=0), np.mean(d_rates, axis=0)


def central_differences(f, x, step=1e-6):
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = step
        grad[i] = (f(x + e) - f(x - e)) / (2 * step)
    return grad


@pytest.mark.slow
def test_meta_sgd_is_an_inner_loop_with_exact_and_first_order_meta_gradients():
    inner = MetaSGD(FAMILY)
    assert isinstance(inner, InnerLoop)
    init, rates = PHI, np.array([0.2, 0.4, 0.6])
    phi = {"init": jnp.asarray(init), "rates": jnp.asarray(rates)}
    grad, state, info = estimate(full_backprop(inner, K, meta_loss="final_query"), phi)
    centres = np.asarray(state.task["centre"])
    loss, fo_init, fo_rates = meta_sgd_reference(init, rates, centres)
    np.testing.assert_allclose(info.meta_loss, loss, rtol=1e-12)
    fd_init = central_differences(lambda v: meta_sgd_reference(v, rates, centres)[0], init)
    fd_rates = central_differences(lambda v: meta_sgd_reference(init, v, centres)[0], rates)
    np.testing.assert_allclose(grad["init"], fd_init, rtol=1e-6)
    np.testing.assert_allclose(grad["rates"], fd_rates, rtol=1e-6)
    grad, _, _ = estimate(first_order(inner, K, meta_loss="final_query"), phi)
    np.testing.assert_allclose(grad["init"], fo_init, rtol=1e-10)
    np.testing.assert_allclose(grad["rates"], fo_rates, rtol=1e-10)


def adam_reference(init, centre, lr=0.1, b1=0.9, b2=0.999, eps=1e-8):
    """NumPy: the query loss after K steps of Adam (Kingma and Ba, 2015, Algorithm 1)."""
    x, m, v = init.copy(), np.zeros(3), np.zeros(3)
    for t in range(1, K + 1):
        g = H @ (x - centre)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        x = x - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return 0.5 * (x - centre) @ H @ (x - centre)


def test_a_start_learned_for_adam_has_the_exact_meta_gradient():
    inner = LearnedInit(FAMILY, optax.adam(0.1))
    grad, state, info = estimate(full_backprop(inner, K, meta_loss="final_query"), PHI, 1)
    centre = np.asarray(state.task["centre"][0])
    np.testing.assert_allclose(info.meta_loss, adam_reference(PHI, centre), rtol=1e-12)
    fd = central_differences(lambda v: adam_reference(v, centre), PHI)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("estimator", "outer_optimizer"),
    [
        pytest.param("full_backprop", "adam", marks=pytest.mark.e2e),
        ("first_order", "adam"),
        pytest.param("reptile", "sgd", marks=pytest.mark.e2e),  # the suite's budget
    ],
)
def test_meta_train_finds_the_best_start(estimator, outer_optimizer):
    # a weak adaptation (2 steps of 0.1), so that the start matters in every direction
    config = MetaTrainConfig(
        estimator=estimator,
        meta_loss="final_query",
        validation_metric="final_loss",
        num_tasks=16,
        horizon=2,
        num_outer_steps=200,
        outer_learning_rate=0.05 if outer_optimizer == "adam" else 1.0,
        outer_optimizer=outer_optimizer,
        clip_norm=None,
        validation_every=50,
        num_validation_tasks=64,
    )
    maml = LearnedInit(FAMILY, optax.sgd(0.1))
    result = meta_train(jax.random.key(0), jnp.zeros(3), maml, config, progress=False)
    # the best start is the mean centre (where both estimators' expected gradient vanishes),
    # 2 away from the first; measured max |phi - MEAN| = 0.037 for both (0.13 at worst over
    # keys 0-2: Adam's jitter on the minibatch noise of 16 centres)
    np.testing.assert_allclose(result.phi, MEAN, atol=0.3)
    metric = result.history.validation_metric
    assert metric[-1] < 0.5 * metric[0], metric  # measured 2.27 -> 0.86
