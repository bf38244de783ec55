"""``opifex demo``: runs, converges, and its printed numbers agree with independent scipy runs.

The demo runs once per module (``demo_run``); its ``DemoReport`` is captured by wrapping
``_demo.run_demo``, so the printed table and the measured rows are checked against each other and
against scipy solves made here, not in the demo.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import pytest
import scipy.optimize
from typer.testing import CliRunner

from opifex.cli import _demo
from opifex.cli._app import app
from opifex.core.families import QuadraticFamily
from opifex.l2o.benchmarking import sample_tasks
from opifex.second_order import get_mgh_problem

WIDE = {"COLUMNS": "200"}  # no wrapped table cells
# f = |r|^2 where MGH (1981) ends from the standard start: the global minimum for Bard and
# Meyer, the local one for Freudenstein & Roth (where MINPACK ends too)
PUBLISHED_F = {"bard": 8.21487e-3, "meyer": 87.9458, "freudenstein_roth": 48.9842}


@pytest.fixture(scope="module")
def demo_run():
    captured = {}
    original = _demo.run_demo

    def capture(**kwargs):
        captured["report"] = original(**kwargs)
        return captured["report"]

    x64 = jax.config.jax_enable_x64
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_demo, "run_demo", capture)
            result = CliRunner().invoke(app, ["demo"], env=WIDE)
    finally:  # the command switches float64 on for its process; not for the other tests
        jax.config.update("jax_enable_x64", x64)
    assert result.exit_code == 0, result.output
    return result.output, captured["report"]


def _printed_cells(output: str, run: _demo.SolverRun) -> list[str]:
    """The cells after problem and solver on ``run``'s table line."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(f"{run.problem} ") and f" {run.solver} " in line
    ]
    assert len(lines) == 1, (run.problem, run.solver, lines)
    return lines[0].split(run.solver, 1)[1].split()


@pytest.mark.e2e
def test_demo_prints_both_tables(demo_run):
    output, report = demo_run
    assert "L-BFGS on the Rosenbrock function" in output
    assert "Levenberg-Marquardt on Moré-Garbow-Hillstrom problems" in output
    assert "Learned optimiser vs Adam on 200 fresh 10-D quadratics (100 steps)" in output
    assert "Adam lr 1.0, tuned in the benchmark" in output
    assert "Demo took" in output
    assert [r.problem for r in report.unconstrained] == [
        "rosenbrock 2-D",
        "rosenbrock 2-D",
        "rosenbrock 100-D",
        "rosenbrock 100-D",
    ]
    assert {r.problem for r in report.least_squares} == set(_demo.MGH_PROBLEMS)
    assert report.failures() == []


@pytest.mark.e2e
def test_printed_numbers_are_the_measured_ones(demo_run):
    output, report = demo_run
    for run in report.unconstrained:
        iters, f_evals, f, grad, _ms, converged = _printed_cells(output, run)
        assert (int(iters), int(f_evals)) == (run.iterations, run.fun_evals)
        np.testing.assert_allclose([float(f), float(grad)], [run.value, run.grad_norm], rtol=1e-3)
        assert converged == ("yes" if run.converged else "NO")
    for run in report.least_squares:
        iters, r_evals, j_evals, cost, grad, _ms, converged, kind = _printed_cells(output, run)
        assert (int(iters), int(r_evals), int(j_evals)) == (
            run.iterations,
            run.fun_evals,
            run.jac_evals,
        )
        np.testing.assert_allclose(float(cost), run.value, rtol=1e-8)
        np.testing.assert_allclose(float(grad), run.grad_norm, rtol=1e-3)
        assert kind == report.optimum_kind(run)


@pytest.mark.e2e
@pytest.mark.parametrize("n", [2, 100])
def test_lbfgs_solves_rosenbrock_as_scipy_does(demo_run, n):
    _, report = demo_run
    (ours,) = (r for r in report.unconstrained if r.problem == f"rosenbrock {n}-D" and r.ours)
    x = ours.params
    assert ours.converged
    # f and its gradient recomputed here with scipy's own Rosenbrock
    assert scipy.optimize.rosen(x) < 1e-10
    assert np.linalg.norm(scipy.optimize.rosen_der(x)) < 1e-6
    np.testing.assert_allclose(ours.value, scipy.optimize.rosen(x), rtol=1e-6, atol=1e-20)
    ref = scipy.optimize.minimize(
        scipy.optimize.rosen,
        np.tile([-1.2, 1.0], n // 2),
        jac=scipy.optimize.rosen_der,
        method="L-BFGS-B",
        options={"gtol": 1e-6, "ftol": 1e-15, "maxiter": 20_000, "maxfun": 50_000},
    )
    np.testing.assert_allclose(x, ref.x, atol=1e-5)  # both at the minimiser (1, ..., 1)
    np.testing.assert_allclose(x, np.ones(n), atol=1e-5)


@pytest.mark.e2e
@pytest.mark.parametrize("name", _demo.MGH_PROBLEMS)
def test_lm_cost_equals_scipy_lm(demo_run, name):
    with jax.enable_x64(True):  # the demo's float64, for the scipy reference and the cost
        _check_lm_cost(demo_run, name)


def _check_lm_cost(demo_run, name):
    _, report = demo_run
    (ours,) = (r for r in report.least_squares if r.problem == name and r.ours)
    problem = get_mgh_problem(name)
    residual = jax.jit(problem.residual_fn)
    jacobian = jax.jit(jax.jacfwd(problem.residual_fn))
    ref = scipy.optimize.least_squares(
        lambda x: np.asarray(residual(x)),
        np.asarray(problem.x0),
        jac=lambda x: np.asarray(jacobian(x)),
        method="lm",
        xtol=1e-8,
        ftol=1e-8,
        gtol=1e-8,
    )
    r = np.asarray(residual(ours.params))
    cost = 0.5 * float(r @ r)  # scipy's cost, recomputed here from our final point
    assert ours.converged and ref.success
    np.testing.assert_allclose(cost, ref.cost, rtol=1e-6)
    np.testing.assert_allclose(ours.value, ref.cost, rtol=1e-6)
    assert report.same_optimum(name)
    np.testing.assert_allclose(2 * cost, PUBLISHED_F[name], rtol=1e-5)


@pytest.mark.e2e
def test_learned_table_prints_the_measured_medians(demo_run):
    output, report = demo_run
    run = report.learned
    assert run.losses.shape == run.adam_losses.shape == (_demo.L2O_TASKS, _demo.L2O_STEPS + 1)
    assert run.losses.dtype == np.float32  # float64 was off for the float32 weights
    assert np.isfinite(run.losses).all() and np.isfinite(run.adam_losses).all()
    learned_cells = _printed_row(output, f"opifex.l2o {_demo.L2O_NAME} ")
    adam_cells = _printed_row(output, "Adam lr 1.0 ")
    np.testing.assert_allclose(float(learned_cells[-2]), np.median(run.losses[:, -1]), rtol=1e-3)
    np.testing.assert_allclose(float(adam_cells[-2]), np.median(run.adam_losses[:, -1]), rtol=1e-3)
    np.testing.assert_allclose(float(learned_cells[-1]), np.median(run.speedups), rtol=1e-2)
    assert np.median(run.speedups) > 1  # the learned optimiser is faster than tuned Adam
    assert np.median(run.losses[:, -1]) < np.median(run.adam_losses[:, -1])


@pytest.mark.e2e
def test_learned_speedups_and_adam_match_a_plain_recomputation(demo_run):
    _, report = demo_run
    run = report.learned
    # speedup by hand: Adam's steps to its final loss over the learned optimiser's
    for i in range(5):
        target = run.adam_losses[i, -1]
        adam_steps = np.argmax(run.adam_losses[i] <= target)
        reached = run.losses[i] <= target
        expected = adam_steps / np.argmax(reached) if reached.any() else 0.0
        np.testing.assert_allclose(run.speedups[i], expected, rtol=1e-6)
    # Adam on two of the tasks with a plain optax loop, float32
    family = QuadraticFamily(dimension=_demo.L2O_DIMENSION)
    with jax.enable_x64(False):
        keys = jax.random.wrap_key_data(run.task_keys[:2])
        tasks, params = sample_tasks(family, keys)
        adam = optax.adam(_demo.L2O_ADAM_LR)
        for i in range(2):
            task = jax.tree.map(lambda leaf, i=i: leaf[i], tasks)
            x, losses = params[i], []
            state = adam.init(x)
            for _ in range(_demo.L2O_STEPS):
                losses.append(float(family.loss(x, task, None)))
                updates, state = adam.update(jax.grad(family.loss)(x, task, None), state, x)
                x = optax.apply_updates(x, updates)
            losses.append(float(family.loss(x, task, None)))
            np.testing.assert_allclose(run.adam_losses[i], losses, rtol=1e-3, atol=1e-5)


def _printed_row(output: str, start: str) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0].split()


@pytest.mark.e2e
def test_demo_fails_clearly_when_our_solver_does_not_converge(demo_run, monkeypatch):
    _, report = demo_run
    stuck = dataclasses.replace(
        report.unconstrained[0], converged=False, message="stopped at the step budget"
    )
    broken = dataclasses.replace(report, unconstrained=(stuck, *report.unconstrained[1:]))
    monkeypatch.setattr(_demo, "run_demo", lambda **kwargs: broken)
    result = CliRunner().invoke(app, ["demo"], env=WIDE)
    assert result.exit_code == 1
    assert "opifex solver did not converge" in result.output
    assert "opifex L-BFGS on rosenbrock 2-D: stopped at the step budget" in result.output


def test_run_demo_needs_float64():
    with jax.enable_x64(False), pytest.raises(RuntimeError, match="float64"):
        _demo.run_demo()
