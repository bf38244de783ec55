"""``opifex bench second-order|l2o|quantum|meta --quick``: the real benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from opifex.cli._app import app

REPO = Path(__file__).resolve().parents[3]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bench(name: str, output_dir: Path):
    return CliRunner().invoke(
        app,
        ["bench", name, "--quick", "--output-dir", str(output_dir)],
        env={"COLUMNS": "200", "OPIFEX_BENCHMARKS_DIR": str(REPO / "benchmarks")},
    )


@pytest.mark.e2e
def test_bench_second_order_quick_writes_json_and_png(tmp_path):
    result = _bench("second-order", tmp_path)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "second_order.json").read_text())
    assert {"benchmark", "meta", "unconstrained", "least_squares", "targets"} <= set(results)
    assert results["benchmark"] == "second_order" and results["meta"]["config"]["quick"]
    ours = [r for r in results["unconstrained"] if r["solver"] == "opifex L-BFGS"]
    assert [r["problem"] for r in ours] == ["rosenbrock_2d", "rosenbrock_100d"]
    assert all(r["status"] == "ok" and r["grad_norm"] <= 1e-6 for r in ours)
    assert {r["problem"] for r in results["least_squares"]} == {
        "freudenstein_roth",
        "bard",
        "meyer",
    }
    assert (tmp_path / "second_order.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "Unconstrained: extended Rosenbrock" in result.output  # the script's table


@pytest.mark.e2e
def test_bench_l2o_quick_writes_json_and_png(tmp_path):
    result = _bench("l2o", tmp_path)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "l2o.json").read_text())
    assert {"benchmark", "meta", "pretrained", "result", "checks", "targets"} <= set(results)
    assert results["benchmark"] == "l2o" and results["training"] is None  # no --train
    assert results["meta"]["settings"]["num_test_tasks"] == 100  # --quick
    speedups = results["result"]["speedup_vs_adam"]
    assert len(speedups) == 100
    target = results["targets"]["quadratic_2x_vs_tuned_adam"]
    assert target["median_speedup_vs_tuned_adam"] == pytest.approx(float(np.median(speedups)))
    assert (tmp_path / "l2o.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "target 1:" in result.output  # the script's summary


@pytest.mark.e2e
def test_bench_quantum_quick_writes_json_and_png(tmp_path):
    pytest.importorskip("pyscf")
    result = _bench("quantum", tmp_path)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "quantum_scf.json").read_text())
    assert {"benchmark", "meta", "timings", "batch", "iterations", "targets"} <= set(results)
    assert results["benchmark"] == "quantum_scf" and results["meta"]["config"]["quick"]
    assert [(r["molecule"], r["task"]) for r in results["timings"]] == [
        ("H2O", "scf"),
        ("H2O", "energy+gradient"),
        ("CH4", "scf"),
        ("CH4", "energy+gradient"),
    ]
    for row in results["timings"]:
        assert row["opifex"]["status"] == row["pyscf"]["status"] == "ok", row
        assert abs(row["energy_diff"]) < 1e-6  # the same RHF energy as PySCF
    forces = [r["max_abs_gradient_diff"] for r in results["timings"] if r["task"] != "scf"]
    assert max(forces) < 1e-6  # dE/dR in PySCF's sign convention
    batch = results["batch"]
    assert batch["size"] == 16 and batch["opifex"]["num_converged"] == 16
    assert batch["max_abs_energy_diff"] < 1e-6
    h2o = next(r for r in results["iterations"] if (r["molecule"], r["basis"]) == ("H2O", "sto-3g"))
    assert h2o["pyscf"]["iterations"] == 7  # PySCF's cycles, as quoted in the quantum issue
    assert (tmp_path / "quantum_scf.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "SCF iterations to conv_tol" in result.output  # the script's table


@pytest.mark.e2e
def test_bench_meta_quick_writes_json_and_png(tmp_path):
    result = _bench("meta", tmp_path)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "meta_sinusoid.json").read_text())
    assert results["benchmark"] == "meta_sinusoid" and results["config"]["quick"]
    methods = ["MAML", "FOMAML", "Reptile", "Meta-SGD", "joint training", "hand-written MAML"]
    assert list(results["summary"]) == methods
    assert all(len(results["runs"][m]) == 1 for m in methods)  # --quick: one seed
    throughput = results["throughput"]
    assert throughput["library_overhead"] == pytest.approx(
        1
        - np.median(throughput["library_iterations_per_second"])
        / np.median(throughput["hand_written_iterations_per_second"])
    )
    assert set(results["targets"]) >= {
        "maml_1_step_at_most_0.40",
        "meta_sgd_beats_maml_after_1_step",
    }
    assert (tmp_path / "meta_sinusoid.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "throughput" in result.output  # the script's summary line
