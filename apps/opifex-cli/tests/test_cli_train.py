"""``opifex train l2o``: a tiny meta-training run writes a loadable optimiser; bad options fail.

The saved file is read back with ``opifex.core.load_pytree`` / ``load_metadata`` and rebuilt
with ``opifex.l2o.mlp_optimizer``; Adam's printed median final loss is recomputed here with a
plain optax loop on the evaluation tasks.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from opifex.cli._app import app
from opifex.cli._train import make_family
from opifex.core import load_metadata, load_pytree
from opifex.l2o import FeatureConfig, init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o.benchmarking import sample_tasks

WIDE = {"COLUMNS": "200"}
TINY = ["--steps", "20", "--tasks", "4", "--horizon", "20", "--truncation", "10"]
EVAL_TASKS = 8


def _invoke(*args: str):
    return CliRunner().invoke(app, ["train", "l2o", *args], env=WIDE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "quadratic.npz"
    result = _invoke(
        *TINY, "--dimension", "4", "--eval-tasks", str(EVAL_TASKS), "--output", str(path)
    )
    assert result.exit_code == 0, result.output
    return path, result.output


@pytest.mark.e2e
def test_writes_a_loadable_optimiser_with_its_provenance(trained):
    path, output = trained
    metadata = load_metadata(path)
    assert metadata["family"] == repr(make_family("quadratic", 4))
    assert metadata["horizon"] == 20 and metadata["command"] == "opifex train l2o"
    config = metadata["meta_train"]
    assert (config["estimator"], config["num_outer_steps"], config["num_tasks"]) == ("pes", 20, 4)
    assert (config["truncation_length"], config["seed"]) == (10, 0)
    features = FeatureConfig(**metadata["features"])
    template = init_mlp_optimizer_params(
        jax.random.key(1), features=features, hidden_sizes=tuple(metadata["hidden_sizes"])
    )
    phi = load_pytree(path, like=template)
    optimizer = mlp_optimizer(
        phi,
        features=features,
        lr_scale=metadata["lr_scale"],
        magnitude_scale=metadata["magnitude_scale"],
    )
    params = jax.numpy.ones(4)
    updates, _ = optimizer.update(
        jax.numpy.ones(4), optimizer.init(params), params, value=jax.numpy.float32(1.0)
    )
    assert np.isfinite(np.asarray(updates)).all()
    assert f"wrote {path}" in output


@pytest.mark.e2e
def test_prints_the_summary_stored_in_the_file(trained):
    path, output = trained
    training, evaluation = load_metadata(path)["training"], load_metadata(path)["evaluation"]
    assert training["outer_steps"] == 20
    assert training["validation_best"] <= training["validation_first"]
    assert evaluation["num_tasks"] == EVAL_TASKS and evaluation["adam_lr"] == 1.0
    assert f"{training['validation_best']:.4g}" in output
    assert f"{evaluation['median_speedup']:.3g}" in output
    assert "optax.adam(1) (--adam-lr, not tuned here)" in output


@pytest.mark.e2e
def test_adam_final_loss_matches_a_plain_optax_loop(trained):
    path, _ = trained
    evaluation = load_metadata(path)["evaluation"]
    family = make_family("quadratic", 4)
    eval_key = jax.random.split(jax.random.key(0), 3)[2]  # the documented evaluation key
    tasks, params = sample_tasks(family, jax.random.split(eval_key, EVAL_TASKS))
    adam = optax.adam(1.0)
    finals = []
    for i in range(EVAL_TASKS):
        task = jax.tree.map(lambda leaf, i=i: leaf[i], tasks)
        x = params[i]
        state = adam.init(x)
        for _ in range(20):
            grad = jax.grad(family.loss)(x, task, None)
            updates, state = adam.update(grad, state, x)
            x = optax.apply_updates(x, updates)
        finals.append(float(family.loss(x, task, None)))
    np.testing.assert_allclose(evaluation["adam_median_final_loss"], np.median(finals), rtol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "sphere"], "'sphere' is not one of quadratic, rosenbrock"),
        (["--estimator", "adam"], "'adam' is not one of pes, truncated_bptt"),
        (["--steps", "0"], "must be >= 1, got 0"),
        (["--truncation", "30"], "30 is longer than --horizon 20"),
        (["--family", "rosenbrock", "--dimension", "3"], "dimension must be even"),
        (["--adam-lr", "0"], "must be > 0"),
    ],
)
def test_bad_options_fail_clearly(tmp_path, args, message):
    result = _invoke(*TINY, *args, "--output", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("output", "message"), [("x.txt", "must end in .npz"), ("no/such/x.npz", "does not exist")]
)
def test_bad_output_fails_clearly(tmp_path, output, message):
    result = _invoke(*TINY, "--output", str(tmp_path / output))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_output_is_required():
    result = _invoke(*TINY)
    assert result.exit_code == 2
    assert "Missing option '--output'" in result.output
