"""L2OBenchmark: the train / held-out split, speedup of a baseline against itself, divergence
counting, evaluation-axis speedups, JSON round trip, plotting and bad input."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import optax
import pytest

from opifex.core.families import LassoFamily, QuadraticFamily
from opifex.l2o._baselines import run_baseline, tune_learning_rate
from opifex.l2o._benchmark import METRICS, L2OBenchmark
from opifex.l2o._benchmark_result import BenchmarkResult
from opifex.l2o._compare import compare_runs, losses_by_evaluations
from opifex.l2o._evaluate import run_optimizer, sample_tasks, split_task_keys

FAMILY = QuadraticFamily(dimension=4)
GRID = (0.01, 0.1)
STEPS, TRAIN, TEST = 12, 3, 5


@pytest.fixture(scope="module")
def result():
    bench = L2OBenchmark([FAMILY], ["adam", "sgd", "lbfgs"], learning_rates=GRID)
    learned = {
        # the tuned Adam rebuilt (its tuned learning rate is checked below): speedup exactly 1
        "adam_again": optax.adam(0.1),
        "unstable": optax.sgd(10.0),
    }
    return bench.run(learned, STEPS, TRAIN, TEST, jax.random.key(7), progress=False)


@pytest.mark.e2e
def test_tuning_uses_the_training_tasks_and_runs_use_the_held_out_tasks(result):
    family_result = result.families["QuadraticFamily"]
    train_keys, test_keys = split_task_keys(jax.random.fold_in(jax.random.key(7), 0), TRAIN, TEST)
    for name in ("adam", "sgd"):
        assert family_result.tuning[name] == tune_learning_rate(
            name, FAMILY, train_keys, STEPS, GRID
        )
        rate = family_result.tuning[name].learning_rate
        reference = run_baseline(name, FAMILY, test_keys, STEPS, rate)
        np.testing.assert_array_equal(family_result.losses[name], reference.trace["value"])
    np.testing.assert_array_equal(
        family_result.losses["lbfgs"],
        run_baseline("lbfgs", FAMILY, test_keys, STEPS).trace["value"],
    )
    np.testing.assert_array_equal(
        family_result.losses["adam_again"],
        run_optimizer(optax.adam(0.1), FAMILY, test_keys, STEPS).trace["value"],
    )
    train_tasks, _ = sample_tasks(FAMILY, train_keys)
    test_tasks, _ = sample_tasks(FAMILY, test_keys)
    for matrix in np.asarray(test_tasks.matrix):  # no held-out task was seen in tuning
        assert not np.any(np.all(np.isclose(np.asarray(train_tasks.matrix), matrix), axis=(1, 2)))


@pytest.mark.e2e
def test_speedup_of_the_tuned_baseline_against_itself_is_one(result):
    family_result = result.families["QuadraticFamily"]
    assert family_result.tuning["adam"].learning_rate == 0.1
    values = family_result.per_task["adam_again"]["adam"]
    np.testing.assert_array_equal(values["speedup"], np.ones(TEST))
    np.testing.assert_array_equal(values["evaluation_speedup"], np.ones(TEST))
    np.testing.assert_array_equal(values["final_loss_ratio"], np.ones(TEST))
    row = next(
        r
        for r in result.summary()["comparisons"]
        if r["optimizer"] == "adam_again" and r["baseline"] == "adam"
    )
    assert row["speedup_median"] == row["speedup_p90"] == 1.0


@pytest.mark.e2e
def test_divergence_is_counted_never_hidden(result):
    family_result = result.families["QuadraticFamily"]
    assert family_result.fraction_diverged("unstable") == 1.0
    assert family_result.fraction_diverged("adam") == 0.0
    assert not np.all(np.isfinite(family_result.losses["unstable"]))
    # a diverged run never reaches the baseline's final loss: speedup 0
    np.testing.assert_array_equal(family_result.per_task["unstable"]["adam"]["speedup"], 0.0)
    rows = {r["optimizer"]: r for r in result.summary()["optimizers"]}
    assert rows["unstable"]["fraction_diverged"] == 1.0 and rows["sgd"]["fraction_diverged"] == 0
    assert rows["unstable"]["final_loss_median"] == np.inf  # NaN finals rank worst, not dropped
    assert set(family_result.wall_time_s) == {"adam", "sgd", "lbfgs", "adam_again", "unstable"}


@pytest.mark.slow
def test_json_round_trip(result, tmp_path):
    data = result.to_json_dict()
    text = json.dumps(data, allow_nan=False)  # non-finite numbers are encoded as strings
    loaded = BenchmarkResult.from_json_dict(json.loads(text))
    assert loaded.to_json_dict() == data
    for name, losses in result.families["QuadraticFamily"].losses.items():
        np.testing.assert_array_equal(loaded.families["QuadraticFamily"].losses[name], losses)
    assert data["meta"]["jax_version"] == jax.__version__ and data["meta"]["num_steps"] == STEPS
    with pytest.raises(ValueError, match="format"):
        BenchmarkResult.from_json_dict({"meta": {}})


@pytest.mark.slow
def test_plot_writes_a_png_and_needs_matplotlib(result, tmp_path, monkeypatch):
    path = result.plot(tmp_path / "curves.png")
    with open(path, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="matplotlib"):
        result.plot(tmp_path / "other.png")


def test_speedup_counts_steps_to_the_baselines_final_loss():
    # the baseline reaches its final loss 1.0 at step 100; the method reaches it at step 50
    baseline = np.linspace(3.0, 1.0, 101)[None]
    method = np.concatenate([np.linspace(3.0, 1.0, 51), np.full(50, 0.5)])[None]
    steps = np.arange(1, 102)[None]
    values = compare_runs(method, steps, baseline, steps)
    assert values["speedup"].tolist() == [2.0]
    assert values["final_loss_ratio"].tolist() == [0.5]
    # the same method with 3 evaluations per step (a line search) is slower per evaluation
    values = compare_runs(method, 3 * steps - 2, baseline, steps)
    assert values["speedup"].tolist() == [2.0]
    np.testing.assert_allclose(values["evaluation_speedup"], [101 / 151], rtol=1e-6)
    np.testing.assert_array_equal(
        losses_by_evaluations([[4.0, 2.0, np.nan]], [[1, 3, 4]], 5),
        [[np.inf, 4.0, 4.0, 2.0, np.nan]],
    )


@pytest.mark.slow
def test_metrics_subset_and_proximal_baselines():
    family = LassoFamily(num_rows=6, dimension=8, sparsity=0.5)
    bench = L2OBenchmark({"lasso": family}, ["fista", "ista"], ["speedup"])
    result = bench.run({"adam": optax.adam(0.05)}, 10, 1, 3, jax.random.key(0), progress=False)
    lasso = result.families["lasso"]
    assert set(lasso.per_task["adam"]) == {"fista", "ista"}
    assert set(lasso.per_task["adam"]["fista"]) == {"speedup"}
    assert lasso.wall_time_s == {} and lasso.tuning == {}
    assert "fraction_diverged" not in result.summary()["optimizers"][0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid: adam, momentum, sgd, lbfgs, fista, ista"):
        L2OBenchmark([FAMILY], ["adam", "rmsprop"])
    with pytest.raises(ValueError, match=", ".join(METRICS)):
        L2OBenchmark([FAMILY], metrics=["speedup", "accuracy"])
    with pytest.raises(ValueError, match="distinct"):
        L2OBenchmark([FAMILY], ["adam", "adam"])
    with pytest.raises(ValueError, match="LassoFamily"):
        L2OBenchmark([FAMILY], ["fista"])
    with pytest.raises(ValueError, match="empty"):
        L2OBenchmark([])
    with pytest.raises(TypeError, match="TaskFamily"):
        L2OBenchmark([object()])
    with pytest.raises(ValueError, match="grid"):
        L2OBenchmark([FAMILY], learning_rates=[0.1, -1.0])
    bench = L2OBenchmark([FAMILY], ["sgd"], learning_rates=GRID)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="baselines"):
        bench.run({"sgd": optax.sgd(0.1)}, 5, 1, 1, key, progress=False)
    with pytest.raises(TypeError, match="GradientTransformation"):
        bench.run({"mine": lambda g: g}, 5, 1, 1, key, progress=False)
    with pytest.raises(TypeError, match="dict"):
        bench.run([optax.sgd(0.1)], 5, 1, 1, key, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        bench.run({}, 0, 1, 1, key, progress=False)
    with pytest.raises(ValueError, match="num_test"):
        bench.run({}, 5, 1, 0, key, progress=False)
    with pytest.raises(TypeError, match="key"):
        bench.run({}, 5, 1, 1, 0, progress=False)
