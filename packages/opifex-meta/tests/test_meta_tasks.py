"""Few-shot families: every inner step sees the task's fixed support set, the query its
query set (checked against the sinusoid's own formula); task pools draw every task, reject bad
arrays; a Flax NNX model trains through a pool and comes back as a module."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core.families import QuadraticFamily, SinusoidFamily
from opifex.meta import FewShotFamily, MAMLConfig, MAMLOptimizer, TaskPool

SINUSOID = SinusoidFamily(hidden_sizes=(8,))


@pytest.mark.slow
def test_few_shot_tasks_carry_fixed_support_and_query_sets():
    family = FewShotFamily(SINUSOID, num_support=5, num_query=7)
    task = family.sample(jax.random.key(0))
    (x_s, y_s), (x_q, y_q) = task.support, task.query
    assert x_s.shape == (5, 1) and x_q.shape == (7, 1)
    amplitude, phase = task.task
    np.testing.assert_allclose(y_s, amplitude * np.sin(x_s - phase), rtol=1e-6)
    np.testing.assert_allclose(y_q, amplitude * np.sin(x_q - phase), rtol=1e-6)
    params = family.init(jax.random.key(1), task)
    loss = jax.jit(family.loss)
    losses = [loss(params, task, jax.random.key(k)) for k in range(3)]
    assert losses[0] == losses[1] == losses[2]  # the key does not redraw the support set
    np.testing.assert_allclose(losses[0], np.mean((SINUSOID.apply(params, x_s) - y_s) ** 2))
    np.testing.assert_allclose(
        family.query_loss(params, task, None), np.mean((SINUSOID.apply(params, x_q) - y_q) ** 2)
    )


def test_few_shot_family_rejects_a_base_without_points():
    with pytest.raises(TypeError, match="base must define support_query"):
        FewShotFamily(QuadraticFamily(dimension=2))
    with pytest.raises(TypeError, match="base must be a TaskFamily"):
        FewShotFamily(object())
    with pytest.raises(ValueError, match="num_support must be >= 1"):
        FewShotFamily(SINUSOID, num_support=0)


@pytest.mark.slow
def test_a_task_pool_draws_every_task_with_its_own_sets():
    x = jnp.arange(12.0).reshape(4, 3)
    pool = TaskPool(lambda w, x, y: jnp.sum((w * x - y) ** 2), (x, 2 * x), (x, 3 * x), jnp.zeros)
    tasks = jax.vmap(pool.sample)(jax.random.split(jax.random.key(0), 200))
    assert sorted(set(np.asarray(tasks.task).tolist())) == [0, 1, 2, 3]
    np.testing.assert_array_equal(tasks.support[0], x[tasks.task])
    one = jax.tree.map(lambda a: a[0], tasks)
    assert float(pool.loss(2.0, one, None)) == 0.0 and float(pool.query_loss(3.0, one, None)) == 0.0


@pytest.mark.parametrize(
    ("support", "query", "error", "message"),
    [
        ((jnp.ones((3, 2)), jnp.ones((2, 2))), (jnp.ones((3, 2)),) * 2, ValueError, "same number"),
        (jnp.ones((3, 2)), (jnp.ones((3, 2)),) * 2, TypeError, "support must be a pair"),
        ((jnp.ones((0, 2)),) * 2, (jnp.ones((0, 2)),) * 2, ValueError, "leading task axis"),
        ((jnp.full((3, 2), jnp.inf),) * 2, (jnp.ones((3, 2)),) * 2, ValueError, "NaN or inf"),
    ],
)
def test_a_task_pool_rejects_bad_arrays(support, query, error, message):
    with pytest.raises(error, match=message):
        TaskPool(lambda w, x, y: 0.0, support, query, jnp.zeros)


@pytest.mark.e2e
def test_an_nnx_model_meta_trains_on_task_arrays_and_comes_back_as_a_module():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))

    def loss_fn(model, x, y):
        return jnp.mean((model(x)[..., 0] - y) ** 2)

    # tasks y = x . s + 1 with s ~ N(0, I): the best start has bias 1
    slopes = jax.random.normal(jax.random.key(0), (32, 2))
    x = jax.random.normal(jax.random.key(1), (32, 10, 2))
    y = jnp.einsum("tnd,td->tn", x, slopes) + 1.0
    maml = MAMLOptimizer(MAMLConfig(0.1, 0.05, meta_batch_size=8), loss_fn=loss_fn)
    result = maml.meta_train(model, (x[:, :5], y[:, :5]), (x[:, 5:], y[:, 5:]), 25, progress=False)
    learned = maml.model_from(result.phi)
    assert isinstance(learned, nnx.Linear)
    np.testing.assert_allclose(learned.bias[...], [1.0], atol=0.2)
    assert model.bias[...][0] == 0.0  # the model given is left as it was
