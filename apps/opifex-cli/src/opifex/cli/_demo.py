"""``opifex demo``: a small real job of each opifex package, beside its scipy baseline.

Today that is ``opifex.second_order`` (float64) and ``opifex.l2o`` (float32):

* L-BFGS (``opifex.second_order.minimize``) on the chained Rosenbrock function in 2 and 100
  dimensions from ``(-1.2, 1, -1.2, 1, ...)``, beside ``scipy.optimize.minimize`` with
  ``method="L-BFGS-B"`` (memory 10 and gradient tolerance 1e-6 for both). ``f`` and
  ``||grad f||`` of both final points are recomputed with ``scipy.optimize.rosen`` /
  ``rosen_der``.
* Levenberg-Marquardt (``opifex.second_order.least_squares``) on three Moré-Garbow-Hillstrom
  problems, beside ``scipy.optimize.least_squares(method="lm")`` (MINPACK; ``ftol = xtol = gtol
  = 1e-8`` for both). The cost of both final points is ``0.5 * ||r||^2`` (scipy's ``cost``; the
  MGH tables print ``||r||^2``, twice as much), recomputed with the same residual function.

* The shipped learned optimiser (``opifex.l2o.load_pretrained("quadratic10_mlp")``, float32
  weights, so run with float64 off) beside ``optax.adam(1.0)`` (the learning rate tuned in
  ``benchmarks/l2o``) on 200 fresh ``QuadraticFamily(dimension=10)`` tasks for 100 steps
  (``opifex.l2o.run_optimizer``, same tasks and starts for both): the median per-task
  ``opifex.core.speedup`` over Adam and each one's median final loss.

Iterations and evaluations are what each solver reports (``SolveResult.stats``; scipy's
``nit`` / ``nfev`` / ``njev``; MINPACK takes one Jacobian per iteration). Wall times are the
median of three runs after a warm-up call, so jit compilation is excluded.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from rich import box
from rich.console import Console
from rich.table import Table

from opifex import second_order

ROSENBROCK_SIZES = (2, 100)
MGH_PROBLEMS = ("bard", "meyer", "freudenstein_roth")
LBFGS_CONFIG = second_order.LBFGSConfig(memory_size=10, max_steps=10_000, atol=1e-6)
LM_CONFIG = second_order.GaussNewtonConfig(
    method="levenberg_marquardt", max_steps=2_000, ftol=1e-8, xtol=1e-8, gtol=1e-8
)
SAME_OPTIMUM_RTOL = 1e-6  # two least-squares costs are "the same optimum" to this relative tol
PUBLISHED_RTOL = 1e-5  # MGH publishes about six significant digits
_REPEATS = 3
L2O_NAME = "quadratic10_mlp"
L2O_DIMENSION, L2O_TASKS, L2O_STEPS = 10, 200, 100
L2O_ADAM_LR = 1.0  # Adam's learning rate tuned by benchmarks/l2o/bench_l2o.py
L2O_SEED = 2026  # fresh tasks: not the benchmark's or the training's keys


@dataclasses.dataclass(frozen=True)
class SolverRun:
    """One solver on one problem: a row of the demo's tables.

    Attributes:
        problem: e.g. ``"rosenbrock 100-D"`` or ``"bard"``.
        solver: ``"opifex L-BFGS"``, ``"scipy L-BFGS-B"``, ``"opifex LM"`` or ``"scipy lm"``.
        iterations: iterations the solver reports (scipy ``lm``: ``njev``).
        fun_evals: evaluations of ``f`` (with its gradient) or of the residual vector.
        jac_evals: Jacobian evaluations (least squares only).
        value: ``f`` (Rosenbrock) or ``0.5 * ||r||^2`` at ``params``.
        grad_norm: ``||grad f||`` or ``||J^T r||`` at ``params``.
        time_s: median wall time after compilation.
        converged: the solver's own verdict.
        message: the solver's reason for stopping.
        params: the final point.
    """

    problem: str
    solver: str
    iterations: int
    fun_evals: int
    jac_evals: int | None
    value: float
    grad_norm: float
    time_s: float
    converged: bool
    message: str
    params: np.ndarray = dataclasses.field(repr=False)

    @property
    def ours(self) -> bool:
        """Whether this row is an opifex solver (not a baseline)."""
        return self.solver.startswith("opifex")


@dataclasses.dataclass(frozen=True)
class LearnedRun:
    """The pretrained learned optimiser and Adam on the same quadratics (the demo's l2o table).

    Attributes:
        task_keys: the tasks' key data, ``jax.random.key_data`` of ``opifex.l2o.run_optimizer``'s
            task keys (float32 runs).
        losses: the learned optimiser's loss curves, ``(L2O_TASKS, L2O_STEPS + 1)``.
        adam_losses: Adam's (learning rate ``L2O_ADAM_LR``), same shape.
        speedups: per-task ``opifex.core.speedup(losses, adam_losses)``.
    """

    task_keys: np.ndarray = dataclasses.field(repr=False)
    losses: np.ndarray = dataclasses.field(repr=False)
    adam_losses: np.ndarray = dataclasses.field(repr=False)
    speedups: np.ndarray = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """Everything ``run_demo`` measured.

    Attributes:
        unconstrained: L-BFGS rows, ours then scipy's, per Rosenbrock size.
        least_squares: Levenberg-Marquardt rows, ours then scipy's, per MGH problem.
        published_costs: per MGH problem, its published optimal costs ``0.5 * ||r||^2``
            (the global optimum first, then local ones a solver can end at).
        learned: the learned optimiser against Adam (``None``: not run).
    """

    unconstrained: tuple[SolverRun, ...]
    least_squares: tuple[SolverRun, ...]
    published_costs: dict[str, tuple[float, ...]]
    learned: LearnedRun | None = None

    def failures(self) -> list[str]:
        """One line per opifex run that did not converge (empty when all did).

        Example:
            >>> DemoReport((), (), {}).failures()
            []
        """
        runs = [r for r in (*self.unconstrained, *self.least_squares) if r.ours]
        return [f"{r.solver} on {r.problem}: {r.message}" for r in runs if not r.converged]

    def same_optimum(self, problem: str) -> bool:
        """Whether our LM and scipy's ``lm`` end at the same cost on ``problem``."""
        ours, ref = (r.value for r in self.least_squares if r.problem == problem)
        return math.isclose(ours, ref, rel_tol=SAME_OPTIMUM_RTOL, abs_tol=1e-12)

    def optimum_kind(self, run: SolverRun) -> str:
        """``"global"``, ``"local"`` or ``"none"``: which published optimum ``run`` reached."""
        for index, cost in enumerate(self.published_costs[run.problem]):
            if math.isclose(run.value, cost, rel_tol=PUBLISHED_RTOL, abs_tol=1e-10):
                return "global" if index == 0 else "local"
        return "none"


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    """Median wall time of ``_REPEATS`` calls of ``run`` and its last result."""
    times, out = [], None
    for _ in range(_REPEATS):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _row(
    problem: str,
    solver: str,
    params: Any,
    evaluate: Callable[[np.ndarray], tuple[float, float]],
    **fields: Any,
) -> SolverRun:
    x = np.asarray(params, dtype=np.float64)
    value, grad_norm = evaluate(x)
    return SolverRun(problem, solver, value=value, grad_norm=grad_norm, params=x, **fields)


def _rosenbrock(x: jax.Array) -> jax.Array:
    """The chained Rosenbrock function, as ``scipy.optimize.rosen``."""
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _evaluate_rosenbrock(x: np.ndarray) -> tuple[float, float]:
    return float(scipy.optimize.rosen(x)), float(np.linalg.norm(scipy.optimize.rosen_der(x)))


def _rosenbrock_runs(n: int) -> tuple[SolverRun, SolverRun]:
    problem = f"rosenbrock {n}-D"
    x0 = np.tile([-1.2, 1.0], n // 2)
    solve = jax.jit(lambda x: second_order.minimize(_rosenbrock, x, config=LBFGS_CONFIG))
    jax.block_until_ready(solve(x0))  # compile
    time_s, result = _timed(lambda: jax.block_until_ready(solve(x0)))
    ours = _row(
        problem,
        "opifex L-BFGS",
        result.params,
        _evaluate_rosenbrock,
        iterations=int(result.num_steps),
        fun_evals=int(result.stats["num_fun_evals"]),
        jac_evals=None,
        time_s=time_s,
        converged=bool(result.converged),
        message=result.message,
    )
    options = {
        "maxcor": LBFGS_CONFIG.memory_size,
        "gtol": LBFGS_CONFIG.atol,
        "ftol": 1e-15,  # leave termination to gtol, as for ours
        "maxiter": LBFGS_CONFIG.max_steps,
        "maxfun": 10 * LBFGS_CONFIG.max_steps,
    }
    time_s, ref = _timed(
        lambda: scipy.optimize.minimize(
            scipy.optimize.rosen,
            x0,
            jac=scipy.optimize.rosen_der,
            method="L-BFGS-B",
            options=options,
        )
    )
    theirs = _row(
        problem,
        "scipy L-BFGS-B",
        ref.x,
        _evaluate_rosenbrock,
        iterations=int(ref.nit),
        fun_evals=int(ref.nfev),
        jac_evals=None,
        time_s=time_s,
        converged=bool(ref.success),
        message=str(ref.message),
    )
    return ours, theirs


def _least_squares_runs(name: str) -> tuple[SolverRun, SolverRun]:
    problem = second_order.get_mgh_problem(name)
    residual = jax.jit(problem.residual_fn)
    jacobian = jax.jit(jax.jacfwd(problem.residual_fn))

    def evaluate(x: np.ndarray) -> tuple[float, float]:
        r, jac = np.asarray(residual(x)), np.asarray(jacobian(x))
        return 0.5 * float(r @ r), float(np.linalg.norm(jac.T @ r))

    x0 = np.asarray(problem.x0, dtype=np.float64)
    solve = jax.jit(lambda x: second_order.least_squares(problem.residual_fn, x, config=LM_CONFIG))
    jax.block_until_ready(solve(x0))  # compile
    time_s, result = _timed(lambda: jax.block_until_ready(solve(x0)))
    ours = _row(
        name,
        "opifex LM",
        result.params,
        evaluate,
        iterations=int(result.num_steps),
        fun_evals=int(result.stats["num_fun_evals"]),
        jac_evals=int(result.stats["num_jac_evals"]),
        time_s=time_s,
        converged=bool(result.converged),
        message=result.message,
    )
    evaluate(x0)  # compile the residual and Jacobian before timing scipy
    time_s, ref = _timed(
        lambda: scipy.optimize.least_squares(
            lambda x: np.asarray(residual(x)),
            x0,
            jac=lambda x: np.asarray(jacobian(x)),
            method="lm",
            ftol=LM_CONFIG.ftol,
            xtol=LM_CONFIG.xtol,
            gtol=LM_CONFIG.gtol,
            max_nfev=100 * LM_CONFIG.max_steps,
        )
    )
    theirs = _row(
        name,
        "scipy lm",
        ref.x,
        evaluate,
        iterations=int(ref.njev),
        fun_evals=int(ref.nfev),
        jac_evals=int(ref.njev),
        time_s=time_s,
        converged=bool(ref.success),
        message=str(ref.message),
    )
    return ours, theirs


def _learned_run() -> LearnedRun:
    """The pretrained optimiser and Adam on fresh quadratics, with float64 off (float32 ``phi``)."""
    import optax

    from opifex.core import speedup
    from opifex.core.families import QuadraticFamily
    from opifex.l2o import load_pretrained, run_optimizer

    with jax.enable_x64(False):
        family = QuadraticFamily(dimension=L2O_DIMENSION)
        keys = jax.random.split(jax.random.key(L2O_SEED), L2O_TASKS)
        learned = run_optimizer(load_pretrained(L2O_NAME).optimizer, family, keys, L2O_STEPS)
        adam = run_optimizer(optax.adam(L2O_ADAM_LR), family, keys, L2O_STEPS)
        learned_losses, adam_losses = learned.trace["value"], adam.trace["value"]
        return LearnedRun(
            task_keys=np.asarray(jax.random.key_data(keys)),
            losses=np.asarray(learned_losses),
            adam_losses=np.asarray(adam_losses),
            speedups=np.asarray(speedup(learned_losses, adam_losses)),
        )


def run_demo(progress: Callable[[int, int, str], None] | None = None) -> DemoReport:
    """Run every solver of the demo and return the measurements.

    Args:
        progress: optional ``callback(done, total, label)``, called after each problem.

    Returns:
        A ``DemoReport``.

    Raises:
        RuntimeError: float64 is not enabled in JAX.

    Example:
        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> report = run_demo()
        >>> report.failures()
        []
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "run_demo needs float64: call jax.config.update('jax_enable_x64', True) first"
        )
    tick = progress or (lambda done, total, label: None)
    total = len(ROSENBROCK_SIZES) + len(MGH_PROBLEMS) + 1
    unconstrained: list[SolverRun] = []
    for n in ROSENBROCK_SIZES:
        unconstrained.extend(_rosenbrock_runs(n))
        tick(len(unconstrained) // 2, total, f"rosenbrock {n}-D")
    least_squares: list[SolverRun] = []
    for name in MGH_PROBLEMS:
        least_squares.extend(_least_squares_runs(name))
        tick((len(unconstrained) + len(least_squares)) // 2, total, name)
    learned = _learned_run()
    tick(total, total, "learned optimiser")
    published = {
        name: tuple(0.5 * v for v in second_order.get_mgh_problem(name).optimum_values)
        for name in MGH_PROBLEMS
    }
    return DemoReport(tuple(unconstrained), tuple(least_squares), published, learned)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in columns:
        if column in ("problem", "solver", "optimiser"):
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _common_cells(r: SolverRun) -> tuple[str, ...]:
    return (r.problem, r.solver, str(r.iterations), str(r.fun_evals))


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def render(report: DemoReport, console: Console) -> None:
    """Print the demo's two tables and whether the least-squares solvers agree.

    Args:
        report: what ``run_demo`` returned.
        console: where to print.

    Example:
        >>> from rich.console import Console
        >>> render(DemoReport((), (), {}), Console())  # doctest: +ELLIPSIS
        L-BFGS on the Rosenbrock function ...
    """
    unconstrained = [
        (
            *_common_cells(r),
            f"{r.value:.3e}",
            f"{r.grad_norm:.3e}",
            f"{1e3 * r.time_s:.3g}",
            _yes(r.converged),
        )
        for r in report.unconstrained
    ]
    console.print(
        _table(
            "L-BFGS on the Rosenbrock function (float64, gtol 1e-6)",
            ("problem", "solver", "iters", "f evals", "f", "|grad f|", "ms", "converged"),
            unconstrained,
        )
    )
    least_squares = [
        (
            *_common_cells(r),
            str(r.jac_evals),
            f"{r.value:.8e}",
            f"{r.grad_norm:.3e}",
            f"{1e3 * r.time_s:.3g}",
            _yes(r.converged),
            report.optimum_kind(r),
        )
        for r in report.least_squares
    ]
    columns = ("problem", "solver", "iters", "r evals", "J evals", "cost", "|J^T r|")
    console.print(
        _table(
            "Levenberg-Marquardt on Moré-Garbow-Hillstrom problems (cost = 0.5 |r|^2)",
            (*columns, "ms", "converged", "optimum"),
            least_squares,
        )
    )
    agreement = ", ".join(
        f"{name} {_yes(report.same_optimum(name))}"
        for name in dict.fromkeys(r.problem for r in report.least_squares)
    )
    console.print(
        f"optimum: the published MGH optimum (global, or a known local one) that the cost"
        f" matches to relative {PUBLISHED_RTOL:g}.\n"
        f"Same cost as scipy lm (relative {SAME_OPTIMUM_RTOL:g}): {agreement}",
        markup=False,
    )
    if report.learned is not None:
        _render_learned(report.learned, console)


def _render_learned(run: LearnedRun, console: Console) -> None:
    speedup_cell = f"{np.median(run.speedups):.3g}"
    rows = [
        (f"opifex.l2o {L2O_NAME}", f"{np.median(run.losses[:, -1]):.4g}", speedup_cell),
        (f"Adam lr {L2O_ADAM_LR}", f"{np.median(run.adam_losses[:, -1]):.4g}", "1"),
    ]
    console.print(
        _table(
            f"Learned optimiser vs Adam on {len(run.losses)} fresh {L2O_DIMENSION}-D quadratics"
            f" ({run.losses.shape[1] - 1} steps)",
            ("optimiser", "median final loss", "median speedup vs Adam"),
            rows,
        )
    )
    console.print(
        f"Adam lr {L2O_ADAM_LR}, tuned in the benchmark (benchmarks/l2o); float32. Speedup:"
        " per task, the steps Adam needs to reach its final loss over the steps the learned"
        " optimiser needs (opifex.core.speedup).",
        markup=False,
    )
