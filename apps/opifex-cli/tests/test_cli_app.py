"""``opifex --version``, the console script, and ``opifex bench``'s lookup and errors.

The bench wiring is checked with a stand-in benchmark script written to ``tmp_path``; the real
second-order benchmark runs in ``test_cli_bench.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opifex.cli._app import app, main
from opifex.cli._bench import BENCHMARKS_ENV, find_benchmarks_dir

REPO = Path(__file__).resolve().parents[3]
SCRIPT = "second_order/bench_second_order.py"
WIDE = {"COLUMNS": "200"}

FAKE_BENCHMARK = """
import json
from pathlib import Path

def main(argv=None, progress=None):
    for done in (1, 2):
        progress(done, 2, f"step {done}")
    Path(argv[argv.index("--output-dir") + 1], "argv.json").write_text(json.dumps(argv))
    return 3
"""


def _invoke(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env={**WIDE, **env})


def test_version_lists_installed_opifex_packages():
    result = _invoke("--version")
    assert result.exit_code == 0, result.output
    printed = dict(line.split() for line in result.output.strip().splitlines())
    for name in ("opifex-cli", "opifex-core", "opifex-second-order"):
        assert printed[name] == importlib.metadata.version(name)
    assert all(name.startswith("opifex-") for name in printed)


def test_console_script_is_installed():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="opifex")
    assert entry.value == "opifex.cli._app:main"
    assert entry.load() is main


def test_no_arguments_shows_the_commands():
    result = _invoke()
    assert all(command in result.output for command in ("demo", "scf", "mpc", "bench", "train"))


def test_unknown_benchmark_lists_the_available_ones():
    result = _invoke("bench", "no-such-bench")
    assert result.exit_code == 2
    assert "'no-such-bench' is not a benchmark" in result.output
    available = (
        "available: control-cbf, control-imitation, control-mpc, control-sysid, l2o, l2o-lasso, "
        "l2o-mlp-regression, meta, meta-burgers, quantum, second-order"
    )
    # the error box wraps long lines: compare without the frame and line breaks
    flat = " ".join(line.strip("│ ") for line in result.output.splitlines())
    assert available in " ".join(flat.split())


def test_missing_benchmarks_dir_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(BENCHMARKS_ENV, raising=False)
    result = _invoke("bench", "second-order", "--quick")
    assert result.exit_code == 1
    printed = " ".join(result.output.split())  # long paths wrap whatever the width
    assert f"no benchmarks/{SCRIPT} in {tmp_path.resolve()}" in printed
    assert "ship with the opifex source checkout" in printed


@pytest.mark.parametrize("how", ["option", "env"])
def test_explicit_benchmarks_dir_without_the_script_is_an_error(tmp_path, how):
    if how == "option":
        result = _invoke("bench", "second-order", "--benchmarks-dir", str(tmp_path))
    else:
        result = _invoke("bench", "second-order", **{BENCHMARKS_ENV: str(tmp_path)})
    assert result.exit_code == 1
    assert f"{tmp_path / SCRIPT} does not exist" in " ".join(result.output.split())


def test_benchmarks_dir_is_found_walking_up():
    assert find_benchmarks_dir(SCRIPT, start=REPO / "apps" / "opifex-cli") == REPO / "benchmarks"
    assert find_benchmarks_dir(SCRIPT, explicit=REPO / "benchmarks") == REPO / "benchmarks"


@pytest.mark.parametrize(
    ("command", "script", "flags"),
    [
        ("second-order", SCRIPT, ["--quick", "--all-mgh"]),
        ("l2o", "l2o/bench_l2o.py", ["--quick", "--train"]),
        ("quantum", "quantum/bench_scf.py", ["--quick"]),
    ],
)
def test_bench_passes_options_progress_and_exit_code(tmp_path, command, script, flags):
    path = tmp_path / "benchmarks" / script
    path.parent.mkdir(parents=True)
    path.write_text(FAKE_BENCHMARK)
    out = tmp_path / "out"
    out.mkdir()
    result = _invoke(
        "bench",
        command,
        *flags,
        "--output-dir",
        str(out),
        **{BENCHMARKS_ENV: str(tmp_path / "benchmarks")},
    )
    assert result.exit_code == 3, result.output
    assert json.loads((out / "argv.json").read_text()) == [*flags, "--output-dir", str(out)]
    assert "step 2" in result.output and "2/2" in result.output  # the progress bar


def test_benchmark_without_main_is_an_error(tmp_path):
    script = tmp_path / SCRIPT
    script.parent.mkdir(parents=True)
    script.write_text("x = 1\n")
    result = _invoke("bench", "second-order", "--benchmarks-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "has no main(argv, progress) function" in result.output
