"""Meta-gradient estimators against independent references, on a problem small enough to
unroll in full: SGD with a learnable ``log_lr`` on the fixed quadratic ``0.5 * sum(a * x^2)``,
``a = (1, 10)``, from ``x0 = (1, 1)``, horizon ``T = 20`` in truncations of ``K = 5``.

References are hand-written unrolls (the closed-form SGD recursion ``x <- x - lr * a * x``),
differentiated with ``jax.grad``; the Gaussian-smoothed references are exact expectations by
Gauss-Hermite quadrature (10 nodes per truncation's perturbation). Stochastic estimators are
averaged over ``R = 50`` independent replicates of 200 particles each (10,000 in all) and must
lie within 4 standard errors (the replicates' standard deviation / sqrt(R)) of the reference:
a false failure has probability < 1e-4. Truncated backpropagation must equal ``jax.grad``
exactly when ``K = T`` and be far (> 50 %, > 10 standard errors of PES) from it when ``K < T``;
full backpropagation must equal it whatever ``T``.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core.families import QuadraticFamily
from opifex.core.metatrain import (
    LearnedOptimizer,
    PESState,
    UnrollState,
    first_order,
    full_backprop,
    pes,
    truncated_bptt,
    truncated_es,
)
from opifex.core.metatrain._estimator import task_average

A = jnp.array([1.0, 10.0])
X0 = jnp.array([1.0, 1.0])
T, K = 20, 5
PHI = {"log_lr": jnp.log(jnp.float32(0.12))}
REPLICATES, PARTICLES = 50, 200


@dataclasses.dataclass(frozen=True)
class FixedQuadratic:
    """Always the same task and the same start (keys are ignored)."""

    def sample(self, key):
        return {"a": A}

    def init(self, key, task):
        return X0

    def loss(self, params, task, key):
        return 0.5 * jnp.sum(task["a"] * params**2)


FAMILY = FixedQuadratic()


def toy_sgd(phi):
    """The toy learned optimiser: SGD with step size ``exp(phi["log_lr"])``."""

    def update(grads, state, params=None, **extra):
        return jax.tree.map(lambda g: -jnp.exp(phi["log_lr"]) * g, grads), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


INNER = LearnedOptimizer(FAMILY, toy_sgd)


def reference_losses(log_lrs, num_steps, x=X0):
    """Losses after each of ``num_steps`` SGD steps, step ``t`` using ``log_lrs[t]``."""
    losses = []
    for t in range(num_steps):
        x = x - jnp.exp(log_lrs[t]) * A * x
        losses.append(0.5 * jnp.sum(A * x**2))
    return jnp.stack(losses), x


def full_meta_loss(log_lr, perturbations=None, schedule=(T,)):
    """Sum of the truncation meta-losses (1/K times the sum of losses) over whole unrolls.

    ``schedule`` lists the steps of each (fresh) unroll; ``perturbations[s]`` is added to
    ``log_lr`` in the ``s``-th truncation of ``K`` global steps.
    """
    total, step = 0.0, 0
    for length in schedule:
        log_lrs = [
            log_lr + (0.0 if perturbations is None else perturbations[(step + t) // K])
            for t in range(length)
        ]
        total = total + jnp.sum(reference_losses(log_lrs, length)[0]) / K
        step += length
    return total


def gauss_hermite(num_dims, sigma, nodes=10):
    """Points and weights for ``E[f(sigma * z)]``, ``z ~ N(0, I_num_dims)``."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    points = np.array(list(itertools.product(x, repeat=num_dims))) * sigma
    weights = np.prod(np.array(list(itertools.product(w / w.sum(), repeat=num_dims))), axis=1)
    return jnp.asarray(points, jnp.float32), jnp.asarray(weights, jnp.float32)


def smoothed_grad(f, num_dims, sigma):
    """``d/dlog_lr E[f(log_lr, eps)]`` with ``eps ~ N(0, sigma^2 I)``, by quadrature."""
    points, weights = gauss_hermite(num_dims, sigma)

    def smoothed(log_lr):
        return jnp.sum(weights * jax.vmap(lambda e: f(log_lr, e))(points))

    return float(jax.grad(smoothed)(PHI["log_lr"]))


def summed_estimates(estimator, key, num_truncations, horizon, num_tasks=1):
    """Sum of the estimates of ``num_truncations`` consecutive truncations from a fresh start."""
    state = estimator.init(jax.random.key(0), PHI, num_tasks, horizon)
    total = 0.0
    for s in range(num_truncations):
        grad, state, _ = estimator.estimate(jax.random.fold_in(key, s), PHI, state, horizon)
        total = total + grad["log_lr"]
    return total


def replicated(estimator, num_truncations, horizon, seed):
    """Mean and standard error of ``summed_estimates`` over independent replicates."""
    keys = jax.random.split(jax.random.key(seed), REPLICATES)
    run = jax.jit(jax.vmap(lambda k: summed_estimates(estimator, k, num_truncations, horizon)))
    values = np.asarray(run(keys), np.float64)
    return values.mean(), values.std(ddof=1) / np.sqrt(REPLICATES)


# --------------------------------------------------------------------------------------------
# truncated backpropagation


@pytest.mark.slow
def test_truncated_bptt_with_one_truncation_per_unroll_is_the_exact_gradient():
    # one truncation of T steps: its meta-loss is the mean over T steps, i.e. K / T * full
    exact = jax.grad(full_meta_loss)(PHI["log_lr"]) * K / T
    for estimator in (truncated_bptt(INNER, T), full_backprop(INNER, T)):
        grad = summed_estimates(estimator, jax.random.key(1), 1, T)
        np.testing.assert_allclose(grad, exact, rtol=1e-5)


@pytest.mark.slow  # ~3-4 s cold (compilation)
def test_full_backprop_is_exact_at_every_estimate_and_counts_a_shorter_horizon():
    # every estimate is a fresh whole unroll (nothing persists), so each one is exact
    estimator = full_backprop(INNER, T)
    state = estimator.init(jax.random.key(0), PHI, 2, T)
    exact = jax.grad(full_meta_loss)(PHI["log_lr"]) * K / T
    for s in range(2):
        grad, state, info = estimator.estimate(jax.random.key(s), PHI, state, T)
        np.testing.assert_allclose(grad["log_lr"], exact, rtol=1e-5)
        np.testing.assert_allclose(info.meta_loss, full_meta_loss(PHI["log_lr"]) * K / T, rtol=1e-5)
        assert state.step.tolist() == [T, T]
    # a curriculum stage of 8 steps: the unroll restarts after 8, the rest is left out
    short = jax.grad(lambda v: full_meta_loss(v, schedule=(8,)))(PHI["log_lr"]) * K / 8
    grad, _, _ = jax.jit(estimator.estimate)(jax.random.key(3), PHI, state, jnp.int32(8))
    np.testing.assert_allclose(grad["log_lr"], short, rtol=1e-5)


@pytest.mark.slow
def test_truncated_bptt_with_shorter_truncations_is_biased():
    truncated = float(summed_estimates(truncated_bptt(INNER, K), jax.random.key(1), 4, T))
    exact = float(jax.grad(full_meta_loss)(PHI["log_lr"]))
    # each truncation's gradient is the gradient of its own meta-loss from its start
    partial, x = 0.0, X0
    for _ in range(T // K):
        partial += jax.grad(lambda v, x=x: jnp.mean(reference_losses([v] * K, K, x)[0]))(
            PHI["log_lr"]
        )
        x = reference_losses([PHI["log_lr"]] * K, K, x)[1]
    np.testing.assert_allclose(truncated, partial, rtol=1e-5)
    assert abs(truncated - exact) > 0.5 * abs(exact)  # measured: 0.288 vs 0.120


def momentum_sgd(phi):
    """Heavy-ball SGD with learning rate ``exp(log_lr)`` and momentum ``sigmoid(logit)``."""
    return optax.sgd(jnp.exp(phi["log_lr"]), momentum=jax.nn.sigmoid(phi["momentum_logit"]))


@pytest.mark.slow
def test_truncated_bptt_matches_finite_differences_on_random_quadratics():
    estimator = truncated_bptt(LearnedOptimizer(QuadraticFamily(dimension=3), momentum_sgd), 4)
    phi = {"log_lr": jnp.log(jnp.float32(0.02)), "momentum_logit": jnp.float32(0.0)}
    state = estimator.init(jax.random.key(0), phi, 2, 12)
    grad, _, info = jax.jit(estimator.estimate)(jax.random.key(1), phi, state, 12)

    @jax.jit
    def meta_loss(phi):  # the same truncations, evaluated by the estimator itself
        return estimator.estimate(jax.random.key(1), phi, state, 12)[2].meta_loss

    for name in phi:
        h = 1e-2
        up = {**phi, name: phi[name] + h}
        down = {**phi, name: phi[name] - h}
        fd = (meta_loss(up) - meta_loss(down)) / (2 * h)
        np.testing.assert_allclose(grad[name], fd, rtol=2e-2, atol=1e-4)
    assert np.isfinite(info.meta_loss)


# --------------------------------------------------------------------------------------------
# PES


@pytest.mark.slow
def test_pes_is_unbiased_for_the_full_unroll_gradient_with_small_sigma():
    sigma = 0.01
    mean, se = replicated(pes(INNER, K, sigma=sigma, num_particles=PARTICLES), 4, T, 2)
    exact = float(jax.grad(full_meta_loss)(PHI["log_lr"]))
    # smoothing bias at this sigma (exact, by quadrature) is far below the standard error
    smoothed = smoothed_grad(lambda v, e: full_meta_loss(v, e), T // K, sigma)
    assert abs(smoothed - exact) < 0.3 * se
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    truncated = float(summed_estimates(truncated_bptt(INNER, K), jax.random.key(1), 4, T))
    assert abs(truncated - exact) > 10 * se


@pytest.mark.slow
def test_pes_is_unbiased_for_the_smoothed_full_unroll_gradient():
    # with sigma = 0.1 the smoothing matters: E[grad] is twice the unsmoothed gradient
    sigma = 0.1
    mean, se = replicated(pes(INNER, K, sigma=sigma, num_particles=PARTICLES), 4, T, 3)
    smoothed = smoothed_grad(lambda v, e: full_meta_loss(v, e), T // K, sigma)
    exact = float(jax.grad(full_meta_loss)(PHI["log_lr"]))
    assert abs(mean - smoothed) < 4 * se, (mean, smoothed, se)
    assert abs(mean - exact) > 10 * se


@pytest.mark.slow
def test_pes_is_unbiased_when_unrolls_reset_mid_truncation():
    # horizon 8, truncations of 5: unroll 1 = steps 1-8, unroll 2 = steps 9-16 (reset in the
    # 2nd truncation), unroll 3 = steps 17-20 (reset in the 4th)
    sigma = 0.01
    mean, se = replicated(pes(INNER, K, sigma=sigma, num_particles=PARTICLES), 4, 8, 4)
    schedule = (8, 8, 4)
    exact = float(jax.grad(lambda v: full_meta_loss(v, schedule=schedule))(PHI["log_lr"]))
    assert abs(mean - exact) < 4 * se, (mean, exact, se)


@pytest.mark.slow
def test_pes_particles_persist_and_xi_restarts_with_the_unroll():
    # horizon 8, truncations of 5: the 2nd truncation resets after 3 steps
    estimator = pes(INNER, K, sigma=0.05, num_particles=4)
    state = estimator.init(jax.random.key(0), PHI, 1, 8)
    assert isinstance(state, PESState)
    np.testing.assert_array_equal(state.xi["log_lr"], 0.0)
    states = [state]
    for s in range(3):
        states.append(estimator.estimate(jax.random.key(s + 1), PHI, states[-1], 8)[1])
    assert [int(st.step[0]) for st in states] == [0, 5, 2, 7]
    xi1, xi2, xi3 = (st.xi["log_lr"][0] for st in states[1:])  # (pairs,)
    base = PHI["log_lr"]

    def particles(schedule):  # params of the (+, -) particles for per-step log_lr offsets
        def one(offsets, sign):
            return reference_losses([base + sign * o for o in offsets], len(offsets))[1]

        return jnp.stack([jax.vmap(one, (0, None))(schedule, sign) for sign in (1.0, -1.0)], 1)

    # 1st truncation: 5 steps with phi +- eps1, and xi = eps1
    np.testing.assert_allclose(states[1].params[0], particles(jnp.stack([xi1] * 5, 1)), rtol=1e-5)
    # 2nd: the unroll restarted 2 steps ago with phi +- eps2, and xi restarted at eps2
    np.testing.assert_allclose(states[2].params[0], particles(jnp.stack([xi2] * 2, 1)), rtol=1e-5)
    # 3rd: 5 more steps with eps3 = xi3 - xi2 (xi accumulates within an unroll)
    schedule = jnp.stack([xi2] * 2 + [xi3 - xi2] * 5, 1)
    np.testing.assert_allclose(states[3].params[0], particles(schedule), rtol=1e-5)
    assert np.all(np.abs(xi3 - xi2) > 0)


# --------------------------------------------------------------------------------------------
# truncated ES


@pytest.mark.e2e
def test_truncated_es_is_unbiased_for_its_truncation():
    """From the state after one truncation, ES estimates the smoothed gradient of the next
    truncation's meta-loss from that state (its own truncation, not the full unroll)."""
    x5 = reference_losses([PHI["log_lr"]] * K, K)[1]

    def truncation_loss(log_lr, e=(0.0,)):
        return jnp.mean(reference_losses([log_lr + e[0]] * K, K, x5)[0])

    def start(estimator):  # the state after one truncation (x = x5 for every estimator)
        state = estimator.init(jax.random.key(0), PHI, 1, T)
        state = estimator.estimate(jax.random.key(99), PHI, state, T)[1]
        np.testing.assert_allclose(state.params[0], x5, rtol=1e-5, atol=1e-8)
        return state

    for sigma, seed in ((0.1, 5), (0.01, 6)):
        estimator = truncated_es(INNER, K, sigma=sigma, num_particles=PARTICLES)
        keys = jax.random.split(jax.random.key(seed), REPLICATES)
        estimate = jax.vmap(estimator.estimate, in_axes=(0, None, None, None))
        values = np.asarray(jax.jit(estimate)(keys, PHI, start(estimator), T)[0]["log_lr"])
        mean, se = values.mean(), values.std(ddof=1) / np.sqrt(REPLICATES)
        reference = smoothed_grad(truncation_loss, 1, sigma)
        assert abs(mean - reference) < 4 * se, (sigma, mean, reference, se)
    # at sigma = 0.01 that is truncated backpropagation's gradient of the same truncation
    tbptt = truncated_bptt(INNER, K)
    grad = tbptt.estimate(jax.random.key(7), PHI, start(tbptt), T)[0]["log_lr"]
    np.testing.assert_allclose(grad, jax.grad(truncation_loss)(PHI["log_lr"]), rtol=1e-5)
    assert abs(mean - float(grad)) < 4 * se


# --------------------------------------------------------------------------------------------
# non-finite tasks, jit / vmap, bad input


def test_task_average_leaves_out_and_resets_non_finite_tasks():
    grads = {"w": jnp.array([[1.0, 2.0], [jnp.nan, 0.0], [3.0, 4.0], [5.0, 6.0]])}
    losses = jnp.array([1.0, 2.0, jnp.inf, 3.0])
    step = jnp.array([3, 4, 5, 6], jnp.int32)
    grad, new_step, info = task_average(grads, losses, step, 20)
    np.testing.assert_allclose(grad["w"], [3.0, 4.0])  # tasks 0 and 3
    assert new_step.tolist() == [3, 20, 20, 6]
    assert info.nonfinite.tolist() == [False, True, True, False]
    np.testing.assert_allclose(info.meta_loss, 2.0)
    grad, _, info = task_average(grads, jnp.full(4, jnp.nan), step, 20)
    assert np.isnan(grad["w"]).all() and np.isnan(info.meta_loss)


@pytest.mark.slow
def test_estimators_jit_without_retracing_and_have_task_leading_axes():
    staggered, fresh = [0, 5, 10, 15], [0, 0, 0, 0]
    for estimator, steps in (
        (truncated_bptt(INNER, K), staggered),
        (pes(INNER, K, sigma=0.01, num_particles=4), staggered),
        (truncated_es(INNER, K, sigma=0.01, num_particles=4), staggered),
        (full_backprop(INNER, T), fresh),
        (first_order(INNER, T), fresh),
    ):
        state = estimator.init(jax.random.key(0), PHI, 4, T)
        assert state.step.tolist() == steps
        for leaf in jax.tree.leaves(state):
            assert leaf.shape[0] == 4
        estimate = jax.jit(estimator.estimate)
        jitted = estimate(jax.random.key(1), PHI, state, jnp.int32(T))
        assert np.isfinite(jitted[0]["log_lr"])
        estimate(jax.random.key(2), {"log_lr": PHI["log_lr"] + 1.0}, jitted[1], jnp.int32(12))
        assert estimate._cache_size() == 1
        assert isinstance(jitted[1], UnrollState | PESState)


def test_estimators_reject_bad_arguments():
    with pytest.raises(TypeError, match="inner must be an InnerLoop"):
        truncated_bptt(FAMILY, K)
    with pytest.raises(TypeError, match="inner must be an InnerLoop"):
        full_backprop(toy_sgd, T)
    with pytest.raises(TypeError, match="family must be a TaskFamily"):
        LearnedOptimizer(object(), toy_sgd)
    with pytest.raises(TypeError, match="make_optimizer must be callable"):
        LearnedOptimizer(FAMILY, "sgd")
    with pytest.raises(ValueError, match="truncation_length must be >= 1"):
        truncated_bptt(INNER, 0)
    with pytest.raises(TypeError, match="truncation_length must be an int"):
        pes(INNER, 2.5, sigma=0.1, num_particles=2)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        first_order(INNER, 0)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        pes(INNER, K, sigma=0.0, num_particles=2)
    with pytest.raises(ValueError, match="num_particles must be even"):
        truncated_es(INNER, K, sigma=0.1, num_particles=3)
    with pytest.raises(ValueError, match="num_particles must be >= 2"):
        pes(INNER, K, sigma=0.1, num_particles=0)
    with pytest.raises(ValueError, match="meta_loss must be one of"):
        full_backprop(INNER, T, meta_loss="sum")
