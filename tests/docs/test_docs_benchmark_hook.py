"""The mkdocs hook that renders benchmark tables from benchmarks/results/*.json at build time.

No opifex package is imported: the hook reads JSON only.
"""

import copy
import importlib.util
import json
from pathlib import Path

import pytest
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files

ROOT = Path(__file__).resolve().parents[2]
HOOK_PATH = ROOT / "docs" / "hooks" / "benchmark_tables.py"


def _load_hook():
    spec = importlib.util.spec_from_file_location("benchmark_tables_under_test", HOOK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def _row(part, problem, solver, **values):
    row = {
        "part": part,
        "problem": problem,
        "n": 2,
        "m": 3 if part == "least_squares" else None,
        "solver": solver,
        "status": "ok",
        "error": None,
        "iterations": 10,
        "fun_evals": 12,
        "deriv_evals": 11,
        "solver_converged": True,
        "final_f": 0.0,
        "grad_norm": 1e-9,
        "time_s": 0.00125,
    }
    row.update(values)
    return row


def _certified(problem, start, solver, **values):
    row = {
        "problem": problem,
        "start": start,
        "n": 2,
        "m": 6,
        "difficulty": "higher",
        "solver": solver,
        "status": "ok",
        "error": None,
        "solver_status": "SUCCESS",
        "converged": True,
        "digits": 11.0,
        "iterations": 20,
        "fun_evals": 22,
        "deriv_evals": 21,
        "rss": 1168.0,
        "compile_s": 1.5,
        "time_s": 0.002,
    }
    row.update(values)
    return row


OURS_NIST, SCIPY_NIST = "opifex LM (defaults)", "scipy lm (defaults)"
SMALL = {
    "benchmark": "second_order",
    "meta": {
        "date": "2030-01-02T03:04:05+00:00",
        "device": "cpu (test)",
        "cpu_count": 2,
        "jax_version": "9.9.9",
        "x64": True,
        "elapsed_s": 12.3,
        "interrupted": False,
        "config": {
            "quick": True,
            "repeats": 3,
            "gtol": 1e-6,
            "max_iter": 100,
            "lm_tol": 1e-8,
            "lm_max_iter": 50,
            "same_rtol": 1e-6,
            "same_atol": 1e-10,
        },
    },
    "unconstrained": [
        _row("unconstrained", "rosenbrock_2d", "opifex L-BFGS", fun_evals=46, final_f=4.78e-19),
        _row("unconstrained", "rosenbrock_2d", "scipy L-BFGS-B", fun_evals=45, time_s=2.5),
        _row(
            "unconstrained",
            "rosenbrock_2d",
            "jaxopt LBFGS",
            status="unavailable",
            error="No module named 'jaxopt'",
            iterations=None,
            fun_evals=None,
            final_f=None,
            grad_norm=None,
            time_s=None,
        ),
    ],
    "least_squares": [
        _row("least_squares", "meyer", "opifex LM", iterations=116, final_f=87.9458551),
        _row("least_squares", "meyer", "scipy lm (MINPACK)", iterations=117, final_f=87.9458551),
        _row("least_squares", "bard", "opifex LM", iterations=5, final_f=0.00821487730658),
        _row(
            "least_squares",
            "bard",
            "scipy lm (MINPACK)",
            iterations=2000,
            final_f=17.4286,
            solver_converged=False,
        ),
    ],
    "certified": [
        _certified("BoxBOD", 1, OURS_NIST, iterations=32, fun_evals=39, deriv_evals=34),
        _certified(
            "BoxBOD",
            1,
            SCIPY_NIST,
            solver_status="2: ftol",
            digits=0.0,
            iterations=6,
            fun_evals=10,
            deriv_evals=6,
        ),
        _certified("BoxBOD", 2, OURS_NIST, digits=10.96),
        _certified("BoxBOD", 2, SCIPY_NIST, solver_status="2: ftol", digits=5.13),
    ],
    "targets": {
        "nist_defaults_certified_digits": {
            "digits": 6.0,
            "met": True,
            "ours": {
                "runs": 2,
                "reached": 2,
                "reached_and_converged": 2,
                "converged_below": [],
                "not_reached": [],
            },
            "scipy": {
                "runs": 2,
                "reached": 0,
                "reached_and_converged": 0,
                "converged_below": ["BoxBOD/1", "BoxBOD/2"],
                "not_reached": ["BoxBOD/1", "BoxBOD/2"],
            },
        },
        "rosenbrock_fun_evals_le_scipy": {
            "met": False,
            "per_size": {
                "rosenbrock_2d": {
                    "ours_fun_evals": 46,
                    "scipy_fun_evals": 45,
                    "ours_grad_norm": 1e-8,
                    "scipy_grad_norm": 4e-8,
                    "met": False,
                }
            },
        },
        "mgh_lm_iterations_le_scipy_same_optimum": {
            "threshold": 0.8,
            "fraction": 0.5,
            "met": False,
            "num_problems": 2,
            "not_compared": [],
            "wins": [{"problem": "meyer"}],
            "losses": [
                {
                    "problem": "bard",
                    "ours_iterations": 5,
                    "scipy_iterations": 2000,
                    "ours_f": 0.00821487730658,
                    "scipy_f": 17.4286,
                    "same_optimum": False,
                }
            ],
        },
    },
}


@pytest.fixture
def results_dir(tmp_path):
    (tmp_path / "second_order.json").write_text(json.dumps(SMALL), encoding="utf-8")
    return tmp_path


def test_targets_are_shown_as_recorded(results_dir):
    text = hook.render_benchmark("second_order", results_dir)
    assert (
        "| 1. Rosenbrock, every size: opifex L-BFGS needs no more function evaluations than "
        "scipy L-BFGS-B | **not met** |"
    ) in text
    assert "at least 80 % of the problems | **not met** (1 / 2 = 50.0 %) |" in text
    assert "| rosenbrock_2d | 46 | 45 | 1e-08 | 4e-08 | **not met** |" in text
    assert "| bard | 5 | 2000 | 0.008215 | 17.43 | no |" in text


def test_certified_table_puts_scipy_at_its_defaults_beside_ours(results_dir):
    text = hook.render_benchmark("second_order", results_dir)
    assert "#### Certified problems: NIST StRD at default settings" in text
    assert (
        "| 3. NIST StRD, default settings: opifex LM reports `SUCCESS` with at least 6 correct "
        "digits from every start | met (2 / 2 starts) |"
    ) in text
    header = (
        "| problem | start | opifex LM (defaults) digits | opifex LM (defaults) status "
        "| opifex LM (defaults) iterations / f-evals / J-evals | scipy lm (defaults) digits "
        "| scipy lm (defaults) status | scipy lm (defaults) f-evals / J-evals |"
    )
    assert header in text
    assert "| BoxBOD | 1 | 11.0 | SUCCESS | 32 / 39 / 34 | 0.0 | 2: ftol | 10 / 6 |" in text
    assert "| BoxBOD | 2 | 11.0 | SUCCESS | 20 / 22 / 21 | 5.1 | 2: ftol | 22 / 21 |" in text
    assert (
        "opifex LM: 2 of 2 starts reach 6 digits; reported converged with fewer: none. "
        "scipy `lm`: 0 of 2 starts reach 6 digits; reported converged with fewer: "
        "BoxBOD/1, BoxBOD/2."
    ) in text


def test_unconstrained_table_rows(results_dir):
    text = hook.render_benchmark("second_order", results_dir)
    header = "| problem | solver | status | iterations | f-evals | final f | ‖∇f‖ | wall time |"
    assert header in text
    assert "| rosenbrock_2d | opifex L-BFGS | ok | 10 | 46 | 4.78e-19 | 1e-09 | 1.25 ms |" in text
    assert "| rosenbrock_2d | scipy L-BFGS-B | ok | 10 | 45 | 0 | 1e-09 | 2.5 s |" in text
    assert (
        "| rosenbrock_2d | jaxopt LBFGS | unavailable: No module named 'jaxopt' "
        "| — | — | — | — | — |"
    ) in text


def test_least_squares_table_marks_solvers_off_the_best_optimum(results_dir):
    text = hook.render_benchmark("second_order", results_dir)
    header = "| problem | n | m | opifex LM | scipy lm (MINPACK) | best f | not at the best f |"
    assert header in text
    assert "| meyer | 2 | 3 | 116 / 12 / 11 | 117 / 12 / 11 | 87.95 | all reached it |" in text
    # scipy stopped at the other (published local) value and did not converge: † and named
    assert "| bard | 2 | 3 | 5 / 12 / 11 | 2000 / 12 / 11 † | 0.008215 | scipy lm (MINPACK) |" in (
        text
    )


def test_run_information_comes_from_meta(results_dir):
    text = hook.render_benchmark("second_order", results_dir)
    assert text.startswith("Recorded 2030-01-02T03:04:05+00:00 on cpu (test) (2 CPU cores)")
    assert "jax 9.9.9" in text and "quick (smoke-sized) run" in text
    assert "interrupted" not in text


def test_interrupted_run_is_flagged(tmp_path):
    data = copy.deepcopy(SMALL)
    data["meta"]["interrupted"] = True
    (tmp_path / "second_order.json").write_text(json.dumps(data), encoding="utf-8")
    assert "This run was interrupted" in hook.render_benchmark("second_order", tmp_path)


def test_marker_is_replaced_and_the_rest_of_the_page_kept(results_dir):
    page = "# Title\n\n<!-- benchmark-table: second_order -->\n\nAfter.\n"
    out = hook.replace_markers(page, results_dir)
    assert out.startswith("# Title\n\nRecorded ")
    assert out.endswith("\n\nAfter.\n")
    assert "benchmark-table" not in out


def test_missing_results_give_a_clear_error(tmp_path):
    with pytest.raises(PluginError, match=r"second_order\.json not found") as error:
        hook.replace_markers("<!-- benchmark-table: second_order -->", tmp_path)
    assert "benchmarks/second_order/bench_second_order.py" in str(error.value)


def test_unknown_benchmark_name_is_rejected(results_dir):
    with pytest.raises(
        PluginError,
        match=(
            "unknown benchmark 'nope' in a benchmark-table marker; known: control_cbf, "
            "control_imitation, control_mpc, control_sysid, deploy_serving, l2o, l2o_lasso, "
            "l2o_mlp_regression, meta_burgers, meta_sinusoid, quantum_scale, quantum_scf, "
            "second_order"
        ),
    ):
        hook.replace_markers("<!-- benchmark-table: nope -->", results_dir)


def test_results_of_another_benchmark_are_rejected(tmp_path):
    data = dict(SMALL, benchmark="other")
    (tmp_path / "second_order.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PluginError, match="not the 'second_order' benchmark's results"):
        hook.render_benchmark("second_order", tmp_path)


def test_missing_field_names_the_field(tmp_path):
    data = {key: value for key, value in SMALL.items() if key != "targets"}
    (tmp_path / "second_order.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PluginError, match=r"lack a field the docs need .*'targets'"):
        hook.render_benchmark("second_order", tmp_path)


def test_invalid_json_is_reported(tmp_path):
    (tmp_path / "second_order.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PluginError, match="cannot read benchmark results"):
        hook.render_benchmark("second_order", tmp_path)


def test_plots_are_published_from_the_results_directory(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "second_order.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "docs").mkdir()
    config = MkDocsConfig(config_file_path=str(tmp_path / "mkdocs.yml"))
    config.load_dict(
        {"site_name": "test", "docs_dir": str(tmp_path / "docs"), "hooks": [str(HOOK_PATH)]}
    )
    errors, _ = config.validate()
    assert not errors
    files = config.plugins.on_files(Files([]), config=config)  # as during a build
    [published] = list(files)
    assert published.src_uri == "assets/benchmarks/second_order.png"
    assert Path(published.abs_src_path) == results / "second_order.png"


def test_the_recorded_results_render_with_their_targets():
    """The committed JSON and the hook agree on the schema; the targets show as recorded."""
    data = json.loads((ROOT / "benchmarks/results/second_order.json").read_text("utf-8"))
    text = hook.render_benchmark("second_order", ROOT / "benchmarks" / "results")
    recorded = data["targets"]["rosenbrock_fun_evals_le_scipy"]["met"]
    expected = {True: "| met |", False: "| **not met** |", None: "| not evaluated |"}[recorded]
    first_target = next(line for line in text.splitlines() if line.startswith("| 1. "))
    assert first_target.endswith(expected)
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: second_order -->" in page
    assert f"]({hook.ASSETS_DIR}/second_order.png)" in page


def test_the_recorded_l2o_results_render_with_their_target():
    data = json.loads((ROOT / "benchmarks/results/l2o.json").read_text("utf-8"))
    text = hook.render_benchmark("l2o", ROOT / "benchmarks" / "results")
    target = data["targets"]["quadratic_2x_vs_tuned_adam"]
    line = next(row for row in text.splitlines() if row.startswith("| median speedup"))
    assert f"{target['median_speedup_vs_tuned_adam']:.4g}" in line
    expected = "| met |" if target["median_speedup_vs_tuned_adam"] >= 2.0 else "| **not met** |"
    assert line.endswith(expected)
    for row in data["summary"]["optimizers"]:
        assert f"| {row['optimizer']} | {row['kind']} |" in text
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: l2o -->" in page
    assert f"]({hook.ASSETS_DIR}/l2o.png)" in page


def test_the_l2o_page_says_what_the_shifted_tasks_show():
    """docs/benchmarks.md and docs/packages/l2o.md say the 2x claim does not survive shifted
    tasks: every shifted median below 2, and the rescaled same tasks mostly never reaching
    Adam's final loss (median speedup 0). A more robust optimiser must update those words."""
    data = json.loads((ROOT / "benchmarks/results/l2o.json").read_text("utf-8"))
    shifted = {row["tasks"]: row for row in data["shifted"]}
    assert len(shifted) >= 4
    assert all(row["median_speedup_vs_tuned_adam"] < 2.0 for row in shifted.values())
    rescaled = [row for label, row in shifted.items() if "same tasks" in label]
    assert rescaled and all(row["median_speedup_vs_tuned_adam"] == 0.0 for row in rescaled)
    assert all(row["fraction_diverged"] == 0.0 for row in shifted.values())  # "does not diverge"
    page = (ROOT / "docs/benchmarks.md").read_text("utf-8")
    assert "The 2x holds only where the optimiser was trained" in page
    text = hook.render_benchmark("l2o", ROOT / "benchmarks" / "results")
    for label in shifted:
        assert label in text


def test_l2o_results_missing_a_field_name_it(tmp_path):
    data = json.loads((ROOT / "benchmarks/results/l2o.json").read_text("utf-8"))
    del data["checks"]
    (tmp_path / "l2o.json").write_text(json.dumps(data), "utf-8")
    with pytest.raises(PluginError, match="checks"):
        hook.render_benchmark("l2o", tmp_path)


def test_the_recorded_l2o_lasso_results_render_with_their_target():
    data = json.loads((ROOT / "benchmarks/results/l2o_lasso.json").read_text("utf-8"))
    text = hook.render_benchmark("l2o_lasso", ROOT / "benchmarks" / "results")
    target = data["targets"]["lasso_below_tuned_adam"]
    for stat in ("median", "p90"):
        learned, adam = target[f"{stat}_learned"], target[f"{stat}_adam"]
        start = "| median relative" if stat == "median" else "| 90th percentile"
        line = next(row for row in text.splitlines() if row.startswith(start))
        assert f"| {learned:.4g} | {adam:.4g} |" in line
        assert line.endswith("| met |" if learned < adam else "| **not met** |")
    for row in data["summary"]:
        assert f"| {row['optimizer']} | {row['median_100']:.4g} / {row['p90_100']:.4g} |" in text
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: l2o_lasso -->" in page
    assert f"]({hook.ASSETS_DIR}/l2o_lasso.png)" in page


def test_missing_l2o_lasso_results_name_their_script(tmp_path):
    with pytest.raises(PluginError, match=r"benchmarks/l2o/bench_l2o_lasso\.py"):
        hook.render_benchmark("l2o_lasso", tmp_path)


def test_the_recorded_l2o_mlp_regression_results_render_with_their_target():
    data = json.loads((ROOT / "benchmarks/results/l2o_mlp_regression.json").read_text("utf-8"))
    text = hook.render_benchmark("l2o_mlp_regression", ROOT / "benchmarks" / "results")
    target = data["targets"]["mlp_regression_speedup"]
    line = next(row for row in text.splitlines() if row.startswith("| median speedup"))
    speedup = target["median_speedup_vs_adam"]
    assert f"| {speedup:.4g} | 1 |" in line
    assert line.endswith("| met |" if speedup >= target["speedup_threshold"] else "| **not met** |")
    for name, label in (("adam", "Adam"), ("sgd", "SGD")):
        learned, base = target["median_final_learned"], target[f"median_final_{name}"]
        start = f"| median final loss below tuned {label}'s"
        line = next(row for row in text.splitlines() if row.startswith(start))
        assert f"| {learned:.4g} | {base:.4g} |" in line
        assert line.endswith("| met |" if learned < base else "| **not met** |")
    for name, spread in data["speedups"].items():
        assert f"| tuned {name} | {spread['p50']:.4g} | {spread['p10']:.4g} |" in text
    for row in data["summary"]:
        assert f"| {row['optimizer']} |" in text
        assert f"| {row['median_final_loss']:.4g} | {row['num_diverged']} |" in text
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: l2o_mlp_regression -->" in page
    assert f"]({hook.ASSETS_DIR}/l2o_mlp_regression.png)" in page


def test_missing_l2o_mlp_regression_results_name_their_script(tmp_path):
    with pytest.raises(PluginError, match=r"benchmarks/l2o/bench_l2o_mlp_regression\.py"):
        hook.render_benchmark("l2o_mlp_regression", tmp_path)


def _scf_run(**values):
    run = {"status": "ok", "error": None, "time_s": None, "compile_s": None, "energy": None}
    run.update({"iterations": None, "num_converged": None, "geometries_per_s": None})
    run.update(values)
    return run


QUANTUM = {
    "benchmark": "quantum_scf",
    "meta": {
        "date": "2030-01-02T03:04:05+00:00",
        "device": "cpu (test)",
        "jax_version": "9.9.9",
        "versions": {"pyscf": "8.8.8"},
        "threads": {"pyscf_num_threads": 1},
        "elapsed_s": 42.0,
        "config": {"conv_tol": 1e-9, "repeats": 7, "guess": "minao"},
    },
    "timings": [
        {
            "molecule": "H2O",
            "basis": "6-31g",
            "task": "energy+gradient",
            "opifex": _scf_run(time_s=0.002, compile_s=12.5),
            "pyscf": _scf_run(time_s=0.05),
            "max_abs_gradient_diff": 3e-8,
        }
    ],
    "batch": {
        "molecule": "H2O",
        "basis": "6-31g",
        "size": 256,
        "opifex": _scf_run(time_s=0.5, compile_s=20.0, num_converged=256, geometries_per_s=512.0),
        "pyscf": _scf_run(status="error", error="boom"),
        "max_abs_energy_diff": None,
    },
    "iterations": [
        {
            "molecule": "H2O",
            "basis": "sto-3g",
            "opifex": _scf_run(iterations=6, energy=-74.96590119),
            "opifex_sad": _scf_run(iterations=8, energy=-74.96590119),
            "pyscf": _scf_run(iterations=7, energy=-74.96590119),
            "energy_diff": 2e-12,
        },
        {
            "molecule": "N2",
            "basis": "6-31g",
            "opifex": _scf_run(status="unavailable", error="no module"),
            "opifex_sad": _scf_run(status="unavailable", error="no module"),
            "pyscf": _scf_run(iterations=9, energy=-108.8),
            "energy_diff": None,
        },
    ],
    "targets": {
        "iterations_le_pyscf": {"met": None, "same_energy_atol": 1e-6},
        "speed_vs_pyscf": {"batch_throughput": {"ratio": None}},
    },
}


def test_quantum_scf_results_render_side_by_side(tmp_path):
    (tmp_path / "quantum_scf.json").write_text(json.dumps(QUANTUM), encoding="utf-8")
    text = hook.render_benchmark("quantum_scf", tmp_path)
    assert text.startswith("Run on 2030-01-02T03:04:05+00:00, cpu (test), jax 9.9.9, PySCF 8.8.8")
    assert "same energy (within 1e-06 Eh) | not evaluated |" in text
    assert "| H2O/6-31g | energy+gradient | 2 ms | 12.5 s | 50 ms | 25 | 3e-08 |" in text
    assert "| opifex `jit(vmap(run_scf))` | 512 | 500 ms | 20 s | 256 / 256 | — |" in text
    assert "| PySCF loop | error | error | — | error | — |" in text
    assert "Throughput, opifex / PySCF: —" in text
    assert "| system | opifex iterations (MINAO guess) | opifex, SAD guess |" in text
    assert "| H2O/sto-3g | 6 | 8 | 7 | -74.9659011900 | 2e-12 |" in text
    assert "| N2/6-31g | unavailable | unavailable | 9 | unavailable | — |" in text


def test_quantum_scale_rows_show_both_codes_and_a_failed_case(tmp_path):
    ours = {"first_s": 12.5, "steady_s": 2.0, "energy": -230.0, "cycles": 8, "peak_rss_mb": 900.0}
    theirs = {"steady_s": 0.8, "energy": -230.0, "cycles": 8, "n_functions": 66,
              "peak_rss_mb": 240.0}  # fmt: skip
    data = {
        "benchmark": "quantum_scale",
        "meta": {"date": "2030-01-02", "device": "cpu", "cpu": "test"},
        "rows": [
            {"molecule": "benzene", "basis": "6-31g", "opifex": ours, "pyscf": theirs,
             "energy_diff": 2e-12},
            {"molecule": "naphthalene", "basis": "6-31g", "opifex": {"status": "FAILED"},
             "pyscf": theirs},
        ],
    }  # fmt: skip
    (tmp_path / "quantum_scale.json").write_text(json.dumps(data), encoding="utf-8")
    text = hook.render_benchmark("quantum_scale", tmp_path)
    assert (
        "| benzene/6-31g | 66 | 800 ms | 2 s | 12.5 s | 2.5 | 240 | 900 | 2e-12 | 8 / 8 |" in text
    )
    assert "| naphthalene/6-31g | 66 | 800 ms | — | — | — | 240 | - | — | - / 8 |" in text


def test_quantum_scf_results_missing_a_field_name_it_and_the_script(tmp_path):
    data = copy.deepcopy(QUANTUM)
    del data["batch"]
    (tmp_path / "quantum_scf.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PluginError, match=r"'batch'.*benchmarks/quantum/bench_scf\.py"):
        hook.render_benchmark("quantum_scf", tmp_path)


def test_the_recorded_meta_sinusoid_results_render_with_their_targets():
    data = json.loads((ROOT / "benchmarks/results/meta_sinusoid.json").read_text("utf-8"))
    text = hook.render_benchmark("meta_sinusoid", ROOT / "benchmarks" / "results")
    for name, met in data["targets"].items():
        expected = "| met |" if met else "| **not met** |"
        assert f"| {name.replace('_', ' ')} {expected}" in text
    maml = data["summary"]["MAML"]["mse_1"]
    row = next(line for line in text.splitlines() if line.startswith("| MAML |"))
    assert f"{maml['median']:.3f} [{maml['min']:.3f}, {maml['max']:.3f}]" in row
    overhead = 100 * data["throughput"]["library_overhead"]
    assert f"Library overhead: {overhead:.1f} %" in text
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: meta_sinusoid -->" in page
    assert f"]({hook.ASSETS_DIR}/meta_sinusoid.png)" in page


def test_the_recorded_meta_burgers_results_render_beside_the_reference_figures():
    data = json.loads((ROOT / "benchmarks/results/meta_burgers.json").read_text("utf-8"))
    text = hook.render_benchmark("meta_burgers", ROOT / "benchmarks" / "results")
    for start, stats in data["summary"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {start} |"))
        assert f"{stats['loss_0']['median']:.4f}" in row
        reference = data["reference_zero_shot"].get(start)
        assert reference is None or f"| {reference} |" in row
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert "<!-- benchmark-table: meta_burgers -->" in page


CONTROL = ("control_mpc", "control_cbf", "control_sysid", "control_imitation")


@pytest.mark.parametrize("name", CONTROL)
def test_the_recorded_control_results_render_on_the_benchmarks_page(name):
    text = hook.render_benchmark(name, ROOT / "benchmarks" / "results")
    data = json.loads((ROOT / f"benchmarks/results/{name}.json").read_text("utf-8"))
    assert data["meta"]["date"] in text
    for target, verdict in data.get("targets", {}).items():
        if isinstance(verdict, bool):
            assert f"- {target}: {'met' if verdict else '**not met**'}" in text
    page = (ROOT / "docs" / "benchmarks.md").read_text("utf-8")
    assert f"<!-- benchmark-table: {name} -->" in page
    assert f"]({hook.ASSETS_DIR}/{name}.png)" in page


def test_control_mpc_tables_show_every_solver_and_mismatch_run():
    data = json.loads((ROOT / "benchmarks/results/control_mpc.json").read_text("utf-8"))
    text = hook.render_benchmark("control_mpc", ROOT / "benchmarks" / "results")
    for name, entry in data["cold"].items():
        for row in entry["rows"]:
            assert f"| {name} | {row['solver']} | {row['status']} | {row['iterations']} |" in text
    for name, entry in data["mismatch"].items():
        feedback = [r for r in entry["rows"] if r["warm_start"] == "feedback"]
        cells = ["no" if not r["held"] else f"{r['held_from_seconds']:.4g}" for r in feedback]
        assert f"| {name} ({entry['parameter']}) | feedback | " + " | ".join(cells) + " |" in text


@pytest.mark.parametrize("name", CONTROL)
def test_missing_control_results_name_their_script(name, tmp_path):
    script = hook.SCRIPTS[name]
    assert (ROOT / script).is_file()
    with pytest.raises(PluginError, match=script.replace(".", r"\.")):
        hook.render_benchmark(name, tmp_path)
