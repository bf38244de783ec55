"""``opifex scf``: a named molecule end to end (energy vs PySCF's, gradient, plot) and bad input."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from opifex.cli._app import app

WIDE = {"COLUMNS": "200"}
# PySCF 2.14 RHF/STO-3G of H2 at 0.74 Angstrom on the same basis-set data (test_quantum_targets)
H2_STO3G = -1.1167593075
HEH_STO3G = -2.8418380448


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


@pytest.mark.e2e
def test_scf_prints_energy_cycles_plot_and_gradient(tmp_path):
    plot = tmp_path / "heh.png"
    result = _invoke("scf", "HeH+", "--forces", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    energy = float(re.search(r"total energy\s+(-?\d+\.\d+) Eh", result.output).group(1))
    assert abs(energy - HEH_STO3G) < 1e-8
    assert "converged in 5 cycles" in result.output
    assert "nuclear gradient" in result.output and "█" in result.output
    assert plot.stat().st_size > 1000
    assert re.search(
        r"^nuclear gradient: compile \d+\.\d+ s \+ solve \d+\.\d+ s", result.stdout, re.M
    )


@pytest.mark.slow
def test_scf_from_xyz_file(tmp_path):
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\nhydrogen\nH 0 0 0\nH 0 0 0.74\n")
    result = _invoke("scf", str(xyz))
    assert result.exit_code == 0, result.output
    energy = float(re.search(r"total energy\s+(-?\d+\.\d+) Eh", result.output).group(1))
    assert abs(energy - H2_STO3G) < 1e-8


TIMING = re.compile(r"^SCF: compile (\d+\.\d+) s \+ solve (\d+\.\d+) s \((.+)\)$", re.M)


@pytest.mark.slow
def test_scf_says_when_it_compiles_and_prints_the_compile_and_solve_times():
    # a budget no other test uses: a program this process has not compiled yet (tolerances
    # are values of the compiled program, not part of its key)
    result = _invoke("scf", "H2", "--max-memory", "3333")
    assert result.exit_code == 0, result.output
    assert "tracing the SCF of H H / sto-3g ..." in result.stderr
    assert "compiling the SCF of H H / sto-3g with XLA" in result.stderr
    assert "solving the SCF ..." in result.stderr
    timing = TIMING.search(result.stdout)
    assert timing is not None, result.stdout
    compile_s, solve_s = float(timing.group(1)), float(timing.group(2))
    assert compile_s > 0 and solve_s >= 0
    assert "persistent compilation cache" in timing.group(3)  # the test suite's cache is on
    again = _invoke("scf", "H2", "--max-memory", "3333")  # same process: nothing to compile
    assert "compiling" not in again.stderr
    assert TIMING.search(again.stdout).group(3) == "already compiled in this process"


def test_compile_time_is_the_union_of_nested_compile_events():
    from opifex.cli._scf import _covered

    assert _covered([(0.0, 2.0), (0.5, 1.0), (3.0, 4.0), (3.5, 5.0)]) == 4.0
    assert _covered([]) == 0.0


def test_scf_rejects_unknown_molecule_and_options():
    unknown = _invoke("scf", "unobtainium")
    assert unknown.exit_code == 2 and "neither a known molecule" in unknown.output
    bad_basis = _invoke("scf", "H2", "--basis", "no-such-basis")
    assert bad_basis.exit_code == 2 and "unknown basis set" in bad_basis.output
    open_shell = _invoke("scf", "O2", "--method", "rhf")
    assert open_shell.exit_code == 2 and "closed-shell" in open_shell.output
    bad_guess = _invoke("scf", "H2", "--guess", "huckel")
    assert bad_guess.exit_code == 2 and "minao" in bad_guess.output
    no_budget = _invoke("scf", "H2O", "--basis", "6-31g", "--max-memory", "0")
    assert no_budget.exit_code == 2 and "max_memory" in no_budget.output
    bad_aux = _invoke("scf", "H2", "--auxbasis", "no-such-fit")
    assert bad_aux.exit_code == 2 and "unknown basis set" in bad_aux.output


@pytest.mark.slow
def test_scf_guesses_reach_the_same_energy():
    for guess in ("sad", "core"):
        result = _invoke("scf", "H2", "--guess", guess)
        assert result.exit_code == 0, result.output
        energy = float(re.search(r"total energy\s+(-?\d+\.\d+) Eh", result.output).group(1))
        assert abs(energy - H2_STO3G) < 1e-8


@pytest.mark.e2e
def test_scf_reports_non_convergence_with_exit_status_1():
    result = _invoke("scf", "H2O", "--max-steps", "2")
    assert result.exit_code == 1
    assert "NOT converged" in result.output and "in 2 cycles" in result.output
    rows = re.findall(r"^\s+(\d+)\s+-?\d+\.\d{10}\s", result.output, flags=re.MULTILINE)
    assert rows == ["1", "2"]  # one convergence-table row per cycle run


@pytest.mark.e2e
def test_scf_old_max_iterations_flag_still_works_with_a_warning():
    result = _invoke("scf", "H2O", "--max-iterations", "2")
    assert result.exit_code == 1 and "in 2 cycles" in result.output
    assert "--max-iterations is deprecated" in result.stderr and "--max-steps" in result.stderr
