"""The certified-problem part of the second-order benchmark: NIST StRD at default settings.

Every NIST StRD nonlinear regression problem (``opifex.second_order.nist_problems``) from both
of NIST's starts, solved by ``opifex.second_order.least_squares`` with its default config and
by ``scipy.optimize.least_squares(method="lm")`` (MINPACK's ``lmder``) with scipy's defaults
(``ftol = xtol = gtol = 1e-8``, ``max_nfev = 100 n``). A run is scored by its digits: the
smallest log relative error of a parameter against NIST's certified value (at most 11, the
printed digits), beside the solver's own verdict (``SolveStatus`` / scipy's ``status``) and
its evaluation counts. The target: every start reaches ``certified_digits`` (6) with
``SUCCESS``, and no ``SUCCESS`` has fewer digits.

Imported by ``bench_second_order.py`` (which puts this folder on ``sys.path``).
"""

import dataclasses
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from bench_common import timed_calls

OURS = "opifex LM (defaults)"
SCIPY = "scipy lm (defaults)"
# scipy's OptimizeResult.status for method="lm"
SCIPY_STATUS = {
    -1: "improper input",
    0: "max_nfev reached",
    1: "gtol",
    2: "ftol",
    3: "xtol",
    4: "ftol and xtol",
}


@dataclasses.dataclass
class CertifiedRow:
    """One solver from one NIST start (a row of the JSON's ``certified`` list)."""

    problem: str
    start: int
    n: int
    m: int
    difficulty: str
    solver: str
    status: str = "ok"  # "ok" | "error" | "unavailable"
    error: str | None = None
    solver_status: str | None = None  # SolveStatus name, or scipy's status and reason
    converged: bool | None = None  # SUCCESS / scipy's ``success``
    digits: float | None = None  # min over parameters of the log relative error
    iterations: int | None = None  # Jacobians after x0 (MINPACK: njev)
    fun_evals: int | None = None  # residual evaluations
    deriv_evals: int | None = None  # Jacobian evaluations
    rss: float | None = None  # residual sum of squares at the answer
    compile_s: float | None = None
    time_s: float | None = None  # median of repeated runs after the first


def _median_time(run: Any, repeats: int) -> tuple[float, Any]:
    times, out = timed_calls(run, repeats, budget_s=1.0)
    return statistics.median(times), out


def run_ours(problem: Any, row: CertifiedRow, repeats: int) -> None:
    """``least_squares`` at its defaults (jitted; compile time measured separately)."""
    import jax

    from opifex.second_order import least_squares

    x0 = problem.initial_params(row.start)
    solve = jax.jit(lambda x: least_squares(problem.residual_fn, x))
    start = time.perf_counter()
    jax.block_until_ready(solve(x0))
    row.compile_s = time.perf_counter() - start
    row.time_s, result = _median_time(lambda: solve(x0), repeats)
    row.solver_status = result.status_name
    row.converged = bool(result.converged)
    row.digits = problem.min_log_relative_error(result.params)
    row.iterations = int(result.num_steps)
    row.fun_evals = int(result.stats["num_fun_evals"])
    row.deriv_evals = int(result.stats["num_jac_evals"])
    row.rss = 2.0 * float(result.value)


def run_scipy(problem: Any, row: CertifiedRow, repeats: int) -> None:
    """``scipy.optimize.least_squares(method="lm")`` at its defaults, with the exact Jacobian."""
    import jax
    from scipy.optimize import least_squares

    residual = jax.jit(problem.residual_fn)
    jacobian = jax.jit(jax.jacfwd(problem.residual_fn))
    x0 = np.asarray(problem.starts[row.start - 1], dtype=np.float64)
    calls = {"fun": 0, "jac": 0}

    def fun(x: np.ndarray) -> np.ndarray:
        calls["fun"] += 1
        return np.asarray(residual(x))

    def jac(x: np.ndarray) -> np.ndarray:
        calls["jac"] += 1
        return np.asarray(jacobian(x))

    def run() -> Any:
        calls["fun"] = calls["jac"] = 0
        return least_squares(fun, x0, jac=jac, method="lm")

    start = time.perf_counter()
    jax.block_until_ready((residual(x0), jacobian(x0)))
    row.compile_s = time.perf_counter() - start
    row.time_s, result = _median_time(run, repeats)
    reason = SCIPY_STATUS.get(int(result.status), "unknown")
    row.solver_status = f"{int(result.status)}: {reason}"
    row.converged = bool(result.success)
    row.digits = problem.min_log_relative_error(result.x)
    row.iterations = int(result.njev)
    row.fun_evals, row.deriv_evals = calls["fun"], calls["jac"]
    r = np.asarray(residual(result.x))
    row.rss = float(r @ r)


SOLVERS = {OURS: ("opifex.second_order", run_ours), SCIPY: ("scipy.optimize", run_scipy)}


def new_rows(names: Sequence[str] | None) -> list[tuple[CertifiedRow, Any]]:
    """``(row, problem)`` for every problem (all 27 when ``names`` is ``None``), start and
    solver, in NIST's order."""
    from opifex.second_order import get_nist_problem, nist_problems

    problems = nist_problems() if names is None else [get_nist_problem(n) for n in names]
    return [
        (CertifiedRow(p.name, start, p.num_params, p.num_observations, p.difficulty, s), p)
        for p in problems
        for start in (1, 2)
        for s in SOLVERS
    ]


def evaluate_target(rows: Sequence[CertifiedRow], digits: float) -> dict[str, Any]:
    """Every start of ours ``SUCCESS`` with at least ``digits``; per solver, the starts that
    reach ``digits`` and the successes that do not (claimed digits that are not there)."""

    def summary(solver: str) -> dict[str, Any]:
        runs = [r for r in rows if r.solver == solver and r.status == "ok"]
        reached = [r for r in runs if r.digits is not None and r.digits >= digits]
        false = [r for r in runs if r.converged and (r.digits is None or r.digits < digits)]
        return {
            "runs": len(runs),
            "reached": len(reached),
            "reached_and_converged": sum(bool(r.converged) for r in reached),
            "converged_below": [f"{r.problem}/{r.start}" for r in false],
            "not_reached": [f"{r.problem}/{r.start}" for r in runs if r not in reached],
        }

    ours = summary(OURS)
    expected = sum(r.solver == OURS for r in rows)
    met = ours["runs"] == expected > 0 and ours["reached_and_converged"] == expected
    return {"digits": digits, "met": met, "ours": ours, "scipy": summary(SCIPY)}


def _fmt_digits(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


TABLE_COLUMNS = (
    "problem",
    "start",
    "opifex digits",
    "opifex status",
    "iter/nfev/njev",
    "scipy digits",
    "scipy status",
    "nfev/njev",
)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One printed line per problem and start: ours beside scipy's."""
    by = {(r["problem"], r["start"], r["solver"]): r for r in rows}
    out = []
    for key in dict.fromkeys((r["problem"], r["start"]) for r in rows):
        ours, ref = by.get((*key, OURS)), by.get((*key, SCIPY))
        cells = [key[0], str(key[1])]
        for r, counts in ((ours, ("iterations", "fun_evals", "deriv_evals")), (ref, None)):
            if r is None or r["status"] != "ok":
                cells += ["-", "not run" if r is None else r["status"], "-"]
                continue
            keys = counts or ("fun_evals", "deriv_evals")
            cells += [
                _fmt_digits(r["digits"]),
                r["solver_status"],
                "/".join(str(r[k]) for k in keys),
            ]
        out.append(tuple(cells))
    return out
