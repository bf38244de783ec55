"""The serving load-test benchmark runs end to end (``--quick``): servers up, answers right, down.

Marked ``e2e``: it starts two uvicorn processes and compiles the served solvers (about a
minute on the 2-core machine). No assertion on speed, only on correctness and completeness.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "deploy" / "bench_serving.py"


@pytest.mark.e2e
def test_quick_serving_benchmark_answers_every_request_right(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_serving_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps = []
    argv = ["--quick", "--output-dir", str(tmp_path), "--no-plot"]
    assert module.main(argv, lambda done, total, label: steps.append((done, total))) == 0
    assert steps and steps[-1][0] == steps[-1][1]  # every step reported
    data = json.loads((tmp_path / "deploy_serving.json").read_text("utf-8"))
    assert data["benchmark"] == "deploy_serving" and data["config"]["quick"]
    assert {r["server"] for r in data["load"]} == {"batched", "unbatched"}
    for row in data["load"]:
        assert row["errors"] == 0 and row["wrong"] == 0 and row["not_sent"] == 0, row
        assert row["ok"] == row["requests"] and row["p99_s"] >= row["p50_s"] > 0
    assert data["qp_agreement"]["max_objective_gap_rel"] < 1e-6
    assert data["targets"]["no_wrong_answers"] is True
    for report in data["platform"].values():
        assert all(m["first_call_s"] > 0 for m in report["measurements"])
