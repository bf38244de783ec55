"""The measurements of ``bench_mpc.py``, one function per section (see its docstring).

Every function builds its problems itself (float64 unless it says float32), compiles what it
times before timing it, and returns JSON-ready dicts and lists.
"""

from __future__ import annotations

import time
from typing import Any

import baselines
import jax
import jax.numpy as jnp
import numpy as np
from bench_common import timed_calls
from problems import PROBLEMS, ProblemData

from opifex.control import (
    ILQR,
    ILQRConfig,
    MPCController,
    TrajectoryProblem,
    adaptive_cruise_control,
    closed_loop,
    discretize,
    double_integrator,
    planar_quadrotor,
    quadratic_cost,
    wrap_angle,
)
from opifex.core import SolveStatus

CONFIG = {
    "closed_loop_seconds": 12.0,
    "plant_rk4_substeps": 8,
    "held_tolerance_rad": 0.05,
    "closed_loop_runs": [["cold plan", 1], ["cold plan", 3], ["cold plan", 10], ["zero plan", 10]],
    "warm_step_budget": 10,
    "rate_budgets": [1, 10],
    "mismatch_factors": [0.8, 0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1, 1.2],
    "rate_periods": 60,
    "gap_tolerances": [1e-4, 1e-6, 1e-8],
    "gradient_fd_steps": [1e-3, 1e-4, 1e-5],
    "gradient_weights_seed": 0,
}
SOLVE_BUDGET_S = 20.0


def _status_name(code: Any) -> str:
    return SolveStatus(int(code)).name


def _lists(obj: Any) -> Any:
    """``obj`` with numpy and JAX arrays turned into (nested) lists of floats."""
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_lists(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return np.asarray(obj, np.float64).tolist()
    return obj


def _first_below(norms: np.ndarray, rtol: float) -> int | None:
    """The first iteration whose gradient norm is at most ``rtol`` times the largest so far
    (the stopping rule of ``ILQRConfig(atol=0, rtol=rtol)``)."""
    norms = norms[np.isfinite(norms)]
    hits = np.flatnonzero(norms <= rtol * np.maximum.accumulate(norms))
    return int(hits[0]) if hits.size else None


def _opifex_cold(name: str, dtype: str, repeats: int) -> dict[str, Any]:
    """Compile and time opifex's ILQR from ``U = 0`` in ``dtype``."""
    with jax.enable_x64(dtype == "float64"):
        problem, data = PROBLEMS[name]()
        compile_seconds, times, result = _timed_solve(
            problem, data.x0, ILQRConfig(), repeats, SOLVE_BUDGET_S
        )
        plan = np.asarray(result.params, np.float64)
        states = np.asarray(result.aux.states, np.float64)
        values = np.asarray(result.trace["value"], np.float64)
        norms = np.asarray(result.trace["grad_norm"], np.float64)
    return {
        "solver": f"opifex ilqr {dtype}",
        "status": _status_name(result.status),
        "iterations": int(result.num_steps),
        "compile_seconds": compile_seconds,
        "cold_seconds": float(np.median(times)),
        "value_trace": values[np.isfinite(values)].tolist(),
        "iterations_to_rtol_1e-8": _first_below(norms, 1e-8),
        **baselines.summarize(data, {"controls": plan, "states": states}),
        "plan": plan.tolist(),
    }


def cold_solves(name: str, repeats: int, *, baselines_on: bool) -> dict[str, Any]:
    """Cold solves of problem ``name``: opifex float64 / float32 and every available baseline.

    ``iterations_to_gap[tol]``: the first iteration whose cost is within ``tol`` (relative)
    of the best cost any solver reached (opifex rows only: they record every iterate's cost).
    """
    data = PROBLEMS[name]().data
    rows = [_opifex_cold(name, dtype, repeats) for dtype in ("float64", "float32")]
    if baselines_on:
        rows += baselines.baseline_rows(data, repeats=min(repeats, 5), mpc_steps=10)
    feasible = [row["cost"] for row in rows if row["max_bound_violation"] <= 1e-6]
    best = min(feasible)
    for row in rows:
        trace = np.asarray(row.pop("value_trace", []))
        if trace.size:
            gaps = (trace - best) / abs(best)
            row["iterations_to_gap"] = {
                f"{tol:.0e}": (int(np.argmax(gaps <= tol)) if np.any(gaps <= tol) else None)
                for tol in CONFIG["gap_tolerances"]
            }
    return {"best_cost": best, "rows": rows}


def _plant(data: ProblemData):
    """The simulated system: the model, RK4 with finer substeps than the planner's one."""
    step = discretize(data.dynamics(), data.dt, method="rk4", substeps=CONFIG["plant_rk4_substeps"])
    return lambda x, u, t: step(x, u, t)


def _held_from(angles: np.ndarray, tolerance: float) -> int | None:
    """The first index from which ``|angle| < tolerance`` to the end (``None``: never)."""
    outside = np.flatnonzero(np.abs(angles) >= tolerance)
    first = 0 if outside.size == 0 else int(outside[-1]) + 1
    return first if first < angles.size else None


def closed_loop_runs(name: str, cold_plan: list) -> list[dict[str, Any]]:
    """MPC swing-ups against the finer plant: one entry per (start plan, budget)."""
    problem, data = PROBLEMS[name]()
    solver = ILQR(problem)
    theta = problem.default_theta
    periods = round(CONFIG["closed_loop_seconds"] / data.dt)
    longest = max(budget for _, budget in CONFIG["closed_loop_runs"])
    plant = _plant(data)
    episode = jax.jit(
        lambda x0, plan, budget: closed_loop(
            solver,
            plant,
            x0,
            periods,
            theta,
            budget,
            trace_length=longest,
            initial_controls=plan,
        )
    )
    angle = data.state_names.index("theta")
    plans = {"cold plan": jnp.asarray(cold_plan), "zero plan": jnp.asarray(data.zero_controls())}
    runs = []
    for start, budget in CONFIG["closed_loop_runs"]:
        out = episode(jnp.asarray(data.x0), plans[start], jnp.asarray(budget, jnp.int32))
        angles = np.asarray(wrap_angle(out.states[:, angle]))
        held = _held_from(angles, CONFIG["held_tolerance_rad"])
        codes, counts = np.unique(np.asarray(out.status), return_counts=True)
        runs.append(
            {
                "label": f"{start}, budget {budget}",
                "start": start,
                "budget": budget,
                "dt": data.dt,
                "held": held is not None,
                "held_from_seconds": None if held is None else held * data.dt,
                "final_abs_angle": float(abs(angles[-1])),
                "max_abs_control": float(np.max(np.abs(np.asarray(out.controls)))),
                "fallbacks": int(np.sum(np.asarray(out.used_fallback))),
                "max_iterations": int(np.max(np.asarray(out.num_steps))),
                "status_counts": {
                    _status_name(c): int(n) for c, n in zip(codes, counts, strict=True)
                },
                "angle": np.round(angles, 5).tolist(),
            }
        )
    return runs


MISMATCH_PARAMETER = {"pendulum_swingup": "mass", "cartpole_swingup": "pole_mass"}


def mismatch_runs(name: str) -> dict[str, Any]:
    """Swing-ups with the planner's model off the plant's: a parameter scaled by a factor.

    From a zero plan, budget 10, for both warm starts (``"feedback"``: the shifted plan rolled
    out through the last solution's gains; ``"shift"``: open loop).
    """
    problem, data = PROBLEMS[name]()
    solver = ILQR(problem)
    params, cost = problem.default_theta
    key = MISMATCH_PARAMETER[name]
    periods = round(CONFIG["closed_loop_seconds"] / data.dt)
    angle = data.state_names.index("theta")
    plant = _plant(data)
    rows = []
    for warm_start in ("feedback", "shift"):
        episode = jax.jit(
            lambda x0, theta, w=warm_start: closed_loop(
                solver, plant, x0, periods, theta, 10, trace_length=10, warm_start=w
            )
        )
        for factor in CONFIG["mismatch_factors"]:
            theta = ({**params, key: params[key] * factor}, cost)
            out = episode(jnp.asarray(data.x0), theta)
            held = _held_from(np.asarray(wrap_angle(out.states[:, angle])), 0.05)
            rows.append(
                {
                    "warm_start": warm_start,
                    "factor": factor,
                    "held": held is not None,
                    "held_from_seconds": None if held is None else held * data.dt,
                }
            )
    return {"parameter": key, "rows": rows}


def _timed_controller(controller, x0, plant, periods: int, budget: int) -> dict[str, Any]:
    """Call ``controller.step`` along a closed loop; wall time and iterations per call."""
    x, times, iterations = jnp.asarray(x0), [], []
    for period in range(periods):
        start = time.perf_counter()
        u = jax.block_until_ready(controller.step(x, max_steps=budget))
        times.append(time.perf_counter() - start)
        iterations.append(int(controller.state.num_steps))
        x = plant(x, u, period * controller.problem.dt)
    ms = 1e3 * np.asarray(times)
    return {
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "max_ms": float(np.max(ms)),
        "first_10_median_ms": float(np.median(ms[:10])),
        "median_iterations": float(np.median(iterations)),
    }


def warm_steps(name: str, cold_entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-period ``MPCController.step`` time along the swing-up, beside the baselines' re-solves.

    The controller starts from the cold plan and is compiled (one call, not timed) first; the
    baselines' rows are their 10 warm re-solves after the cold solve (``baselines.py``).
    """
    problem, data = PROBLEMS[name]()
    budget = CONFIG["warm_step_budget"]
    cold = next(row for row in cold_entry["rows"] if row["solver"] == "opifex ilqr float64")
    controller = MPCController(problem, max_steps=budget)
    start = time.perf_counter()
    controller.step(jnp.asarray(data.x0)).block_until_ready()
    compile_seconds = time.perf_counter() - start
    controller.reset(jnp.asarray(cold["plan"]))
    periods = round(CONFIG["closed_loop_seconds"] / data.dt)
    timing = _timed_controller(controller, data.x0, _plant(data), periods, budget)
    rows = [
        {
            "solver": f"opifex MPCController (budget {budget})",
            "compile_seconds": compile_seconds,
            "periods": periods,
            **timing,
        }
    ]
    for row in cold_entry["rows"]:
        if "warm_step_seconds" in row:
            rows.append(
                {
                    "solver": row["solver"],
                    "median_ms": 1e3 * row["warm_step_seconds"],
                    "median_iterations": row["warm_step_iterations"],
                    "periods": 10,
                }
            )
    return rows


def _rate_problems() -> list[tuple[str, TrajectoryProblem, np.ndarray]]:
    """(label, problem, start) per built-in system, horizon 50."""
    out = []
    for name in ("pendulum_swingup", "cartpole_swingup"):
        problem, data = PROBLEMS[name]()
        out.append((data.system, problem, data.x0))
    out.append(
        (
            "double integrator (2-D)",
            TrajectoryProblem.from_dynamics(
                double_integrator(2, max_accel=1.0),
                quadratic_cost([1.0, 1.0, 0.1, 0.1], [0.01, 0.01]),
                horizon=50,
                dt=0.05,
            ),
            np.array([1.0, -1.0, 0.0, 0.0]),
        )
    )
    out.append(
        (
            "planar quadrotor",
            TrajectoryProblem.from_dynamics(
                planar_quadrotor(),
                quadratic_cost([1.0, 1.0, 1.0, 0.1, 0.1, 0.1], [1e-3, 1e-3]),
                horizon=50,
                dt=0.02,
            ),
            np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0]),
        )
    )
    out.append(
        (
            "adaptive cruise control",
            TrajectoryProblem.from_dynamics(
                adaptive_cruise_control(),
                quadratic_cost([1.0, 0.0, 0.0], [1e-7], goal=[24.0, 0.0, 13.89]),
                horizon=50,
                dt=0.1,
            ),
            np.array([20.0, 100.0, 13.89]),
        )
    )
    return out


def control_rates() -> list[dict[str, Any]]:
    """Steady ``MPCController.step`` time per built-in system at each budget; rate = 1 / time."""
    rows = []
    for label, problem, x0 in _rate_problems():
        controller = MPCController(problem, max_budget=max(CONFIG["rate_budgets"]))
        controller.step(jnp.asarray(x0)).block_until_ready()  # compile once for every budget
        step = jax.jit(problem.step)
        plant = lambda x, u, t, step=step: step(x, u, t, None)  # noqa: E731
        for budget in CONFIG["rate_budgets"]:
            controller.reset()
            timing = _timed_controller(controller, x0, plant, CONFIG["rate_periods"], budget)
            rows.append(
                {
                    "system": label,
                    "budget": budget,
                    "median_ms": timing["median_ms"],
                    "p90_ms": timing["p90_ms"],
                    "rate_hz": 1e3 / timing["median_ms"],
                    "period_ms": 1e3 * problem.dt,
                    "median_iterations": timing["median_iterations"],
                }
            )
    return rows


def _timed_solve(
    problem: TrajectoryProblem, x0: Any, config: ILQRConfig, repeats: int, budget_s: float
):
    """Compile ILQR on ``problem`` from ``U = 0`` in JAX's default float dtype; (compile
    seconds, solve times, result)."""
    solver = ILQR(problem, config)
    theta, x0 = problem.default_theta, jnp.asarray(x0)
    controls = jnp.zeros((problem.horizon, problem.control_dim), x0.dtype)
    start = time.perf_counter()
    compiled = jax.jit(solver.run).lower(controls, x0, theta).compile()
    compile_seconds = time.perf_counter() - start
    times, result = timed_calls(lambda: compiled(controls, x0, theta), repeats, budget_s)
    return compile_seconds, times, result


def integrator_cost(name: str, repeats: int) -> dict[str, Any]:
    """Time per iLQR iteration: hand-written RK4 vs diffrax Tsit5 (DirectAdjoint), and the
    scan unrolling of the backward / forward passes (``ILQRConfig.scan_unroll``)."""
    data = PROBLEMS[name]().data
    variants = [
        ("hand-written RK4", "rk4", ILQRConfig()),
        ("diffrax Tsit5, DirectAdjoint", "tsit5", ILQRConfig()),
        ("hand-written RK4, scan_unroll 5", "rk4", ILQRConfig(scan_unroll=5)),
    ]
    rows = []
    for label, method, config in variants:
        problem = TrajectoryProblem.from_dynamics(
            data.dynamics(), data.cost(), horizon=data.horizon, dt=data.dt, method=method
        )
        compile_seconds, times, result = _timed_solve(problem, data.x0, config, repeats, 10.0)
        iterations = int(result.num_steps)
        rows.append(
            {
                "method": label,
                "scan_unroll": config.scan_unroll,
                "compile_seconds": compile_seconds,
                "iterations": iterations,
                "solve_ms": 1e3 * float(np.median(times)),
                "ms_per_iteration": 1e3 * float(np.median(times)) / max(iterations, 1),
                "cost": float(result.value),
                "status": _status_name(result.status),
            }
        )
    ratio = rows[1]["ms_per_iteration"] / rows[0]["ms_per_iteration"]
    return {"problem": name, "rows": rows, "diffrax_over_rk4_per_iteration": ratio}


def _gradient_setup(name: str):
    """``loss(z, adjoint)`` = ``w . U*(z)`` with ``z = (x0, dynamics params, log weights)``."""
    problem, data = PROBLEMS[name]()
    solver = ILQR(problem)
    params, _ = problem.default_theta
    keys = sorted(params)
    n = data.state_dim
    z0 = np.concatenate(
        [
            data.x0,
            [params[k] for k in keys],
            np.log(np.diag(data.Q)),
            np.log(np.diag(data.R)),
            np.log(np.diag(data.Qf)),
        ]
    )
    names = [f"x0[{i}]" for i in range(n)] + keys + ["log Q"] * n + ["log R"] * data.control_dim
    names += ["log Qf"] * n
    weights = np.random.default_rng(CONFIG["gradient_weights_seed"]).normal(
        size=(data.horizon, data.control_dim)
    )
    start = jnp.asarray(data.zero_controls())

    def unpack(z):
        x0 = z[:n]
        dyn = {k: z[n + i] for i, k in enumerate(keys)}
        logs = z[n + len(keys) :]
        q, r, qf = jnp.split(jnp.exp(logs), [n, n + data.control_dim])
        return x0, (dyn, quadratic_cost(q, r, jnp.asarray(data.goal), qf))

    def loss(z, adjoint, plan):
        x0, theta = unpack(z)
        result = solver.run(plan, x0, theta, adjoint=adjoint)
        return jnp.sum(weights * result.params), result.status

    return jnp.asarray(z0), names, loss, start


def gradient_check(name: str, *, trajax: bool) -> dict[str, Any]:
    """Implicit vs unrolled vs fourth-order central differences (every solve from ``U = 0``)."""
    z0, names, loss, start = _gradient_setup(name)
    value_fn = jax.jit(lambda z, plan: loss(z, "implicit", plan))
    rows, grads = [], {}
    for adjoint in ("implicit", "unrolled"):
        grad_fn = jax.jit(jax.grad(lambda z, a=adjoint: loss(z, a, start)[0]))
        t0 = time.perf_counter()
        grad_fn(z0).block_until_ready()
        first = time.perf_counter() - t0
        times, grads[adjoint] = timed_calls(lambda g=grad_fn: g(z0), 5, 10.0)
        rows.append(
            {"method": adjoint, "first_call_seconds": first, "seconds": float(np.median(times))}
        )
    # the solutions are accurate to about 1e-8 relative and their active sets change under
    # large perturbations: no single step suits every variable, so three are reported
    fds, statuses, fd_seconds = {}, [], 0.0
    for step in CONFIG["gradient_fd_steps"]:
        t0 = time.perf_counter()
        fd = np.zeros(z0.size)
        for i in range(z0.size):
            h = step * max(1.0, abs(float(z0[i])))
            values = []
            for shift in (-2, -1, 1, 2):
                value, status = value_fn(z0.at[i].add(shift * h), start)
                values.append(float(value))
                statuses.append(int(status))
            # the fourth-order central stencil
            fd[i] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * h)
        fds[f"{step:g}"] = fd
        fd_seconds = time.perf_counter() - t0
    implicit = np.asarray(grads["implicit"])
    for row in rows:
        g = np.asarray(grads[row["method"]])
        row["rel_error_vs_fd"] = {
            h: float(np.linalg.norm(g - fd) / np.linalg.norm(fd)) for h, fd in fds.items()
        }
        row["rel_error_vs_implicit"] = float(
            np.linalg.norm(g - implicit) / np.linalg.norm(implicit)
        )
    out = {
        "variables": names,
        "fd_all_success": all(s == SolveStatus.SUCCESS for s in statuses),
        "fd_seconds_per_step": fd_seconds,
        "rows": rows,
        "finite_difference": {h: fd.tolist() for h, fd in fds.items()},
        "implicit": implicit.tolist(),
    }
    if trajax and baselines.trajax_available():
        out["trajax"] = _lists(baselines.trajax_gradient_check(PROBLEMS[name]().data))
    return out


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, judged from the recorded sections (``None``: not measured)."""
    out: dict[str, Any] = {}
    for name, entry in results["cold"].items():
        rows = {row["solver"]: row for row in entry["rows"]}
        ours = rows["opifex ilqr float64"]
        ipopt = rows.get("casadi ipopt multiple shooting")
        trajax = [row for label, row in rows.items() if label.startswith("trajax")]
        # a baseline counts when it reached the same optimum (trajax's unbounded iLQR solves
        # another problem; its squashed one stalls)
        same = [
            row
            for row in [ipopt, *trajax]
            if row is not None
            and row["max_bound_violation"] <= 1e-6
            and abs(row["cost"] - entry["best_cost"]) <= 1e-6 * abs(entry["best_cost"])
        ]
        rivals = [row["cold_seconds"] for row in same]
        out[name] = {
            "held_upright_every_run": all(run["held"] for run in results["closed_loop"][name]),
            "baselines_at_the_same_optimum": [row["solver"] for row in same],
            "cold_faster_than_every_baseline_at_the_same_optimum": (
                ours["cold_seconds"] < min(rivals) if rivals else None
            ),
            "iterations_le_ipopt_at_success": (
                ours["iterations"] <= ipopt["iterations"] if ipopt else None
            ),
            "iterations_le_ipopt_at_rtol_1e-8": (
                ours["iterations_to_rtol_1e-8"] <= ipopt["iterations"] if ipopt else None
            ),
            "warm_step_median_under_5_ms": results["warm_steps"][name][0]["median_ms"] < 5.0,
            "implicit_gradient_matches_unrolled_1e-5": next(
                row["rel_error_vs_implicit"] < 1e-5
                for row in results["gradients"][name]["rows"]
                if row["method"] == "unrolled"
            ),
        }
    return out
