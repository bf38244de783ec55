"""run_optimizer: loss curves against hand-written optax loops, L-BFGS against
opifex.second_order.minimize, divergence kept and flagged, key conventions and bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from opifex.core import SolveStatus
from opifex.core.families import QuadraticFamily, TeacherStudentMLPFamily
from opifex.l2o._evaluate import (
    diverged_mask,
    evaluation_counts,
    run_optimizer,
    sample_tasks,
    split_task_keys,
)
from opifex.second_order import create_lbfgs_optimizer, minimize

QUADRATIC = QuadraticFamily(dimension=5)
# a minibatch family: checks the documented per-step key convention
MLP = TeacherStudentMLPFamily(layer_sizes=(2, 4, 1), num_points=16, batch_size=4)


def _reference_curves(optimizer, family, task_keys, num_steps):
    """A plain Python optax loop per task, with the documented key convention."""
    curves = []
    for task_key in task_keys:
        sample_key, init_key, stream = jax.random.split(task_key, 3)
        task = family.sample(sample_key)
        params = family.init(init_key, task)
        state = optimizer.init(params)
        losses = []
        for k in range(num_steps + 1):
            key = jax.random.fold_in(stream, k)
            value, grad = jax.value_and_grad(family.loss)(params, task, key)
            losses.append(float(value))
            updates, state = optimizer.update(grad, state, params, value=value)
            params = optax.apply_updates(params, updates)
        curves.append(losses)
    return np.asarray(curves)


@pytest.mark.slow
@pytest.mark.parametrize(
    "family",
    [
        pytest.param(QUADRATIC, id="quadratic"),
        pytest.param(MLP, id="minibatch_mlp", marks=pytest.mark.e2e),
    ],
)
def test_adam_curves_equal_a_hand_written_optax_loop(family):
    keys = jax.random.split(jax.random.key(3), 3)
    optimizer = optax.adam(0.05)
    result = run_optimizer(optimizer, family, keys, 15)
    reference = _reference_curves(optimizer, family, keys, 15)
    losses, counts = result.trace["value"], evaluation_counts(result)
    assert losses.shape == counts.shape == (3, 16)
    np.testing.assert_allclose(losses, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(counts, np.tile(np.arange(1, 17), (3, 1)))
    assert not np.any(diverged_mask(losses))
    np.testing.assert_array_equal(result.num_steps, 15)  # no convergence test: every step
    # the final parameters are those of the last iterate: their loss is the curve's last entry
    tasks, _ = sample_tasks(family, keys)
    if family is QUADRATIC:
        finals = jax.vmap(lambda p, t: family.loss(p, t, None))(result.params, tasks)
        np.testing.assert_allclose(finals, losses[:, -1], rtol=1e-6)


def _quadratic_loss(params, matrix, target):
    return jnp.sum((matrix @ params - target) ** 2)


@pytest.mark.e2e
def test_lbfgs_curve_and_evaluation_counts_match_minimize():
    keys = jax.random.split(jax.random.key(1), 2)
    result = run_optimizer(create_lbfgs_optimizer(), QUADRATIC, keys, 8)
    losses, counts = result.trace["value"], evaluation_counts(result)
    tasks, x0 = sample_tasks(QUADRATIC, keys)
    for i in range(2):
        reference = minimize(
            _quadratic_loss,
            x0[i],
            tasks.matrix[i],
            tasks.target[i],
            max_steps=8,
            atol=0.0,
            rtol=0.0,
        )
        assert int(reference.num_steps) == 8  # no rejected step: the runs are comparable
        # float32, batched against unbatched: a few ulps of the summed squares apart (1.1e-5
        # with the oldest supported JAX, below 1e-5 with the latest)
        np.testing.assert_allclose(losses[i], reference.trace["value"], rtol=3e-5)
        assert int(counts[i, -1]) == int(reference.stats["num_fun_evals"])
    # one L-BFGS iteration costs at least one evaluation, usually more
    assert np.all(np.diff(counts, axis=1) >= 1)


@dataclasses.dataclass(frozen=True)
class _CountingFamily(QuadraticFamily):
    """A quadratic family that counts the Python executions of its loss (not part of its hash)."""

    calls: list = dataclasses.field(default_factory=list, compare=False)

    def loss(self, params, task, key):
        self.calls.append(1)
        return super().loss(params, task, key)


@pytest.mark.slow
def test_plain_transformation_is_accepted_and_not_recompiled():
    keys = jax.random.split(jax.random.key(0), 2)
    optimizer = optax.scale(-0.01)  # not a GradientTransformationExtraArgs
    family = _CountingFamily(dimension=5)
    first = run_optimizer(optimizer, family, keys, 5)
    traced = len(family.calls)
    second = run_optimizer(optimizer, family, keys, 5)
    assert traced > 0 and len(family.calls) == traced  # the second call reused the compilation
    np.testing.assert_array_equal(first.trace["value"], second.trace["value"])
    reference = _reference_curves(optax.sgd(0.01), QUADRATIC, keys, 5)
    np.testing.assert_allclose(first.trace["value"], reference, rtol=1e-6)


@pytest.mark.slow
def test_divergence_is_kept_and_flagged():
    keys = jax.random.split(jax.random.key(0), 4)
    diverging = run_optimizer(optax.sgd(10.0), QUADRATIC, keys, 60)
    losses = np.asarray(diverging.trace["value"])
    assert np.all(diverged_mask(losses))
    assert np.all(np.isfinite(losses[:, 0]))  # the start is finite
    assert np.all(~np.isfinite(losses[:, -1]))  # inf / NaN, then NaN padding: never replaced
    # the run stops at the first non-finite loss or gradient, which stays in the curve
    grad_norms = np.asarray(diverging.trace["grad_norm"])
    for i, steps in enumerate(np.asarray(diverging.num_steps)):
        assert not (np.isfinite(losses[i, steps]) and np.isfinite(grad_norms[i, steps]))
        assert np.all(np.isfinite(losses[i, :steps]))
    np.testing.assert_array_equal(diverging.status, SolveStatus.NONFINITE)
    counts = evaluation_counts(diverging)  # stay at the last count after the stop
    np.testing.assert_array_equal(counts[:, -1], np.asarray(diverging.num_steps) + 1)
    stable = run_optimizer(optax.sgd(1e-3), QUADRATIC, keys, 60)
    assert not np.any(diverged_mask(stable.trace["value"]))


@pytest.mark.slow
def test_raw_uint32_keys_equal_typed_keys_and_splits_are_disjoint():
    typed = jax.random.split(jax.random.key(5), 3)
    raw = jax.random.key_data(typed)
    a = run_optimizer(optax.adam(0.1), QUADRATIC, typed, 4)
    b = run_optimizer(optax.adam(0.1), QUADRATIC, raw, 4)
    np.testing.assert_array_equal(a.trace["value"], b.trace["value"])

    train, test = split_task_keys(jax.random.key(0), 4, 6)
    train_data = {tuple(k) for k in np.asarray(jax.random.key_data(train)).tolist()}
    test_data = {tuple(k) for k in np.asarray(jax.random.key_data(test)).tolist()}
    assert len(train_data) == 4 and len(test_data) == 6 and not train_data & test_data
    # the training keys do not depend on how many held-out tasks there are
    more_train, _ = split_task_keys(jax.random.key(0), 4, 9)
    np.testing.assert_array_equal(jax.random.key_data(more_train), jax.random.key_data(train))


def test_bad_arguments():
    keys = jax.random.split(jax.random.key(0), 2)
    adam = optax.adam(0.1)
    with pytest.raises(TypeError, match="optimizer"):
        run_optimizer(lambda g: g, QUADRATIC, keys, 3)
    with pytest.raises(TypeError, match="TaskFamily"):
        run_optimizer(adam, object(), keys, 3)
    with pytest.raises(TypeError, match="task_keys"):
        run_optimizer(adam, QUADRATIC, jnp.zeros(3), 3)
    with pytest.raises(ValueError, match="task_keys"):
        run_optimizer(adam, QUADRATIC, jax.random.key(0), 3)
    with pytest.raises(ValueError, match="num_steps"):
        run_optimizer(adam, QUADRATIC, keys, 0)
    with pytest.raises(ValueError, match="num_test"):
        split_task_keys(jax.random.key(0), 2, 0)
    with pytest.raises(TypeError, match="key"):
        split_task_keys(3, 2, 2)
