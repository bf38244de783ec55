"""Sharding of the task batch: in a subprocess with 4 host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``), ``meta_train`` over all 4 devices
gives the same ``phi`` and history as over one (to float32 reduction-order tolerance), every
leaf of the persistent unrolls is split along ``"tasks"`` into 4 shards of ``num_tasks / 4``
tasks while ``phi`` is replicated, and a task count the devices do not divide is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import PartitionSpec

    from opifex.core.families import QuadraticFamily
    from opifex.core.metatrain import LearnedOptimizer, MetaTrainConfig, meta_train

    def momentum_sgd(phi):
        return optax.sgd(jnp.exp(phi["log_lr"]), momentum=jax.nn.sigmoid(phi["momentum_logit"]))

    assert len(jax.devices()) == 4, jax.devices()
    inner = LearnedOptimizer(QuadraticFamily(dimension=3), momentum_sgd)
    phi0 = {"log_lr": jnp.log(jnp.float32(0.01)), "momentum_logit": jnp.float32(0.0)}
    for estimator in ("pes", "truncated_bptt"):
        config = MetaTrainConfig(
            estimator=estimator, num_tasks=8, truncation_length=3, horizon=9,
            num_outer_steps=6, outer_learning_rate=0.05, pes_sigma=0.05, num_particles=4,
            validation_every=3, num_validation_tasks=4,
        )
        args = (jax.random.key(0), phi0, inner, config)
        sharded = meta_train(*args, progress=False)
        single = meta_train(*args, progress=False, devices=jax.devices()[:1])
        for a, b in zip(jax.tree.leaves(sharded.phi), jax.tree.leaves(single.phi), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert not np.allclose(sharded.phi["log_lr"], phi0["log_lr"])
        np.testing.assert_allclose(sharded.history.meta_loss, single.history.meta_loss, rtol=1e-5)
        np.testing.assert_allclose(
            sharded.history.validation_metric, single.history.validation_metric, rtol=1e-5
        )
        for leaf in jax.tree.leaves(sharded.state.estimator_state):
            assert leaf.sharding.spec == PartitionSpec("tasks"), leaf.sharding
            shards = leaf.addressable_shards
            assert len({s.device for s in shards}) == 4
            assert all(s.data.shape == (2, *leaf.shape[1:]) for s in shards)
        for leaf in jax.tree.leaves((sharded.phi, sharded.state.outer_state)):
            assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
        for leaf in jax.tree.leaves(single.state.estimator_state):
            assert len(leaf.sharding.device_set) == 1
    bad = MetaTrainConfig(estimator="truncated_bptt", num_tasks=6, truncation_length=3, horizon=9)
    try:
        meta_train(jax.random.key(0), phi0, inner, bad, progress=False)
    except ValueError as error:
        assert "num_tasks (6) must be divisible by the number of devices (4)" in str(error)
    else:
        raise AssertionError("no error for 6 tasks on 4 devices")
    print("sharding-ok")
    """
)


@pytest.mark.e2e
def test_sharded_meta_training_matches_one_device_and_splits_the_tasks():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "sharding-ok" in result.stdout
