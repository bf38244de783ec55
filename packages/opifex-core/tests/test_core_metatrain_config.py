"""``MetaTrainConfig`` and ``Curriculum``: valid values, and a clear error naming the field
for every kind of bad value (wrong type, out of range, unknown option)."""

from __future__ import annotations

import dataclasses

import pytest

from opifex.core import config_from_dict
from opifex.core.metatrain import Curriculum, MetaTrainConfig


def test_default_config_is_valid_frozen_and_hashable():
    config = MetaTrainConfig()
    assert config.estimator == "pes" and config.truncation_length <= config.horizon
    assert hash(config) == hash(MetaTrainConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.horizon = 3
    built = config_from_dict(MetaTrainConfig, {"estimator": "truncated_bptt", "clip_norm": None})
    assert built.estimator == "truncated_bptt" and built.clip_norm is None


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"estimator": "adam"}, ValueError, "estimator must be one of 'truncated_bptt'"),
        ({"estimator": 1}, TypeError, "estimator must be a str"),
        ({"validation_metric": "median"}, ValueError, "validation_metric must be one of"),
        ({"num_tasks": 0}, ValueError, "num_tasks must be >= 1"),
        ({"num_tasks": 2.0}, TypeError, "num_tasks must be an int"),
        ({"num_tasks": True}, TypeError, "num_tasks must be an int"),
        ({"truncation_length": 0}, ValueError, "truncation_length must be >= 1"),
        ({"truncation_length": 11, "horizon": 10}, ValueError, r"truncation_length \(11\)"),
        (
            {"meta_loss": "final_query"},
            ValueError,
            'final_query" needs validation_metric="final_loss"',
        ),
        ({"num_outer_steps": 0}, ValueError, "num_outer_steps must be >= 1"),
        ({"outer_learning_rate": 0.0}, ValueError, "outer_learning_rate must be a finite"),
        ({"outer_learning_rate": float("nan")}, ValueError, "outer_learning_rate"),
        ({"outer_learning_rate": "1e-3"}, TypeError, "outer_learning_rate must be a number"),
        ({"clip_norm": -1.0}, ValueError, "clip_norm must be a finite number > 0"),
        ({"pes_sigma": float("inf")}, ValueError, "pes_sigma must be a finite number > 0"),
        ({"num_particles": 3}, ValueError, "num_particles must be even"),
        ({"num_particles": 0}, ValueError, "num_particles must be >= 2"),
        ({"validation_every": 0}, ValueError, "validation_every must be >= 1"),
        ({"num_validation_tasks": 0}, ValueError, "num_validation_tasks must be >= 1"),
        ({"patience": 0}, ValueError, "patience must be >= 1"),
        ({"checkpoint_every": 1.5}, TypeError, "checkpoint_every must be an int"),
        ({"outer_optimizer": "lamb"}, ValueError, "outer_optimizer must be one of 'adam'"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_config_values_raise_naming_the_field(options, error, message):
    with pytest.raises(error, match=message):
        MetaTrainConfig(**options)


def test_whole_unroll_estimators_do_not_truncate():
    # truncation_length is a truncated estimator's setting: it need not fit in the horizon
    config = MetaTrainConfig(estimator="full_backprop", horizon=5, truncation_length=10)
    assert config.horizon == 5
    maml = MetaTrainConfig(
        estimator="first_order", horizon=3, meta_loss="final_query", validation_metric="final_loss"
    )
    assert maml.meta_loss == "final_query"


def test_unknown_config_options_are_rejected():
    with pytest.raises(ValueError, match="unknown options for MetaTrainConfig: sigma"):
        config_from_dict(MetaTrainConfig, {"sigma": 0.1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'sigma'"):
        MetaTrainConfig(sigma=0.1)


def test_curriculum_schedule():
    curriculum = Curriculum([5, 10, 20], steps_per_stage=3)
    assert curriculum.horizons == (5, 10, 20)  # stored as a tuple: hashable
    assert [curriculum.stage_at(s) for s in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert [curriculum.horizon_at(s) for s in (0, 3, 6, 100)] == [5, 10, 20, 20]
    assert hash(curriculum) == hash(Curriculum((5, 10, 20), 3))
    assert Curriculum.geometric(10, 80, 4, steps_per_stage=5).horizons == (10, 20, 40, 80)
    assert Curriculum.geometric(4, 6, 5, steps_per_stage=5).horizons == (4, 5, 6)  # deduped
    assert Curriculum.geometric(7, 50, 1, steps_per_stage=5).horizons == (50,)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (((), 1), ValueError, "horizons must not be empty"),
        (((10, 5), 1), ValueError, "strictly increasing"),
        (((5, 5), 1), ValueError, "strictly increasing"),
        (((0, 5), 1), ValueError, r"horizons\[0\] must be >= 1"),
        (((5, 7.5), 1), TypeError, r"horizons\[1\] must be an int"),
        (("510", 1), TypeError, "horizons must be a tuple of ints"),
        (((5,), 0), ValueError, "steps_per_stage must be >= 1"),
    ],
)
def test_bad_curricula_raise(args, error, message):
    with pytest.raises(error, match=message):
        Curriculum(*args)


def test_bad_geometric_curricula_raise():
    with pytest.raises(ValueError, match="stop must be >= 10"):
        Curriculum.geometric(10, 5, 3, steps_per_stage=1)
    with pytest.raises(ValueError, match="num_stages must be >= 1"):
        Curriculum.geometric(1, 5, 0, steps_per_stage=1)
