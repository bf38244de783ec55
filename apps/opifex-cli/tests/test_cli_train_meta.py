"""``opifex train meta``: a short run writes phi with its settings, and the evaluation it prints
and stores is ``opifex.meta.evaluate_adaptation`` of the saved phi; bad options fail clearly."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from opifex.cli._app import app
from opifex.cli._train_meta import EVALUATION_KEY, make_learner
from opifex.core import load_metadata, load_pytree
from opifex.core.families import SinusoidFamily
from opifex.meta import FewShotFamily

WIDE = {"COLUMNS": "200"}
TINY = ["--iterations", "20", "--meta-batch", "4", "--eval-tasks", "20"]


def _invoke(*args: str):
    return CliRunner().invoke(app, ["train", "meta", *args], env=WIDE)


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["maml", "meta-sgd"])
def test_writes_phi_and_the_evaluation_of_it(tmp_path, method):
    path = tmp_path / f"{method}.npz"
    result = _invoke(*TINY, "--method", method, "--output", str(path))
    assert result.exit_code == 0, result.output
    metadata = load_metadata(path)
    assert metadata["command"] == "opifex train meta" and metadata["iterations"] == 20
    assert metadata["config"]["meta_batch_size"] == 4
    learner = make_learner(method, 0.01, 1e-3, 1, 4)
    network = SinusoidFamily(num_points=10)
    like = learner.meta_parameters(network.init(jax.random.key(0), None))
    phi = load_pytree(path, like=like)
    family = FewShotFamily(network, num_support=10, num_query=100)
    curve = learner.evaluate(jax.random.key(EVALUATION_KEY), phi, family, num_tasks=20)
    np.testing.assert_allclose(metadata["evaluation"]["mse"], curve.mean, rtol=1e-5)
    assert f"{curve.mean[2]:.4f}" in result.output  # the 10-step MSE, as printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "anil"], "'anil' is not one of maml, fomaml, reptile, meta-sgd"),
        (["--iterations", "0"], "must be >= 1, got 0"),
        (["--inner-lr", "0"], "must be > 0, got 0.0"),
        (["--eval-tasks", "1"], "must be >= 2, got 1"),
    ],
)
def test_bad_options_fail_clearly(tmp_path, args, message):
    result = _invoke(*TINY, *args, "--output", str(tmp_path / "x.npz"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x.npz").exists()


def test_bad_output_fails_clearly(tmp_path):
    result = _invoke(*TINY, "--output", str(tmp_path / "x.txt"))
    assert result.exit_code == 2 and "must end in .npz" in " ".join(result.output.split())
