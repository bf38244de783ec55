"""``opifex bench second-order --quick`` and ``opifex bench l2o --quick``: the real benchmarks."""

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
