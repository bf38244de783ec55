"""``opifex.l2o``'s meta-training names are ``opifex.core.metatrain``'s: the types are the same
objects, and the ``(family, make_optimizer)`` functions give bit-identical results to their core
namesakes on ``LearnedOptimizer(family, make_optimizer)``; bad arguments name the argument."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import opifex.l2o as l2o
from opifex.core import metatrain as core
from opifex.core.families import QuadraticFamily
from opifex.l2o import _learned_meta as learned

FAMILY = QuadraticFamily(dimension=3)
PHI = l2o.init_learnable_sgd_params(0.01, 0.5)
CONFIG = core.MetaTrainConfig(
    estimator="pes",
    num_tasks=2,
    truncation_length=3,
    horizon=6,
    num_outer_steps=3,
    outer_learning_rate=0.05,
    num_particles=2,
    validation_every=3,
    num_validation_tasks=2,
)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_types_are_the_core_ones():
    assert l2o.L2OCurriculum is core.Curriculum
    assert l2o.MetaTrainConfig is core.MetaTrainConfig
    assert l2o.MetaTrainResult is core.MetaTrainResult
    # the expert names left opifex.l2o's top level: they still work, with a warning
    for name in (
        "MetaGradientEstimator",
        "MetaGradientInfo",
        "MetaTrainHistory",
        "MetaTrainState",
        "PESState",
        "UnrollOutput",
        "UnrollState",
        "WarmStart",
        "WarmStartStore",
        "truncation_meta_loss",
    ):
        with pytest.warns(DeprecationWarning, match=f"opifex.l2o.{name} is deprecated"):
            assert getattr(l2o, name) is getattr(core, name), name


@pytest.mark.e2e
def test_l2o_functions_are_core_functions_of_a_learned_optimizer():
    inner = core.LearnedOptimizer(FAMILY, l2o.learnable_sgd)
    key = jax.random.key(0)
    ours = l2o.meta_train(key, PHI, FAMILY, l2o.learnable_sgd, CONFIG, progress=False)
    theirs = core.meta_train(key, PHI, inner, CONFIG, progress=False)
    assert_trees_equal(ours.phi, theirs.phi)
    assert_trees_equal(ours.best_phi, theirs.best_phi)
    assert_trees_equal(tuple(ours.history), tuple(theirs.history))
    state = learned.init_unroll(key, PHI, FAMILY, l2o.learnable_sgd)
    assert_trees_equal(state, core.init_unroll(key, PHI, inner))
    options = {"num_steps": 4, "horizon": 6}
    assert_trees_equal(
        learned.unroll(key, PHI, state, family=FAMILY, make_optimizer=l2o.learnable_sgd, **options),
        core.unroll(key, PHI, state, inner=inner, **options),
    )
    batch = {"num_tasks": 2, "horizon": 6}
    assert_trees_equal(
        learned.init_unrolls(key, PHI, family=FAMILY, make_optimizer=l2o.learnable_sgd, **batch),
        core.init_unrolls(key, PHI, inner=inner, **batch),
    )
    for ours, theirs in (
        (learned.truncated_bptt(FAMILY, l2o.learnable_sgd, 3), core.truncated_bptt(inner, 3)),
        (
            learned.pes(FAMILY, l2o.learnable_sgd, 3, sigma=0.1, num_particles=2),
            core.pes(inner, 3, sigma=0.1, num_particles=2),
        ),
        (
            learned.truncated_es(FAMILY, l2o.learnable_sgd, 3, sigma=0.1, num_particles=2),
            core.truncated_es(inner, 3, sigma=0.1, num_particles=2),
        ),
    ):
        state = ours.init(key, PHI, 2, 6)
        assert_trees_equal(state, theirs.init(key, PHI, 2, 6))
        assert_trees_equal(ours.estimate(key, PHI, state, 6), theirs.estimate(key, PHI, state, 6))


def test_bad_family_or_optimizer_is_named():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="family must be a TaskFamily"):
        l2o.meta_train(key, PHI, object(), l2o.learnable_sgd, CONFIG)
    with pytest.raises(TypeError, match="make_optimizer must be callable"):
        l2o.meta_train(key, PHI, FAMILY, None, CONFIG)
    with pytest.raises(TypeError, match="family must be a TaskFamily"):
        learned.truncated_bptt(object(), l2o.learnable_sgd, 3)
