"""``opifex mpc``: swing-ups end to end (the pole held upright, the plot written), the model
identified from noisy data first, and bad input."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from opifex.cli._app import app

WIDE = {"COLUMNS": "200"}


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


@pytest.mark.e2e
@pytest.mark.parametrize("system", ["pendulum", "cartpole"])
def test_mpc_swings_up_and_writes_the_plot(system, tmp_path):
    plot = tmp_path / "swing.png"
    result = _invoke("mpc", system, "--plot", str(plot))
    assert result.exit_code == 0, result.output
    held = float(re.search(r"upright \(\|angle\| < 0.05\) from (\d+\.\d+) s", result.output)[1])
    assert held < 6.0
    assert plot.stat().st_size > 10_000


@pytest.mark.e2e
def test_mpc_on_a_model_identified_from_noisy_data(tmp_path):
    """The fitted mass, length and damping are within 1 % of the plant's, and MPC on them holds
    the real pendulum upright."""
    result = _invoke("mpc", "pendulum", "--identify", "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    errors = [
        float(e) for e in re.findall(r"(?:mass|length|damping)\s.*\s(\d\.\de-\d\d)", result.output)
    ]
    assert len(errors) == 3 and max(errors) < 0.01
    assert "fit SUCCESS" in result.output and "upright" in result.output


def test_mpc_rejects_unknown_systems_and_options():
    unknown = _invoke("mpc", "acrobot")
    assert unknown.exit_code != 0 and "pendulum or cartpole" in unknown.output
    budget = _invoke("mpc", "pendulum", "--budget", "0")
    assert budget.exit_code != 0 and "--budget" in budget.output
