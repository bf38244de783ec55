"""Learning through MPC: recover dynamics and cost parameters from expert controls, float64.

The imitation experiment of differentiable MPC (Amos et al., "Differentiable MPC for end-to-end
planning and control", NeurIPS 2018): an expert solves a torque-limited pendulum swing-up with
iLQR / box-DDP (``opifex.control.ILQR``) at the true parameters ``theta*`` from random initial
states; a learner with the same solver but unknown parameters solves from the same states and
descends the imitation loss

``L(theta) = mean_{i, t} (u_t(theta; x0_i) - u*_{t,i})^2``

through the solver, with the implicit gradient at the solution (``opifex.core.run_solver``'s
default adjoint: the implicit function theorem on the projected gradient of the trajectory
cost). Every learner solve starts from the expert's control sequence of the same initial state
(so the loss is a deterministic function of ``theta``, and ``L(theta*) = 0`` exactly).

* **Unknowns** (7, fitted as logarithms): the pendulum's ``mass``, ``length`` and ``damping``
  (``gravity`` 9.81 known) and the cost weights ``Q = diag(Q_theta, Q_omega)``,
  ``Qf = diag(Qf_theta, Qf_omega)``. Cost weights are identifiable only up to a common scale, so
  the control weight ``R`` is fixed at its true value: every cost error below is an error of the
  ratio ``weight / R``.
* **Problems**: ``swingup_T30`` (the main one): the benchmark pendulum swing-up of
  ``problems.py`` (``|u| <= 5`` N m, ``dt = 0.08`` s, ``Q = diag(1, 0.1)``, ``Qf = diag(100,
  10)``, mass 1 kg, length 1 m, damping 0.1 N m s) with a shorter horizon ``T = 30`` (2.4 s) and
  ``R = 0.1`` instead of 0.01. ``swingup_T50``: the benchmark problem as it is (``T = 50``,
  ``R = 0.01``), whose optimal controls are nearly bang-bang (about three quarters of them at the
  bound) and switch between local minima (swing left or right, one pump or two) under small
  parameter changes: it is run with fewer seeds and Adam steps, to show where the method stops.
* **Data**: per seed, ``--train`` initial states with angle uniform in ``[-pi, pi)`` and rate
  uniform in ``[-2, 2]`` rad/s (those whose expert solve does not end in ``SUCCESS`` are replaced
  by further draws, and counted), and ``--held-out`` fresh ones.
* **Start**: each log-parameter perturbed uniformly within ``log(--spread)`` (default: each
  parameter within a factor 1.5 of the truth).
* **Optimisers**: optax Adam (``--learning-rate`` 0.05; ``--adam-steps`` 800 on
  ``swingup_T30``, ``--hard-adam-steps`` 100 on ``swingup_T50``) on the implicit reverse-mode
  gradient, and Levenberg-Marquardt (``opifex.second_order.least_squares``, at most
  ``--lm-steps`` 50 iterations) on the residuals ``u(theta) - u*`` with their Jacobian by
  forward-mode implicit differentiation. Seeds: ``--seeds`` 5 (``swingup_T30``) and
  ``--hard-seeds`` 3 (``swingup_T50``); a seed draws the initial states and the start.
* **Reported**: the loss curve per seed, the relative error ``|p / p* - 1|`` of each parameter at
  the end (median and range over seeds, never a selected run), and held-out controls: both the
  expert and the learner solve the fresh initial states from zero controls (as an MPC would),
  and their control RMSE is compared with that of the starting parameters; a start is
  "mismatched" when its control RMSE exceeds 0.5 N m (another local minimum).
* **Gradients at one theta** (``swingup_T30``, the first seed's start, on the training states
  whose learner solve ends in ``SUCCESS`` there: the loss is smooth only where the solves
  converge, and the implicit gradient assumes they did): the implicit gradient,
  the gradient through the unrolled iterations (``adjoint="unrolled"``, a ``lax.scan`` of the
  same iteration budget), and central finite differences of the loss with steps 1e-3, 1e-4
  and 1e-5 in the log-parameters (iLQR stops at attainable precision, with controls accurate to
  about 1e-8 relative, so the differences' noise grows as the step shrinks while their
  truncation error falls: the smallest error over the steps is the differences' own accuracy);
  compile time, steady-state time, XLA's temporary buffer size, and the largest relative error
  over the parameters against the differences of each step.
* **Local identifiability**: the singular values of ``du/dlog(theta)`` at ``theta*`` (scaled by
  ``1 / sqrt(#controls)``) on the first seed's data.

Run ``uv run python benchmarks/control/bench_imitation.py [--quick]``; output: tables on stdout,
``benchmarks/results/control_imitation.json`` and ``control_imitation.png``. Times are CPU wall
times, compilation separate from steady state. The full run takes about 4.5 minutes on a
2-core machine shared with other work (263 s measured). ``--quick`` (about 50 s: one seed of
``swingup_T30`` with 6 states, 40 Adam steps, 20 LM iterations, no unrolled gradient,
identifiability or ``swingup_T50``) is a smoke test.
"""

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import print_progress, print_tables, run_metadata, write_outputs
from problems import ProblemData, pendulum_swingup_data

from opifex.control import ILQR, ILQRConfig, TrajectoryProblem
from opifex.control._problem import QuadraticCost
from opifex.core import SolveStatus
from opifex.second_order import least_squares

LOG = logging.getLogger("opifex.benchmarks.control")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "control_imitation"
DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "optax",
    "opifex-core",
    "opifex-second-order",
    "opifex-control",
)
Progress = Callable[[int, int, str], None]

PARAMS = ("mass", "length", "damping", "Q_theta", "Q_omega", "Qf_theta", "Qf_omega")
VARIANTS = {  # horizon and control weight R of each problem (the rest from problems.py)
    "swingup_T30": {"horizon": 30, "control_weight": 0.1},
    "swingup_T50": {"horizon": 50, "control_weight": 0.01},
}
ANGLE_RANGE, RATE_RANGE = np.pi, 2.0
ILQR_STEPS = 300  # the iteration budget of every solve (expert, learner, unrolled)
MISMATCH_RMSE = 0.5  # N m: a held-out start whose controls differ more is another local minimum
FD_STEPS = (1e-3, 1e-4, 1e-5)  # central differences: truncation error vs the solves' noise
RECOVERED_RTOL = 0.05  # a fit "recovers" theta* when every parameter is within 5 %


@dataclasses.dataclass(frozen=True, eq=False)
class Setting:
    """One problem: its data, its ``TrajectoryProblem``, the solver and the true log-parameters."""

    name: str
    data: ProblemData
    problem: TrajectoryProblem
    solver: ILQR
    control_weight: float
    truth: np.ndarray  # log of PARAMS' true values

    def theta(self, log_params: jax.Array) -> tuple[dict, QuadraticCost]:
        """``(dynamics_params, cost)`` of the log-parameters (gravity and goal from the data)."""
        p = jnp.exp(log_params)
        dynamics = {
            "mass": p[0],
            "length": p[1],
            "damping": p[2],
            "gravity": jnp.asarray(self.data.params["gravity"], p.dtype),
        }
        cost = QuadraticCost(
            jnp.diag(p[3:5]),
            jnp.full((1, 1), self.control_weight, p.dtype),
            jnp.diag(p[5:7]),
            jnp.asarray(self.data.goal, p.dtype),
        )
        return dynamics, cost


def _curve(values: list[float]) -> list[float]:
    """A per-step curve kept to 4 significant digits (the results file holds one per seed)."""
    return [float(f"{v:.4g}") for v in values]


def _setting(name: str) -> Setting:
    variant = VARIANTS[name]
    base = pendulum_swingup_data()
    r = variant["control_weight"]
    data = dataclasses.replace(base, horizon=variant["horizon"], R=np.diag([r]))
    problem = data.trajectory_problem()
    truth = np.log(
        [
            data.params["mass"],
            data.params["length"],
            data.params["damping"],
            *np.diag(data.Q),
            *np.diag(data.Qf),
        ]
    )
    solver = ILQR(problem, ILQRConfig(max_steps=ILQR_STEPS))
    return Setting(name, data, problem, solver, r, truth)


def _solve(setting: Setting, log_params, x0s, guesses, adjoint=None):
    """A batch of solves (``vmap`` over initial states), each from its own guess."""
    theta = setting.theta(log_params)
    return jax.vmap(
        lambda x0, guess: setting.solver.run(
            guess, x0, theta, max_steps=ILQR_STEPS, adjoint=adjoint
        )
    )(x0s, guesses)


def _loss(setting: Setting, log_params, x0s, expert, adjoint=None):
    """The imitation loss and the learner's solves (warm-started at the expert's controls)."""
    result = _solve(setting, log_params, x0s, expert, adjoint)
    return jnp.mean((result.params - expert) ** 2), result


def _draw_states(key: jax.Array, count: int) -> jax.Array:
    k_angle, k_rate = jax.random.split(key)
    angle = jax.random.uniform(k_angle, (count,), minval=-ANGLE_RANGE, maxval=ANGLE_RANGE)
    rate = jax.random.uniform(k_rate, (count,), minval=-RATE_RANGE, maxval=RATE_RANGE)
    return jnp.stack([angle, rate], axis=1)


class Compiled:
    """The jitted functions of one setting (compiled once, reused over seeds)."""

    def __init__(self, setting: Setting, learning_rate: float, lm_steps: int):
        self.setting = setting
        self.optimizer = optax.adam(learning_rate)
        self.solve = jax.jit(lambda p, x0s, guesses: _solve(setting, p, x0s, guesses))
        self.loss = jax.jit(lambda p, x0s, expert: _loss(setting, p, x0s, expert)[0])

        def adam_step(log_params, state, x0s, expert):
            (loss, result), grad = jax.value_and_grad(
                lambda p: _loss(setting, p, x0s, expert), has_aux=True
            )(log_params)
            updates, state = self.optimizer.update(grad, state, log_params)
            bad = jnp.sum(result.status != SolveStatus.SUCCESS)
            return optax.apply_updates(log_params, updates), state, loss, bad

        self.adam_step = jax.jit(adam_step)
        scale = 1.0 / np.sqrt(setting.problem.horizon)

        def residual(log_params, x0s, expert):
            controls = _solve(setting, log_params, x0s, expert).params
            return ((controls - expert) * scale / jnp.sqrt(x0s.shape[0])).ravel()

        self.residual = residual
        self.lm = jax.jit(
            lambda p, x0s, expert: least_squares(residual, p, x0s, expert, max_steps=lm_steps)
        )


def _experts(compiled: Compiled, key: jax.Array, count: int) -> tuple[jax.Array, jax.Array, int]:
    """``count`` initial states whose expert solve converged, their controls, and rejections."""
    setting = compiled.setting
    truth = jnp.asarray(setting.truth)
    kept_x0, kept_u, rejected = [], [], 0
    while sum(len(x) for x in kept_x0) < count:
        key, sub = jax.random.split(key)
        x0s = _draw_states(sub, count)
        zeros = jnp.zeros((count, setting.problem.horizon, setting.problem.control_dim))
        result = compiled.solve(truth, x0s, zeros)
        ok = np.asarray(result.status) == SolveStatus.SUCCESS
        rejected += int(np.sum(~ok))
        kept_x0.append(np.asarray(x0s)[ok])
        kept_u.append(np.asarray(result.params)[ok])
    x0s = jnp.asarray(np.concatenate(kept_x0)[:count])
    return x0s, jnp.asarray(np.concatenate(kept_u)[:count]), rejected


def _relative_errors(setting: Setting, log_params: Any) -> dict[str, float]:
    values = np.exp(np.asarray(log_params, np.float64) - setting.truth) - 1.0
    return {name: abs(float(v)) for name, v in zip(PARAMS, values, strict=True)}


def _held_out(compiled: Compiled, x0s: jax.Array, candidates: dict[str, Any]) -> dict[str, Any]:
    """Control RMSE against the expert on fresh starts, every solve from zero controls."""
    setting = compiled.setting
    zeros = jnp.zeros((x0s.shape[0], setting.problem.horizon, setting.problem.control_dim))
    expert = compiled.solve(jnp.asarray(setting.truth), x0s, zeros)
    out = {"expert_not_success": int(np.sum(np.asarray(expert.status) != SolveStatus.SUCCESS))}
    for name, log_params in candidates.items():
        learner = compiled.solve(jnp.asarray(log_params), x0s, zeros)
        diff = np.asarray(learner.params - expert.params)
        per_start = np.sqrt(np.mean(diff**2, axis=(1, 2)))
        out[name] = {
            "control_rmse": float(np.sqrt(np.mean(diff**2))),
            "median_start_rmse": float(np.median(per_start)),
            "mismatched_starts": int(np.sum(per_start > MISMATCH_RMSE)),
            "not_success": int(np.sum(np.asarray(learner.status) != SolveStatus.SUCCESS)),
        }
    return out


def _run_seed(
    compiled: Compiled, seed: int, args: argparse.Namespace, adam_steps: int
) -> dict[str, Any]:
    setting = compiled.setting
    k_train, k_held, k_start = jax.random.split(jax.random.key(seed), 3)
    x0s, expert, rejected = _experts(compiled, k_train, args.train)
    start = setting.truth + np.asarray(
        jax.random.uniform(
            k_start, (len(PARAMS),), minval=-np.log(args.spread), maxval=np.log(args.spread)
        )
    )
    row: dict[str, Any] = {
        "seed": seed,
        "expert_rejected_starts": rejected,
        "train_states": np.asarray(x0s).tolist(),
        "start_params": dict(zip(PARAMS, np.exp(start).tolist(), strict=True)),
        "start_relative_error": _relative_errors(setting, start),
    }
    # Adam on the implicit gradient
    log_params = jnp.asarray(start)
    state = compiled.optimizer.init(log_params)
    losses, max_errors, bad, step_times = [], [], 0, []
    for _ in range(adam_steps):
        max_errors.append(max(_relative_errors(setting, log_params).values()))
        tick = time.perf_counter()
        log_params, state, loss, n_bad = jax.block_until_ready(
            compiled.adam_step(log_params, state, x0s, expert)
        )
        step_times.append(time.perf_counter() - tick)
        losses.append(float(loss))
        bad += int(n_bad)
    final_loss = float(compiled.loss(log_params, x0s, expert))
    adam_params = np.asarray(log_params)
    errors = _relative_errors(setting, adam_params)
    row["adam"] = {
        # entry k: at the parameters after k steps (4 significant digits: plot data)
        "loss": _curve([*losses, final_loss]),
        "max_relative_error_curve": _curve([*max_errors, max(errors.values())]),
        "relative_error": errors,
        "params": dict(zip(PARAMS, np.exp(adam_params).tolist(), strict=True)),
        "learner_solves_not_success": bad,
        "first_step_seconds": step_times[0],
        "steady_step_seconds": float(np.median(step_times[1:])) if adam_steps > 1 else None,
        "seconds": float(np.sum(step_times)),
    }
    # Levenberg-Marquardt on the residuals (forward-mode implicit Jacobian)
    tick = time.perf_counter()
    fit = jax.block_until_ready(compiled.lm(jnp.asarray(start), x0s, expert))
    seconds = time.perf_counter() - tick
    lm_params = np.asarray(fit.params)
    steps = int(fit.num_steps)
    errors = _relative_errors(setting, lm_params)
    row["lm"] = {
        "loss": (2.0 * np.asarray(fit.trace["value"][: steps + 1])).tolist(),  # MSE per iteration
        "relative_error": errors,
        "max_relative_error": max(errors.values()),
        "params": dict(zip(PARAMS, np.exp(lm_params).tolist(), strict=True)),
        "status": fit.status_name,
        "num_steps": steps,
        "seconds": seconds,
    }
    candidates = {"start": start, "adam": adam_params, "lm": lm_params}
    row["held_out"] = _held_out(compiled, _draw_states(k_held, args.held_out), candidates)
    return row


def _gradient_check(
    compiled: Compiled, row: dict[str, Any], adjoints: Sequence[str]
) -> dict[str, Any]:
    """Implicit (and unrolled) gradient vs central differences at the first seed's start."""
    setting = compiled.setting
    x0s = jnp.asarray(row["train_states"])
    log_params = jnp.log(jnp.asarray([row["start_params"][k] for k in PARAMS]))
    zeros = jnp.zeros((x0s.shape[0], setting.problem.horizon, setting.problem.control_dim))
    expert = compiled.solve(jnp.asarray(setting.truth), x0s, zeros).params
    learner = compiled.solve(log_params, x0s, expert)
    # the implicit gradient holds at a solution, and the loss is smooth only where the solves
    # converge: the check uses the starts whose learner solve ends in SUCCESS
    converged = np.asarray(learner.status) == SolveStatus.SUCCESS
    out: dict[str, Any] = {
        "ilqr_steps_per_start": np.asarray(learner.num_steps).tolist(),
        "ilqr_not_success": int(np.sum(~converged)),
        "starts_used": int(np.sum(converged)),
    }
    x0s, expert = x0s[converged], expert[converged]
    grads = {}
    for adjoint in adjoints:
        fn = jax.jit(jax.grad(lambda p, x, u, a=adjoint: _loss(setting, p, x, u, a)[0]))
        tick = time.perf_counter()
        executable = fn.lower(log_params, x0s, expert).compile()
        compile_s = time.perf_counter() - tick
        memory = executable.memory_analysis()
        times = []
        for _ in range(4):
            tick = time.perf_counter()
            grad = jax.block_until_ready(executable(log_params, x0s, expert))
            times.append(time.perf_counter() - tick)
        grads[adjoint] = np.asarray(grad)
        out[adjoint] = {
            "gradient": grads[adjoint].tolist(),
            "compile_seconds": compile_s,
            "first_call_seconds": times[0],
            "steady_seconds": float(np.median(times[1:])),
            "temp_bytes": None if memory is None else int(memory.temp_size_in_bytes),
        }
    differences = {}
    for h in FD_STEPS:
        column = []
        for i in range(len(PARAMS)):
            plus = compiled.loss(log_params.at[i].add(h), x0s, expert)
            minus = compiled.loss(log_params.at[i].add(-h), x0s, expert)
            column.append(float(plus - minus) / (2 * h))
        differences[h] = np.asarray(column)
        out[f"finite_difference_h{h:g}"] = column
    for adjoint in adjoints:
        out[adjoint]["max_relative_error_vs_fd"] = {}
        for h, column in differences.items():
            rel = np.abs(grads[adjoint] - column) / np.abs(column)
            out[adjoint][f"relative_error_vs_fd_h{h:g}"] = dict(
                zip(PARAMS, rel.tolist(), strict=True)
            )
            out[adjoint]["max_relative_error_vs_fd"][f"{h:g}"] = float(np.max(rel))
    if "unrolled" in grads:
        rel = np.abs(grads["implicit"] - grads["unrolled"]) / np.abs(grads["unrolled"])
        out["implicit_vs_unrolled"] = float(np.max(rel))
    return out


def _identifiability(compiled: Compiled, row: dict[str, Any]) -> dict[str, Any]:
    """Singular values of ``du/dlog(theta)`` at the truth (forward-mode implicit Jacobian)."""
    setting = compiled.setting
    x0s = jnp.asarray(row["train_states"])
    truth = jnp.asarray(setting.truth)
    zeros = jnp.zeros((x0s.shape[0], setting.problem.horizon, setting.problem.control_dim))
    expert = compiled.solve(truth, x0s, zeros).params
    jacobian = np.asarray(jax.jit(jax.jacfwd(compiled.residual))(truth, x0s, expert))
    singular = np.linalg.svd(jacobian, compute_uv=False)
    return {
        "singular_values": singular.tolist(),
        "condition_number": float(singular[0] / singular[-1]),
        "column_norms": dict(zip(PARAMS, np.linalg.norm(jacobian, axis=0).tolist(), strict=True)),
        "saturated_fraction": float(np.mean(np.isclose(np.abs(expert), setting.data.upper[0]))),
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    values = [float(v) if np.isfinite(v) else np.inf for v in values]
    return {"median": float(np.median(values)), "min": min(values), "max": max(values)}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start_loss": _stats([r["adam"]["loss"][0] for r in rows]),
        "start_relative_error": {
            name: _stats([r["start_relative_error"][name] for r in rows]) for name in PARAMS
        },
        "start_max_relative_error": _stats([max(r["start_relative_error"].values()) for r in rows]),
    }
    for method in ("adam", "lm"):
        out[method] = {
            "relative_error": {
                name: _stats([r[method]["relative_error"][name] for r in rows]) for name in PARAMS
            },
            "max_relative_error": _stats([max(r[method]["relative_error"].values()) for r in rows]),
            "recovered": sum(
                max(r[method]["relative_error"].values()) < RECOVERED_RTOL for r in rows
            ),
            "final_loss": _stats([r[method]["loss"][-1] for r in rows]),
            "seconds": _stats([r[method]["seconds"] for r in rows]),
        }
        out[method]["held_out_control_rmse"] = _stats(
            [r["held_out"][method]["control_rmse"] for r in rows]
        )
        out[method]["held_out_mismatched_starts"] = _stats(
            [r["held_out"][method]["mismatched_starts"] for r in rows]
        )
    out["start_held_out_control_rmse"] = _stats(
        [r["held_out"]["start"]["control_rmse"] for r in rows]
    )
    out["start_held_out_mismatched_starts"] = _stats(
        [r["held_out"]["start"]["mismatched_starts"] for r in rows]
    )
    out["lm_status"] = [r["lm"]["status"] for r in rows]
    out["adam_steady_step_seconds"] = _stats(
        [r["adam"]["steady_step_seconds"] or np.nan for r in rows]
    )
    return out


# -- output -----------------------------------------------------------------------------------


def _cell(stats: dict[str, float], fmt: str = ".2e") -> str:
    if stats["median"] is None:
        return "failed"
    if stats["min"] == stats["max"]:
        return f"{stats['median']:{fmt}}"
    return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def _render(results: dict[str, Any]) -> None:
    sections = []
    config = results["config"]
    for name, study in results["problems"].items():
        summary, seeds = study["summary"], len(study["rows"])
        rows = [
            [
                "start",
                _cell(summary["start_loss"]),
                *(_cell(summary["start_relative_error"][p], ".1e") for p in PARAMS),
                _cell(summary["start_max_relative_error"]),
                "-",
            ]
        ]
        for method in ("adam", "lm"):
            s = summary[method]
            rows.append(
                [
                    method,
                    _cell(s["final_loss"]),
                    *(_cell(s["relative_error"][p], ".1e") for p in PARAMS),
                    _cell(s["max_relative_error"]),
                    f"{s['recovered']}/{seeds}",
                ]
            )
        sections.append(
            (
                f"{name}: |p/p*-1| per parameter, median and range over {seeds} seeds"
                f" (Adam {study['adam_steps']} steps, LM <= {config['lm_steps']} iterations;"
                f" R fixed; recovered: all within {RECOVERED_RTOL:.0%})",
                ["method", "final loss", *PARAMS, "max", "recovered"],
                rows,
            )
        )
        held = [
            [
                "start",
                _cell(summary["start_held_out_control_rmse"]),
                _cell(summary["start_held_out_mismatched_starts"], ".0f"),
            ]
        ]
        held += [
            [
                method,
                _cell(summary[method]["held_out_control_rmse"]),
                _cell(summary[method]["held_out_mismatched_starts"], ".0f"),
            ]
            for method in ("adam", "lm")
        ]
        sections.append(
            (
                f"{name}: held-out starts ({config['held_out']} per seed,"
                " solved from zero controls)",
                ["parameters", "control RMSE vs expert (N m)", "mismatched starts"],
                held,
            )
        )
    check = results.get("gradient_check")
    if check:
        rows = []
        for adjoint in ("implicit", "unrolled"):
            if adjoint not in check:
                continue
            c = check[adjoint]
            temp = "-" if c["temp_bytes"] is None else f"{c['temp_bytes'] / 2**20:.1f}"
            rows.append(
                [
                    adjoint,
                    f"{c['compile_seconds']:.1f}",
                    f"{c['steady_seconds']:.3f}",
                    temp,
                    *(f"{c['max_relative_error_vs_fd'][f'{h:g}']:.1e}" for h in FD_STEPS),
                ]
            )
        agreement = check.get("implicit_vs_unrolled", float("nan"))
        sections.append(
            (
                "gradient of the imitation loss at one theta (swingup_T30, first seed's start,"
                f" {check['starts_used']} starts, dropped {check['ilqr_not_success']} not"
                f" SUCCESS); implicit vs unrolled: {agreement:.1e}",
                [
                    "adjoint",
                    "compile s",
                    "steady s",
                    "temp MiB",
                    *(f"max rel. err vs FD h={h:g}" for h in FD_STEPS),
                ],
                rows,
            )
        )
    ident = results.get("identifiability", {})
    if ident:
        sections.append(
            (
                "local identifiability at theta*: singular values of du/dlog(theta)",
                ["problem", "saturated controls", "singular values", "condition"],
                [
                    [
                        name,
                        f"{d['saturated_fraction']:.2f}",
                        " ".join(f"{v:.2g}" for v in d["singular_values"]),
                        f"{d['condition_number']:.0f}",
                    ]
                    for name, d in ident.items()
                ],
            )
        )
    print_tables(sections, [f"total {results['total_seconds']:.0f} s"], sys.stdout)


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib is not installed: no plot")
        return
    problems = results["problems"]
    figure, axes = plt.subplots(len(problems), 3, figsize=(15, 4 * len(problems)), squeeze=False)
    for row_axes, (name, study) in zip(axes, problems.items(), strict=True):
        for run in study["rows"]:
            line = row_axes[0].semilogy(
                run["adam"]["loss"], lw=1, label=f"Adam, seed {run['seed']}"
            )
            row_axes[0].semilogy(
                run["lm"]["loss"], "o--", ms=3, lw=1, color=line[0].get_color(), label="LM"
            )
            row_axes[1].semilogy(run["adam"]["max_relative_error_curve"], lw=1)
        row_axes[0].set_xlabel("Adam step / LM iteration (dashed)")
        row_axes[0].set_ylabel("imitation loss (MSE of controls)")
        row_axes[0].set_title(f"{name}: loss per seed", fontsize=9)
        row_axes[0].legend(fontsize=6, ncol=2)
        row_axes[1].set_xlabel("Adam step")
        row_axes[1].set_ylabel("max_p |p / p* - 1|")
        row_axes[1].set_title(f"{name}: parameter error (Adam)", fontsize=9)
        for j, method in enumerate(("adam", "lm")):
            for i, param in enumerate(PARAMS):
                values = [max(r[method]["relative_error"][param], 1e-12) for r in study["rows"]]
                x = i + (j - 0.5) * 0.3
                row_axes[2].scatter([x] * len(values), values, s=12, color=f"C{j}", alpha=0.7)
                row_axes[2].plot([x - 0.1, x + 0.1], [np.median(values)] * 2, color=f"C{j}")
        start = [max(r["start_relative_error"].values()) for r in study["rows"]]
        row_axes[2].axhline(np.median(start), color="grey", ls=":", label="start (median max)")
        row_axes[2].scatter([], [], color="C0", label="Adam")
        row_axes[2].scatter([], [], color="C1", label="LM")
        row_axes[2].set_xticks(range(len(PARAMS)), PARAMS, rotation=30, fontsize=7)
        row_axes[2].set_yscale("log")
        row_axes[2].set_ylabel("final |p / p* - 1| (bar: median)")
        row_axes[2].set_title(f"{name}: final error per parameter and seed", fontsize=9)
        row_axes[2].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark (see the module docstring); 0 when it ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke-sized run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of swingup_T30")
    parser.add_argument("--hard-seeds", type=int, default=3, help="seeds of swingup_T50")
    parser.add_argument("--train", type=int, default=16, help="expert initial states per seed")
    parser.add_argument("--held-out", type=int, default=16, help="fresh initial states per seed")
    parser.add_argument("--spread", type=float, default=1.5, help="start within this factor")
    parser.add_argument("--adam-steps", type=int, default=800, help="Adam steps, swingup_T30")
    parser.add_argument("--hard-adam-steps", type=int, default=100, help="Adam steps, T50")
    parser.add_argument("--learning-rate", type=float, default=0.05, help="Adam, log-params")
    parser.add_argument("--lm-steps", type=int, default=50, help="LM iteration budget")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.hard_seeds, args.train, args.held_out = 1, 0, 6, 6
        args.adam_steps, args.lm_steps = 40, 20
    jax.config.update("jax_enable_x64", True)
    progress = progress or print_progress
    plan = [("swingup_T30", args.seeds, args.adam_steps)]
    if args.hard_seeds > 0:
        plan.append(("swingup_T50", args.hard_seeds, args.hard_adam_steps))
    total = sum(seeds for _, seeds, _ in plan) + len(plan) + 1
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        progress(done, total, label)

    begin = time.perf_counter()
    problems, identifiability, gradient_check = {}, {}, None
    for name, seeds, steps in plan:
        compiled = Compiled(_setting(name), args.learning_rate, args.lm_steps)
        rows = []
        for seed in range(seeds):
            rows.append(_run_seed(compiled, seed, args, steps))
            tick(f"{name} seed {seed}")
        if name == "swingup_T30":
            adjoints = ("implicit",) if args.quick else ("implicit", "unrolled")
            gradient_check = _gradient_check(compiled, rows[0], adjoints)
            tick("gradient check")
        if not args.quick:
            identifiability[name] = _identifiability(compiled, rows[0])
        tick(f"{name} identifiability")
        problems[name] = {
            "problem": compiled.setting.data.to_dict(),
            "truth": dict(zip(PARAMS, np.exp(compiled.setting.truth).tolist(), strict=True)),
            "adam_steps": steps,
            "rows": rows,
            "summary": _summary(rows),
        }
    results = {
        "benchmark": NAME,
        "meta": run_metadata(DISTRIBUTIONS),
        "config": {
            "params": list(PARAMS),
            "fixed": "R (control weight) at its true value; gravity 9.81",
            "train": args.train,
            "held_out": args.held_out,
            "spread_factor": args.spread,
            "initial_state_ranges": {"angle": ANGLE_RANGE, "rate": RATE_RANGE},
            "learning_rate": args.learning_rate,
            "lm_steps": args.lm_steps,
            "ilqr_max_steps": ILQR_STEPS,
            "warm_start": "the expert's controls of the same initial state",
            "held_out_warm_start": "zero controls (expert and learner alike)",
            "mismatch_rmse": MISMATCH_RMSE,
            "finite_difference_steps": list(FD_STEPS),
            "recovered_rtol": RECOVERED_RTOL,
            "quick": args.quick,
        },
        "problems": problems,
        "gradient_check": gradient_check,
        "identifiability": identifiability,
        "total_seconds": time.perf_counter() - begin,
    }
    write_outputs(
        results, args.output_dir, NAME, render=_render, plot=None if args.no_plot else _plot
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
