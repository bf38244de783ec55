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


@pytest.mark.slow
def test_scf_from_xyz_file(tmp_path):
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\nhydrogen\nH 0 0 0\nH 0 0 0.74\n")
    result = _invoke("scf", str(xyz))
    assert result.exit_code == 0, result.output
    energy = float(re.search(r"total energy\s+(-?\d+\.\d+) Eh", result.output).group(1))
    assert abs(energy - H2_STO3G) < 1e-8


def test_scf_rejects_unknown_molecule_and_options():
    unknown = _invoke("scf", "unobtainium")
    assert unknown.exit_code == 2 and "neither a known molecule" in unknown.output
    bad_basis = _invoke("scf", "H2", "--basis", "cc-pvdz")
    assert bad_basis.exit_code == 2 and "unknown basis set" in bad_basis.output
    open_shell = _invoke("scf", "O2", "--method", "rhf")
    assert open_shell.exit_code == 2 and "closed-shell" in open_shell.output
    bad_guess = _invoke("scf", "H2", "--guess", "huckel")
    assert bad_guess.exit_code == 2 and "minao" in bad_guess.output


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


@pytest.mark.slow
def test_scf_old_max_iterations_flag_still_works_with_a_warning():
    result = _invoke("scf", "H2O", "--max-iterations", "2")
    assert result.exit_code == 1 and "in 2 cycles" in result.output
    assert "--max-iterations is deprecated" in result.stderr and "--max-steps" in result.stderr
