"""``opifex bench second-order --quick`` runs the real benchmark and writes its JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from opifex.cli._app import app

REPO = Path(__file__).resolve().parents[3]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_bench_second_order_quick_writes_json_and_png(tmp_path):
    result = CliRunner().invoke(
        app,
        ["bench", "second-order", "--quick", "--output-dir", str(tmp_path)],
        env={"COLUMNS": "200", "OPIFEX_BENCHMARKS_DIR": str(REPO / "benchmarks")},
    )
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
