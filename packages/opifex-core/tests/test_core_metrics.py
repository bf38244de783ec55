"""Tests for the optimiser comparison metrics: steps_to_target and speedup.

Expected values are worked out by hand, in closed form, or by a plain-Python loop that follows
the documented rules; none of them calls the code under test.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core import speedup, steps_to_target

INF = math.inf


# --------------------------------------------------------------------------------------------
# steps_to_target


@pytest.mark.parametrize(
    ("curve", "target", "expected"),
    [
        ([4.0, 2.0, 1.0, 0.5], 1.0, 2.0),  # first index with loss <= target
        ([4.0, 2.0, 1.0, 0.5], 1.5, 2.0),
        ([4.0, 2.0, 1.0, 0.5], 4.0, 0.0),  # reached at the initial point
        ([4.0, 2.0, 1.0, 0.5], 0.5, 3.0),  # at the last step
        ([4.0, 2.0, 1.0, 0.5], 0.1, INF),  # never: censored
        ([4.0, 0.5, 3.0, 0.2], 1.0, 1.0),  # non-monotone: the first crossing counts
        ([math.nan, math.nan, 0.5], 1.0, 2.0),  # NaN is not reached
        ([4.0, math.nan, 3.0], 1.0, INF),
        ([math.nan], math.inf, INF),  # NaN never reaches anything
        ([4.0, math.inf, 0.0], 1.0, 2.0),
        ([4.0, 2.0], math.inf, 0.0),
        ([4.0, 2.0], -math.inf, INF),
        ([7.0], 7.0, 0.0),
    ],
)
def test_steps_to_target_hand_made(curve, target, expected):
    result = steps_to_target(jnp.array(curve), target)
    assert result.shape == ()
    assert jnp.issubdtype(result.dtype, jnp.floating)
    assert float(result) == expected


def _reference_steps(curve, target):
    """The documented rule, as a plain loop."""
    for k, loss in enumerate(curve):
        if not math.isnan(loss) and loss <= target:
            return float(k)
    return INF


def _random_curves(seed, num_curves=40, length=25):
    rng = np.random.default_rng(seed)
    curves = np.cumprod(rng.uniform(0.7, 1.1, size=(num_curves, length)), axis=1)
    curves[rng.random(curves.shape) < 0.1] = np.nan  # divergence / NaN padding
    targets = rng.uniform(0.0, 1.0, size=num_curves)
    return curves.astype(np.float32), targets.astype(np.float32)


def test_steps_to_target_batched_jit_vmap_match_reference():
    curves, targets = _random_curves(0)
    expected = np.array(
        [_reference_steps(c.tolist(), float(t)) for c, t in zip(curves, targets, strict=True)]
    )
    assert np.isinf(expected).any() and np.isfinite(expected).any()  # both cases occur

    batched = steps_to_target(curves, targets)  # leading axes are a batch
    np.testing.assert_array_equal(batched, expected)
    np.testing.assert_array_equal(jax.jit(steps_to_target)(curves, targets), expected)
    np.testing.assert_array_equal(jax.vmap(steps_to_target)(curves, targets), expected)
    # one scalar target for the whole batch
    scalar = np.array([_reference_steps(c.tolist(), 0.5) for c in curves])
    np.testing.assert_array_equal(steps_to_target(curves, 0.5), scalar)
    # batch axes nest: (2, 20, T)
    nested = steps_to_target(curves.reshape(2, 20, -1), targets.reshape(2, 20))
    np.testing.assert_array_equal(nested, expected.reshape(2, 20))


def test_steps_to_target_on_a_nan_padded_solver_trace():
    # a solver trace: entry 0 is the initial point, NaN after the last step
    trace = jnp.array([10.0, 5.0, 2.5, 1.25, jnp.nan, jnp.nan])
    assert float(steps_to_target(trace, 3.0)) == 2.0
    assert float(steps_to_target(trace, 1.0)) == INF


def test_steps_to_target_float64():
    with jax.enable_x64(True):
        result = steps_to_target(jnp.array([3.0, 2.0, 1.0], jnp.float64), 2.0)
        assert result.dtype == jnp.float64 and float(result) == 1.0
    # integer curves give a floating-point count
    assert jnp.issubdtype(steps_to_target(jnp.array([3, 2, 1]), 2).dtype, jnp.floating)


@pytest.mark.parametrize("bad", [jnp.float32(1.0), jnp.zeros((0,)), jnp.zeros((3, 0))])
def test_steps_to_target_needs_a_curve(bad):
    with pytest.raises(ValueError, match="losses"):
        steps_to_target(bad, 1.0)


# --------------------------------------------------------------------------------------------
# speedup


BASELINE = [8.0, 4.0, 2.0, 1.0, 0.5]  # final loss 0.5, first reached at step 4


@pytest.mark.parametrize(
    ("method", "baseline", "target", "expected"),
    [
        ([8.0, 2.0, 0.4, 0.1], BASELINE, None, 2.0),  # 4 steps / 2 steps
        ([8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5], BASELINE, None, 4.0 / 7.0),  # slower
        ([8.0, 4.0, 2.0, 1.0, 0.5], BASELINE, None, 1.0),  # the same curve
        ([8.0, 7.0], BASELINE, None, 0.0),  # never reaches 0.5: censored to 0
        ([8.0, math.nan, 0.1], BASELINE, None, 2.0),  # recovers after a NaN
        ([8.0, math.nan, math.nan], BASELINE, None, 0.0),  # diverged
        ([8.0, 1.5, 0.1], BASELINE, 2.0, 2.0),  # explicit target: baseline 2 steps, method 1
        ([8.0, 1.5, 0.1], BASELINE, 0.2, INF),  # the baseline never reaches 0.2
        ([8.0, 9.0], BASELINE, 0.2, 0.0),  # neither reaches it: the method's censoring wins
        ([0.4, 0.1], BASELINE, None, INF),  # the method starts below the target
        ([0.4, 0.1], [0.4, 0.3], 0.5, 1.0),  # both at step 0
        ([8.0, 1.0], [8.0, 4.0, math.nan], None, math.nan),  # NaN target is undefined
        ([8.0, 1.0], BASELINE, math.nan, math.nan),
    ],
)
def test_speedup_hand_made(method, baseline, target, expected):
    result = speedup(jnp.array(method), jnp.array(baseline), target)
    assert result.shape == ()
    if math.isnan(expected):
        assert math.isnan(float(result))
    else:
        np.testing.assert_allclose(float(result), expected, rtol=1e-6)


def test_speedup_of_gradient_descent_step_sizes_closed_form():
    # f(x) = x^2 from x0 = 1 with step size eta: f_k = (1 - 2 eta)^(2k)
    num_steps = 200
    k = np.arange(num_steps + 1)
    baseline = (1 - 2 * 0.05) ** (2.0 * k)  # contraction 0.9
    method = (1 - 2 * 0.1) ** (2.0 * k)  # contraction 0.8
    # the method reaches 0.9^(2T) at the first k with 0.8^(2k) <= 0.9^(2T)
    method_steps = math.ceil(num_steps * math.log(0.9) / math.log(0.8))
    expected = num_steps / method_steps
    with jax.enable_x64(True):
        result = speedup(jnp.asarray(method), jnp.asarray(baseline))
    np.testing.assert_allclose(float(result), expected, rtol=1e-12)
    assert 2.0 < expected < 2.2


def _reference_speedup(method, baseline, target=None):
    """The documented rules, as plain Python."""
    target = baseline[-1] if target is None else target
    if math.isnan(target):
        return math.nan
    b, m = _reference_steps(baseline, target), _reference_steps(method, target)
    if math.isinf(m):
        return 0.0
    if m == 0:
        return 1.0 if b == 0 else INF
    return b / m  # inf when the baseline never reaches the target


@pytest.mark.slow
def test_speedup_batched_jit_vmap_match_reference():
    methods, _ = _random_curves(1, num_curves=30, length=20)
    baselines, _ = _random_curves(2, num_curves=30, length=35)  # lengths may differ
    baselines[:, -1] = np.where(np.isnan(baselines[:, -1]), 0.9, baselines[:, -1])
    expected = np.array(
        [
            _reference_speedup(m.tolist(), b.tolist())
            for m, b in zip(methods, baselines, strict=True)
        ]
    )
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(speedup(methods, baselines), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(speedup)(methods, baselines), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(speedup)(methods, baselines), expected, rtol=1e-6)

    # many methods against one baseline, and an explicit per-curve target
    one = baselines[0]
    expected_one = [_reference_speedup(m.tolist(), one.tolist()) for m in methods]
    np.testing.assert_allclose(speedup(methods, one), expected_one, rtol=1e-6)
    targets = np.linspace(0.2, 1.0, 30, dtype=np.float32)
    expected_targets = [
        _reference_speedup(m.tolist(), b.tolist(), float(t))
        for m, b, t in zip(methods, baselines, targets, strict=True)
    ]
    np.testing.assert_allclose(speedup(methods, baselines, targets), expected_targets, rtol=1e-6)


@pytest.mark.parametrize(
    ("method", "baseline", "name"),
    [(jnp.float32(1.0), jnp.ones(3), "losses"), (jnp.ones(3), jnp.zeros((0,)), "baseline")],
)
def test_speedup_needs_curves(method, baseline, name):
    with pytest.raises(ValueError, match=name):
        speedup(method, baseline)
