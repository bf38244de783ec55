"""Second-order solvers benchmark: opifex.second_order side by side with its baselines.

Two parts, every solver on the same problems in one process, float64 throughout:

* **Unconstrained** — the extended Rosenbrock function (MGH problem 21) in 2, 100 and 1000
  dimensions from ``(-1.2, 1, -1.2, 1, ...)``: ``opifex.second_order.minimize`` (L-BFGS,
  More-Thuente line search) against ``scipy.optimize.minimize(method="L-BFGS-B")``,
  ``optax.lbfgs`` (its own zoom line search, in a jitted ``lax.while_loop``),
  ``optimistix.BFGS`` / ``optimistix.LBFGS`` and ``jaxopt.LBFGS``.
* **Least squares** — the Moré, Garbow & Hillstrom (1981) test set
  (``opifex.second_order.mgh_problems``; problems 1-20 by default, ``--all-mgh`` for all 35): our
  Levenberg-Marquardt against ``scipy.optimize.least_squares(method="lm")`` (MINPACK's lmder),
  ``optimistix.LevenbergMarquardt`` and ``jaxopt.LevenbergMarquardt``, all at MINPACK's
  tolerances ``1e-8``.
* **Certified** — the 27 NIST StRD nonlinear regression problems
  (``opifex.second_order.nist_problems``) from both of NIST's starts, at *default* settings:
  our Levenberg-Marquardt against scipy's ``lm``; per run the correct digits (log relative
  error against NIST's certified parameters), the status and the evaluation counts
  (``nist_certified.py``).

What is measured, per solver and problem: iterations, function / derivative evaluations,
wall time after compilation (median over repeats, the jit warm-up excluded,
``block_until_ready``), the final ``f`` and ``||grad f||``. Evaluations are counted by a
wrapper around the Python callable for scipy, from ``SolveResult.stats`` for ours, and from
the JAX baselines' own state / step counters. On the first problem of each part those counters
(ours included) are checked by a separate, untimed run of the same solver on an instrumented
function (``jax.debug.callback`` counters inside a ``custom_jvp``); timed runs are never
instrumented.

Three targets are evaluated and written to the JSON:

1. on each Rosenbrock size, our L-BFGS uses no more function evaluations than scipy's L-BFGS-B;
2. on at least 80% of the MGH problems our LM takes no more iterations than scipy's ``lm``
   (MINPACK: one Jacobian per iteration, so ``njev``) *and* ends at the same optimum
   (``f`` equal to relative 1e-6 or absolute 1e-10);
3. at default settings our LM reaches at least 6 correct digits with ``SUCCESS`` from every
   NIST start (and never reports ``SUCCESS`` with fewer).

Run ``python benchmarks/second_order/bench_second_order.py [--quick]``; ``opifex bench
second-order`` calls ``main(argv, progress)``. Output: a table on stdout,
``benchmarks/results/second_order.json`` and ``benchmarks/results/second_order.png``.
A baseline that fails to import or crashes is recorded as such, never dropped.
"""

# No ``from __future__ import annotations``: the CLI may load this file with
# ``importlib.util.spec_from_file_location`` without registering it in ``sys.modules``, and
# dataclasses with string annotations need that registration.
import argparse
import dataclasses
import datetime
import functools
import importlib
import importlib.metadata
import logging
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Tiny BLAS calls (scipy's L-BFGS-B) slow down ~30x when OpenBLAS threads spin on a busy
# 2-core machine; one BLAS thread is also what these problem sizes want. Only effective if
# numpy is not imported yet (running this file as a script); recorded in the JSON either way.
_BLAS_ENV_BEFORE_NUMPY = "numpy" not in sys.modules
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the BLAS thread setting)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
sys.path.insert(0, str(Path(__file__).resolve().parent))  # nist_certified
import nist_certified  # noqa: E402
from bench_common import (  # noqa: E402
    cpu_model,
    print_progress,
    print_tables,
    timed_calls,
    versions,
    write_outputs,
)

LOG = logging.getLogger("opifex.benchmarks.second_order")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "second_order"

Progress = Callable[[int, int, str], None]
DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "numpy",
    "scipy",
    "optax",
    "optimistix",
    "jaxopt",
    "equinox",
    "opifex-second-order",
    "opifex-core",
)  # versions in the JSON

# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what is run (recorded in the JSON)."""

    quick: bool = False
    rosenbrock_sizes: tuple[int, ...] = (2, 100, 1000)
    # None: MGH problems 1-20 (the fixed-size problems; Watson with n = 6 and 9), which fit the
    # ~3 minute budget; all_mgh=True adds the variable-dimension problems 21-35
    mgh_problems: tuple[str, ...] | None = None
    all_mgh: bool = False
    repeats: int = 5
    # unconstrained: stop at ||grad f||_2 <= gtol (scipy: ||proj grad||_inf <= gtol, which is
    # no stricter); optimistix has only Cauchy (step / decrease) tolerances.
    gtol: float = 1e-6
    max_iter: int = 10_000
    optimistix_tol: float = 1e-9
    # least squares: MINPACK's defaults (scipy's xtol = ftol = gtol = 1e-8) for everyone
    lm_tol: float = 1e-8
    lm_max_iter: int = 2_000
    optimistix_lm_tol: float = 1e-10
    # "same optimum": f equal to this relative or absolute tolerance
    same_rtol: float = 1e-6
    same_atol: float = 1e-10
    mgh_target_fraction: float = 0.8
    # certified part: NIST StRD problems (None: all 27), both starts, default settings
    nist_problems: tuple[str, ...] | None = None
    certified_digits: float = 6.0
    # evaluations of the JAX baselines come from their state / step counters; an extra,
    # untimed run on an instrumented function checks them: on the "first" problem of each part,
    # on "all" problems, or "none"
    count_check: str = "first"


def quick_config() -> BenchConfig:
    """``--quick``: no 1000-D, one timed run, three MGH problems (a local minimum, an easy and
    a badly scaled one), two NIST problems (a leap into a flat region, a long valley), no
    instrumented count checks."""
    return BenchConfig(
        quick=True,
        rosenbrock_sizes=(2, 100),
        repeats=1,
        count_check="none",
        mgh_problems=("freudenstein_roth", "bard", "meyer"),
        nist_problems=("BoxBOD", "MGH09"),
    )


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass
class Row:
    """One solver on one problem (a row of the table and of the JSON)."""

    part: str  # "unconstrained" | "least_squares"
    problem: str
    n: int
    m: int | None
    solver: str
    status: str = "ok"  # "ok" | "error" | "unavailable"
    error: str | None = None
    iterations: int | None = None
    fun_evals: int | None = None  # evaluations of f (or of the residual vector)
    deriv_evals: int | None = None  # gradient / Jacobian (jvp, vjp, jacfwd) passes
    count_source: str | None = None
    state_counters: dict[str, Any] | None = None
    count_check: dict[str, Any] | None = None
    solver_converged: bool | None = None
    final_f: float | None = None
    grad_norm: float | None = None
    compile_s: float | None = None
    time_s: float | None = None  # median over repeats
    times_s: list[float] | None = None
    reached_published_optimum: bool | None = None


def _same_f(a: float | None, b: float | None, cfg: BenchConfig) -> bool:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= max(cfg.same_atol, cfg.same_rtol * max(abs(a), abs(b)))


# ----------------------------------------------------------------------------- helpers


class _Counter:
    """Host-side counters incremented from inside jitted code (``jax.debug.callback``)."""

    def __init__(self) -> None:
        self.fun = 0
        self.deriv = 0

    def hit_fun(self) -> None:
        self.fun += 1

    def hit_deriv(self) -> None:
        self.deriv += 1


def _instrument(fn: Callable, counter: _Counter) -> Callable:
    """``fn`` that counts primal calls and derivative passes (jvp, hence also vjp / jacfwd).

    A jacfwd (vmapped jvp) or a value-and-grad counts as one derivative pass.
    """
    import jax

    @jax.custom_jvp
    def counted(x):
        jax.debug.callback(counter.hit_fun)
        return fn(x)

    @counted.defjvp
    def counted_jvp(primals, tangents):
        jax.debug.callback(counter.hit_deriv)
        return jax.jvp(fn, primals, tangents)

    return counted


def _timed(
    run: Callable[[], Any], repeats: int, budget_s: float = 2.0
) -> tuple[float, list[float], Any]:
    """Median wall time of up to ``repeats`` runs (fewer once ``budget_s`` is used up)."""
    times, out = timed_calls(run, repeats, budget_s)
    return statistics.median(times), times, out


def _compile(run: Callable[[], Any]) -> tuple[float, Any]:
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(run())
    return time.perf_counter() - start, out


def _count_evals(run_with: Callable[[Callable], Any], fn: Callable) -> _Counter:
    """``run_with(instrumented fn)`` once (a separate compile, never timed); the counts."""
    import jax

    counter = _Counter()
    jax.block_until_ready(run_with(_instrument(fn, counter)))
    jax.effects_barrier()
    return counter


def _record_counts(
    row: Row,
    fun: int,
    deriv: int,
    source: str,
    check: Callable[[], _Counter] | None,
    *,
    value_with_deriv: bool,
    override: bool = True,
) -> None:
    """Set ``row.fun_evals`` / ``deriv_evals`` from counters and optionally verify them.

    ``value_with_deriv``: the derivative passes also count as evaluations of ``f`` (L-BFGS's
    value-and-gradient); for least squares ``fun_evals`` counts residual-only calls and
    ``deriv_evals`` the Jacobian / linearisation passes, as MINPACK's nfev / njev.
    ``override``: replace disagreeing counters by the instrumented counts (baselines); for
    opifex the reported ``SolveResult.stats`` are kept and the disagreement is only recorded.
    """
    row.fun_evals, row.deriv_evals, row.count_source = fun, deriv, source
    if check is None:
        return
    counter = check()
    measured_fun = counter.fun + (counter.deriv if value_with_deriv else 0)
    row.count_check = {
        "instrumented_fun_evals": measured_fun,
        "instrumented_deriv_evals": counter.deriv,
        "agree": (measured_fun, counter.deriv) == (fun, deriv),
    }
    if not row.count_check["agree"] and override:
        LOG.warning(
            "%s on %s: counters %s disagree with %s",
            row.solver,
            row.problem,
            (fun, deriv),
            (measured_fun, counter.deriv),
        )
        row.fun_evals, row.deriv_evals = measured_fun, counter.deriv
        row.count_source = "instrumented run (counters disagreed)"


def _try_import(module: str) -> tuple[Any | None, str | None]:
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # any import failure is recorded, not raised
        return None, f"{type(exc).__name__}: {exc}"


def _error_text(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:500]


# ----------------------------------------------------------------------------- unconstrained


@dataclasses.dataclass(frozen=True)
class _Unconstrained:
    name: str
    n: int
    fn: Callable
    x0: Any
    value_and_grad: Callable  # jitted, shared by scipy and the final check


def _rosenbrock(n: int) -> _Unconstrained:
    import jax
    import jax.numpy as jnp

    from opifex.second_order import get_mgh_problem

    residual = get_mgh_problem("extended_rosenbrock").residual_fn  # any even n

    def fn(x):
        r = residual(x)
        return jnp.sum(r * r)

    x0 = jnp.tile(jnp.array([-1.2, 1.0], dtype=jnp.float64), n // 2)
    return _Unconstrained(f"rosenbrock_{n}d", n, fn, x0, jax.jit(jax.value_and_grad(fn)))


def _finish_unconstrained(row: Row, prob: _Unconstrained, x_final: Any) -> None:
    value, grad = prob.value_and_grad(np.asarray(x_final, dtype=np.float64))
    row.final_f = float(value)
    row.grad_norm = float(np.linalg.norm(np.asarray(grad)))
    row.reached_published_optimum = row.final_f <= 1e-10  # f* = 0 at (1, ..., 1)


def _unc_opifex(prob: _Unconstrained, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax

    so = importlib.import_module("opifex.second_order")
    minimize = so.minimize
    kwargs = _opifex_minimize_kwargs(so, cfg)

    solve = jax.jit(lambda x0: minimize(prob.fn, x0, **kwargs))
    row.compile_s, _ = _compile(lambda: solve(prob.x0))
    row.time_s, row.times_s, result = _timed(lambda: solve(prob.x0), cfg.repeats)
    row.iterations = int(result.num_steps)
    stats = {k: int(v) for k, v in result.stats.items()}
    row.state_counters = stats
    row.solver_converged = bool(result.converged)
    _record_counts(
        row,
        stats.get("num_fun_evals"),
        stats.get("num_grad_evals"),
        "SolveResult.stats",
        (
            lambda: _count_evals(
                lambda f: jax.jit(lambda x0: minimize(f, x0, **kwargs))(prob.x0), prob.fn
            )
        )
        if check
        else None,
        value_with_deriv=True,
        override=False,
    )
    _finish_unconstrained(row, prob, result.params)


def _opifex_minimize_kwargs(so: Any, cfg: BenchConfig) -> dict[str, Any]:
    """``opifex.second_order.minimize`` settings: L-BFGS, memory 10, More-Thuente line search."""
    config = so.LBFGSConfig(
        memory_size=10, max_steps=cfg.max_iter, atol=cfg.gtol, line_search="more_thuente"
    )
    return {"config": config}


def _unc_scipy(prob: _Unconstrained, cfg: BenchConfig, row: Row, check: bool) -> None:
    from scipy.optimize import minimize

    value_and_grad = prob.value_and_grad
    x0 = np.asarray(prob.x0)
    calls = [0]

    def fun(x):
        calls[0] += 1
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad)

    options = {"maxiter": cfg.max_iter, "maxfun": 10 * cfg.max_iter, "gtol": cfg.gtol}
    options["ftol"] = 1e-15  # leave termination to gtol, as for the JAX solvers
    options["maxcor"] = 10

    def run():
        calls[0] = 0
        return minimize(fun, x0, jac=True, method="L-BFGS-B", options=options)

    row.compile_s, _ = _compile(lambda: value_and_grad(x0))
    row.time_s, row.times_s, result = _timed(run, cfg.repeats)
    row.iterations = int(result.nit)
    row.fun_evals = calls[0]  # each call returns f and grad
    row.deriv_evals = calls[0]
    row.count_source = "wrapper counter"
    row.state_counters = {"nfev": int(result.nfev), "nit": int(result.nit)}
    row.solver_converged = bool(result.success)
    _finish_unconstrained(row, prob, result.x)


def _unc_optax(prob: _Unconstrained, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    import optax.tree_utils as otu
    from jax import lax

    opt = optax.lbfgs()  # memory 10, zoom line search (optax's default)

    def make_run(fn):
        value_and_grad = optax.value_and_grad_from_state(fn)

        def run(x0):
            def cond(carry):
                _, state, k, _ = carry
                grad = otu.tree_get(state, "grad")
                return (k == 0) | ((k < cfg.max_iter) & (jnp.linalg.norm(grad) > cfg.gtol))

            def body(carry):
                x, state, k, ls_steps = carry
                value, grad = value_and_grad(x, state=state)
                updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fn)
                ls_steps = ls_steps + otu.tree_get(state, "num_linesearch_steps")
                return optax.apply_updates(x, updates), state, k + 1, ls_steps

            init = (x0, opt.init(x0), jnp.asarray(0), jnp.asarray(0))
            return lax.while_loop(cond, body, init)

        return jax.jit(run)

    solve = make_run(prob.fn)
    row.compile_s, _ = _compile(lambda: solve(prob.x0))
    row.time_s, row.times_s, (x, _, k, ls_steps) = _timed(lambda: solve(prob.x0), cfg.repeats)
    row.iterations = int(k)
    row.state_counters = {"sum_num_linesearch_steps": int(ls_steps)}
    evals = int(ls_steps) + 1  # the first value_and_grad, then one per line-search step
    _record_counts(
        row,
        evals,
        evals,
        "state: 1 + sum of num_linesearch_steps",
        (lambda: _count_evals(lambda f: make_run(f)(prob.x0), prob.fn)) if check else None,
        value_with_deriv=True,
    )
    _finish_unconstrained(row, prob, x)
    row.solver_converged = row.grad_norm <= cfg.gtol


def _unc_optimistix(solver_name: str) -> Callable[..., None]:
    def bench(prob: _Unconstrained, cfg: BenchConfig, row: Row, check: bool) -> None:
        import jax
        import optimistix as optx

        solver = getattr(optx, solver_name)(rtol=cfg.optimistix_tol, atol=cfg.optimistix_tol)

        def make_run(fn):
            def run(x0):
                sol = optx.minimise(
                    lambda y, _: fn(y), solver, x0, max_steps=cfg.max_iter, throw=False
                )
                return sol.value, sol.stats["num_steps"], sol.result == optx.RESULTS.successful

            return jax.jit(run)

        solve = make_run(prob.fn)
        row.compile_s, _ = _compile(lambda: solve(prob.x0))
        row.time_s, row.times_s, (x, steps, ok) = _timed(lambda: solve(prob.x0), cfg.repeats)
        row.iterations = int(steps)
        _record_counts(  # every step evaluates f and its gradient once (jax.linearize)
            row,
            row.iterations,
            row.iterations,
            "stats: num_steps",
            (lambda: _count_evals(lambda f: make_run(f)(prob.x0), prob.fn)) if check else None,
            value_with_deriv=True,
        )
        row.solver_converged = bool(ok)
        _finish_unconstrained(row, prob, x)

    return bench


def _unc_jaxopt(prob: _Unconstrained, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax
    import jaxopt

    def make_run(fn):
        solver = jaxopt.LBFGS(fun=fn, maxiter=cfg.max_iter, tol=cfg.gtol, history_size=10)
        return jax.jit(solver.run)

    solve = make_run(prob.fn)
    row.compile_s, _ = _compile(lambda: solve(prob.x0))
    row.time_s, row.times_s, out = _timed(lambda: solve(prob.x0), cfg.repeats)
    state = out.state
    row.iterations = int(state.iter_num)
    row.state_counters = {
        "num_fun_eval": int(state.num_fun_eval),
        "num_grad_eval": int(state.num_grad_eval),
        "num_linesearch_iter": int(state.num_linesearch_iter),
    }
    _record_counts(  # its zoom line search ends each iteration with one value-only call,
        row,  # which num_grad_eval also counts
        int(state.num_fun_eval),
        int(state.num_fun_eval) - row.iterations,
        "state: num_fun_eval; gradients = num_fun_eval - iter_num",
        (lambda: _count_evals(lambda f: make_run(f)(prob.x0), prob.fn)) if check else None,
        value_with_deriv=True,
    )
    _finish_unconstrained(row, prob, out.params)
    row.solver_converged = row.grad_norm <= cfg.gtol


UNCONSTRAINED_SOLVERS: dict[str, tuple[str, Callable]] = {
    # label: (module that must import, bench function)
    "opifex L-BFGS": ("opifex.second_order", _unc_opifex),
    "scipy L-BFGS-B": ("scipy.optimize", _unc_scipy),
    "optax lbfgs": ("optax", _unc_optax),
    "optimistix BFGS": ("optimistix", _unc_optimistix("BFGS")),
    "optimistix LBFGS": ("optimistix", _unc_optimistix("LBFGS")),
    "jaxopt LBFGS": ("jaxopt", _unc_jaxopt),
}
OURS_UNC = "opifex L-BFGS"
SCIPY_UNC = "scipy L-BFGS-B"


# ----------------------------------------------------------------------------- least squares


@functools.cache
def _lsq_evaluators(problem: Any) -> tuple[Callable, Callable]:
    """Jitted residual and Jacobian of an MGH problem (shared by scipy and the final check)."""
    import jax

    return jax.jit(problem.residual_fn), jax.jit(jax.jacfwd(problem.residual_fn))


def _finish_lsq(row: Row, problem: Any, x_final: Any) -> None:
    residual, jacobian = _lsq_evaluators(problem)
    x = np.asarray(x_final, dtype=np.float64)
    r, jac = np.asarray(residual(x)), np.asarray(jacobian(x))
    row.final_f = float(r @ r)
    row.grad_norm = float(np.linalg.norm(2.0 * jac.T @ r))
    row.reached_published_optimum = any(
        (row.final_f <= 1e-10) if v == 0.0 else abs(row.final_f - v) <= 1e-5 * abs(v)
        for v in problem.optimum_values
    )


def _lsq_opifex(problem: Any, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax

    so = importlib.import_module("opifex.second_order")
    least_squares = so.least_squares
    kwargs = _opifex_lm_kwargs(so, cfg)
    x0 = problem.initial_params()

    solve = jax.jit(lambda x0: least_squares(problem.residual_fn, x0, **kwargs))
    row.compile_s, _ = _compile(lambda: solve(x0))
    row.time_s, row.times_s, result = _timed(lambda: solve(x0), cfg.repeats)
    row.iterations = int(result.num_steps)
    stats = {k: int(v) for k, v in result.stats.items()}
    row.state_counters = stats
    row.solver_converged = bool(result.converged)
    _record_counts(
        row,
        stats.get("num_fun_evals"),
        stats.get("num_jac_evals"),
        "SolveResult.stats",
        (
            lambda: _count_evals(
                lambda f: jax.jit(lambda x0: least_squares(f, x0, **kwargs))(x0),
                problem.residual_fn,
            )
        )
        if check
        else None,
        value_with_deriv=False,
        override=False,
    )
    _finish_lsq(row, problem, result.params)


def _opifex_lm_kwargs(so: Any, cfg: BenchConfig) -> dict[str, Any]:
    """``opifex.second_order.least_squares`` settings: LM with MINPACK's ftol / xtol / gtol."""
    config = so.GaussNewtonConfig(
        method="levenberg_marquardt",
        max_steps=cfg.lm_max_iter,
        ftol=cfg.lm_tol,
        xtol=cfg.lm_tol,
        gtol=cfg.lm_tol,
    )
    return {"config": config}


def _lsq_scipy(problem: Any, cfg: BenchConfig, row: Row, check: bool) -> None:
    from scipy.optimize import least_squares

    residual, jacobian = _lsq_evaluators(problem)
    x0 = np.asarray(problem.x0)
    calls = {"fun": 0, "jac": 0}

    def fun(x):
        calls["fun"] += 1
        return np.asarray(residual(x))

    def jac(x):
        calls["jac"] += 1
        return np.asarray(jacobian(x))

    def run():
        calls["fun"] = calls["jac"] = 0
        return least_squares(
            fun,
            x0,
            jac=jac,
            method="lm",
            xtol=cfg.lm_tol,
            ftol=cfg.lm_tol,
            gtol=cfg.lm_tol,
            max_nfev=100 * cfg.lm_max_iter,
        )

    row.compile_s, _ = _compile(lambda: (residual(x0), jacobian(x0)))
    row.time_s, row.times_s, result = _timed(run, cfg.repeats)
    row.iterations = int(result.njev)  # MINPACK lmder: one Jacobian per outer iteration
    row.fun_evals = calls["fun"]
    row.deriv_evals = calls["jac"]
    row.count_source = "wrapper counter"
    row.state_counters = {"nfev": int(result.nfev), "njev": int(result.njev)}
    row.solver_converged = bool(result.success)
    _finish_lsq(row, problem, result.x)


def _lsq_optimistix(problem: Any, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax
    import optimistix as optx

    solver = optx.LevenbergMarquardt(rtol=cfg.optimistix_lm_tol, atol=cfg.optimistix_lm_tol)
    x0 = problem.initial_params()

    def make_run(fn):
        def run(x0):
            sol = optx.least_squares(
                lambda y, _: fn(y), solver, x0, max_steps=cfg.lm_max_iter, throw=False
            )
            return sol.value, sol.stats["num_steps"], sol.result == optx.RESULTS.successful

        return jax.jit(run)

    solve = make_run(problem.residual_fn)
    row.compile_s, _ = _compile(lambda: solve(x0))
    row.time_s, row.times_s, (x, steps, ok) = _timed(lambda: solve(x0), cfg.repeats)
    row.iterations = int(steps)
    _record_counts(  # each step linearises the residual once (value and Jacobian together)
        row,
        0,
        row.iterations,
        "stats: num_steps (linearisations)",
        (lambda: _count_evals(lambda f: make_run(f)(x0), problem.residual_fn)) if check else None,
        value_with_deriv=False,
    )
    row.solver_converged = bool(ok)
    _finish_lsq(row, problem, x)


def _lsq_jaxopt(problem: Any, cfg: BenchConfig, row: Row, check: bool) -> None:
    import jax
    import jaxopt

    x0 = problem.initial_params()

    def make_run(fn):
        solver = jaxopt.LevenbergMarquardt(
            residual_fun=fn,
            maxiter=cfg.lm_max_iter,
            tol=cfg.lm_tol,
            xtol=cfg.lm_tol,
            gtol=cfg.lm_tol,
            solver="cholesky",
            materialize_jac=True,
        )
        return jax.jit(solver.run)

    solve = make_run(problem.residual_fn)
    row.compile_s, _ = _compile(lambda: solve(x0))
    row.time_s, row.times_s, out = _timed(lambda: solve(x0), cfg.repeats)
    row.iterations = int(out.state.iter_num)
    k = row.iterations
    _record_counts(  # jaxopt's LM: 2 residual calls and 1 Jacobian per iteration, plus init
        row,
        2 * k + 1,
        k + 1,
        "iter_num: 2k + 1 residual calls, k + 1 Jacobians",
        (lambda: _count_evals(lambda f: make_run(f)(x0), problem.residual_fn)) if check else None,
        value_with_deriv=False,
    )
    _finish_lsq(row, problem, out.params)
    row.solver_converged = bool(row.iterations < cfg.lm_max_iter)


LSQ_SOLVERS: dict[str, tuple[str, Callable]] = {
    "opifex LM": ("opifex.second_order", _lsq_opifex),
    "scipy lm (MINPACK)": ("scipy.optimize", _lsq_scipy),
    "optimistix LM": ("optimistix", _lsq_optimistix),
    "jaxopt LM": ("jaxopt", _lsq_jaxopt),
}
OURS_LSQ = "opifex LM"
SCIPY_LSQ = "scipy lm (MINPACK)"


# ----------------------------------------------------------------------------- driver


def _availability(solvers: dict[str, tuple[str, Callable]]) -> dict[str, str | None]:
    out = {}
    for label, (module, _) in solvers.items():
        mod, err = _try_import(module)
        if mod is not None and label.startswith("opifex"):
            needed = "minimize" if label == OURS_UNC else "least_squares"
            if not hasattr(mod, needed):
                err = f"opifex.second_order has no `{needed}` (not implemented yet?)"
        out[label] = err
    return out


def _run_one(run: Callable[[], None], row: Any) -> Any:
    """``run()`` fills ``row``; an exception (other than an interrupt) is recorded in it."""
    try:
        run()
    except Exception as exc:  # a crashing solver is a result, not a benchmark failure
        row.status = "error"
        row.error = _error_text(exc)
        LOG.warning("%s on %s failed: %s", row.solver, row.problem, row.error)
    return row


def run_benchmark(cfg: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run both parts and return the JSON-ready results (also evaluates the targets)."""
    import jax

    from opifex.second_order import get_mgh_problem, mgh_problems

    if cfg.mgh_problems is None:
        lsq_problems = [p for p in mgh_problems() if cfg.all_mgh or p.mgh_number <= 20]
    else:
        lsq_problems = [get_mgh_problem(name) for name in cfg.mgh_problems]
    unc_problems = list(cfg.rosenbrock_sizes)
    unc_avail = _availability(UNCONSTRAINED_SOLVERS)
    lsq_avail = _availability(LSQ_SOLVERS)
    certified = nist_certified.new_rows(cfg.nist_problems)
    total = (
        len(unc_problems) * len(UNCONSTRAINED_SOLVERS)
        + len(lsq_problems) * len(LSQ_SOLVERS)
        + len(certified)
    )
    done = 0
    rows: list[Row] = []
    started = time.perf_counter()

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    def check(index: int) -> bool:
        return cfg.count_check == "all" or (cfg.count_check == "first" and index == 0)

    jobs: list[tuple[Row, Callable | None, Any, bool]] = []
    for index, n in enumerate(unc_problems):
        prob = _rosenbrock(n)
        for label, (_, bench) in UNCONSTRAINED_SOLVERS.items():
            row = Row("unconstrained", prob.name, n, None, label)
            if unc_avail[label] is not None:
                row.status, row.error = "unavailable", unc_avail[label]
            jobs.append((row, bench, prob, check(index)))
    for index, problem in enumerate(lsq_problems):
        for label, (_, bench) in LSQ_SOLVERS.items():
            row = Row(
                "least_squares", problem.name, problem.num_params, problem.num_residuals, label
            )
            if lsq_avail[label] is not None:
                row.status, row.error = "unavailable", lsq_avail[label]
            jobs.append((row, bench, problem, check(index)))

    interrupted = False
    for row, bench, problem, checked in jobs:
        if interrupted:
            row.status, row.error = "not run", "benchmark interrupted"
        elif row.status == "ok":
            try:
                _run_one(lambda: bench(problem, cfg, row, checked), row)  # noqa: B023
            except KeyboardInterrupt:  # keep what was measured; the JSON says it is partial
                interrupted = True
                row.status, row.error = "not run", "benchmark interrupted"
                LOG.warning("interrupted: writing the partial results")
        rows.append(row)
        tick(f"{row.solver} on {row.problem}")
    certified_rows = []
    for row, problem in certified:
        module, bench = nist_certified.SOLVERS[row.solver]
        unavailable = _try_import(module)[1]
        if interrupted:
            row.status, row.error = "not run", "benchmark interrupted"
        elif unavailable is not None:
            row.status, row.error = "unavailable", unavailable
        else:
            try:
                _run_one(lambda: bench(problem, row, cfg.repeats), row)  # noqa: B023
            except KeyboardInterrupt:
                interrupted = True
                row.status, row.error = "not run", "benchmark interrupted"
        certified_rows.append(row)
        tick(f"{row.solver} on {row.problem} from start {row.start}")

    elapsed = time.perf_counter() - started
    targets = evaluate_targets(rows, cfg)
    targets["nist_defaults_certified_digits"] = nist_certified.evaluate_target(
        certified_rows, cfg.certified_digits
    )
    profile = performance_profiles(rows, cfg)
    device = jax.devices()[0]
    return {
        "benchmark": NAME,
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": versions(DISTRIBUTIONS),
            "jax_version": jax.__version__,
            "python_version": platform.python_version(),
            "device": f"{device.platform} ({device.device_kind}), {cpu_model()}",
            "jax_backend": jax.default_backend(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "x64": bool(jax.config.jax_enable_x64),
            "blas_threads": {
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                "set_before_numpy_import": _BLAS_ENV_BEFORE_NUMPY,
            },
            "elapsed_s": round(elapsed, 2),
            "interrupted": interrupted,
            "config": dataclasses.asdict(cfg),
            "notes": [
                "times: median wall time of repeated runs after a jit warm-up call,"
                " block_until_ready; scipy calls jitted JAX functions through numpy",
                "unconstrained: fun_evals = evaluations of f (each with its gradient, so"
                " deriv_evals = fun_evals for every solver here)",
                "least squares: fun_evals = residual-only evaluations, deriv_evals = Jacobian"
                " or linearisation passes (each also yields the residual), as MINPACK's"
                " nfev / njev",
                "JAX baselines: counts from their state / step counters; count_check holds an"
                " instrumented (jax.debug.callback) re-run where one was made",
                "scipy lm iterations = Jacobian evaluations (MINPACK lmder computes one per"
                " outer iteration)",
                "certified: default settings for both solvers; digits = min over parameters of"
                " -log10(|b - c| / |c|) against NIST's certified c, at most 11",
            ],
        },
        "availability": {
            "unconstrained": unc_avail,
            "least_squares": lsq_avail,
        },
        "unconstrained": [dataclasses.asdict(r) for r in rows if r.part == "unconstrained"],
        "least_squares": [dataclasses.asdict(r) for r in rows if r.part == "least_squares"],
        "certified": [dataclasses.asdict(r) for r in certified_rows],
        "performance_profiles": profile,
        "targets": targets,
    }


# ----------------------------------------------------------------------------- targets


def _rows_by(rows: Sequence[Row], part: str) -> dict[tuple[str, str], Row]:
    return {(r.problem, r.solver): r for r in rows if r.part == part}


def evaluate_targets(rows: Sequence[Row], cfg: BenchConfig) -> dict[str, Any]:
    """Target 1 (Rosenbrock f-evals vs scipy) and target 2 (MGH LM iterations vs scipy)."""
    unc = _rows_by(rows, "unconstrained")
    per_size = {}
    met1: bool | None = True
    for problem in sorted({r.problem for r in rows if r.part == "unconstrained"}):
        ours, ref = unc.get((problem, OURS_UNC)), unc.get((problem, SCIPY_UNC))
        ok = (
            ours is not None
            and ref is not None
            and ours.status == ref.status == "ok"
            and ours.fun_evals is not None
            and ref.fun_evals is not None
        )
        entry: dict[str, Any] = {
            "ours_fun_evals": ours.fun_evals if ours else None,
            "scipy_fun_evals": ref.fun_evals if ref else None,
            "ours_grad_norm": ours.grad_norm if ours else None,
            "scipy_grad_norm": ref.grad_norm if ref else None,
        }
        if ok:
            entry["met"] = ours.fun_evals <= ref.fun_evals
            met1 = bool(met1) and entry["met"]
        else:
            entry["met"] = None
            entry["reason"] = "ours or scipy did not run" + (
                f": {ours.error}" if ours is not None and ours.error else ""
            )
            met1 = None
        per_size[problem] = entry

    lsq = _rows_by(rows, "least_squares")
    problems = sorted({r.problem for r in rows if r.part == "least_squares"}, key=_mgh_order)
    wins, losses, skipped = [], [], []
    for problem in problems:
        ours, ref = lsq.get((problem, OURS_LSQ)), lsq.get((problem, SCIPY_LSQ))
        if ours is None or ref is None or ours.status != "ok" or ref.status != "ok":
            skipped.append(problem)
            continue
        same = _same_f(ours.final_f, ref.final_f, cfg)
        entry = {
            "problem": problem,
            "ours_iterations": ours.iterations,
            "scipy_iterations": ref.iterations,
            "extra_iterations": ours.iterations - ref.iterations,
            "ours_f": ours.final_f,
            "scipy_f": ref.final_f,
            "same_optimum": same,
        }
        (wins if same and ours.iterations <= ref.iterations else losses).append(entry)
    counted = len(wins) + len(losses)
    fraction = len(wins) / counted if counted else None
    return {
        "rosenbrock_fun_evals_le_scipy": {"met": met1, "per_size": per_size},
        "mgh_lm_iterations_le_scipy_same_optimum": {
            "threshold": cfg.mgh_target_fraction,
            "fraction": fraction,
            "met": None if fraction is None or skipped else fraction >= cfg.mgh_target_fraction,
            "num_problems": counted,
            "not_compared": skipped,
            "wins": wins,
            "losses": losses,
        },
    }


def _mgh_order(name: str) -> tuple[int, str]:
    from opifex.second_order import get_mgh_problem

    try:
        return get_mgh_problem(name).mgh_number, name
    except ValueError:
        return 999, name


def performance_profiles(rows: Sequence[Row], cfg: BenchConfig) -> dict[str, Any]:
    """Dolan-Moré performance profiles of the LM solvers on the MGH set.

    A solver solves a problem when its final ``f`` equals the best ``f`` any solver reached on
    that problem (``same_rtol`` / ``same_atol``); otherwise its cost is infinite.
    """
    lsq = [r for r in rows if r.part == "least_squares"]
    solvers = list(dict.fromkeys(r.solver for r in lsq))
    problems = list(dict.fromkeys(r.problem for r in lsq))
    by = {(r.problem, r.solver): r for r in lsq}
    out: dict[str, Any] = {"solvers": solvers, "problems": problems}
    for metric in ("iterations", "time_s"):
        ratios: dict[str, list[float]] = {s: [] for s in solvers}
        for p in problems:
            finals = [by[(p, s)].final_f for s in solvers if by[(p, s)].final_f is not None]
            finals = [f for f in finals if math.isfinite(f)]
            if not finals:
                for s in solvers:
                    ratios[s].append(math.inf)
                continue
            best = min(finals)
            cost = {}
            for s in solvers:
                r = by[(p, s)]
                value = getattr(r, metric)
                solved = r.status == "ok" and _same_f(r.final_f, best, cfg) and value is not None
                cost[s] = max(float(value), 1e-12) if solved else math.inf
            best_cost = min(cost.values())
            for s in solvers:
                ratio = cost[s] / best_cost if math.isfinite(best_cost) else math.inf
                ratios[s].append(ratio)
        out[metric] = {s: [None if math.isinf(v) else v for v in ratios[s]] for s in solvers}
    return out


# ----------------------------------------------------------------------------- output


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "f":
        return f"{value:.4g}"
    if kind == "ms":
        return f"{1e3 * value:.3g}"
    return str(value)


TABLE_COLUMNS = ("problem", "solver", "status", "iter", "f-evals", "d-evals", "f", "|grad|", "ms")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    out = []
    for r in rows:
        out.append(
            (
                r["problem"],
                r["solver"],
                r["status"],
                _fmt(r["iterations"]),
                _fmt(r["fun_evals"]),
                _fmt(r["deriv_evals"]),
                _fmt(r["final_f"], "f"),
                _fmt(r["grad_norm"], "f"),
                _fmt(r["time_s"], "ms"),
            )
        )
    return out


def render_tables(results: dict[str, Any], stream: Any = None) -> None:
    """Print both tables (rich if available, else plain text) and the targets."""
    sections = [
        (title, TABLE_COLUMNS, table_rows(results[part]))
        for title, part in (
            ("Unconstrained: extended Rosenbrock", "unconstrained"),
            ("Least squares: Moré-Garbow-Hillstrom", "least_squares"),
        )
    ]
    sections.append(
        (
            "Certified: NIST StRD at default settings",
            nist_certified.TABLE_COLUMNS,
            nist_certified.table_rows(results["certified"]),
        )
    )
    stream = stream if stream is not None else sys.stdout
    print_tables(sections, target_lines(results), stream, left_columns=2)


def target_lines(results: dict[str, Any]) -> list[str]:
    t1 = results["targets"]["rosenbrock_fun_evals_le_scipy"]
    t2 = results["targets"]["mgh_lm_iterations_le_scipy_same_optimum"]
    lines = [f"Target 1 (our L-BFGS f-evals <= scipy L-BFGS-B on each size): met={t1['met']}"]
    for size, e in t1["per_size"].items():
        lines.append(f"  {size}: ours {e['ours_fun_evals']} vs scipy {e['scipy_fun_evals']}")
    frac = t2["fraction"]
    frac_s = "-" if frac is None else f"{frac:.2f}"
    lines.append(
        f"Target 2 (our LM iterations <= scipy lm, same optimum, on >= {t2['threshold']:.0%} of"
        f" MGH): fraction={frac_s} over {t2['num_problems']} problems, met={t2['met']}"
    )
    for loss in t2["losses"]:
        lines.append(
            f"  loses on {loss['problem']}: {loss['ours_iterations']} vs"
            f" {loss['scipy_iterations']} iterations, f {loss['ours_f']:.6g} vs"
            f" {loss['scipy_f']:.6g} (same optimum: {loss['same_optimum']})"
        )
    if t2["not_compared"]:
        lines.append(f"  not compared (a solver did not run): {', '.join(t2['not_compared'])}")
    t3 = results["targets"]["nist_defaults_certified_digits"]
    lines.append(
        f"Target 3 (our LM at defaults: SUCCESS with >= {t3['digits']:g} digits from every NIST"
        f" start): met={t3['met']}"
    )
    for label, key in (("ours", "ours"), ("scipy lm", "scipy")):
        s = t3[key]
        lines.append(
            f"  {label}: {s['reached']} / {s['runs']} starts reach it;"
            f" successes below it: {', '.join(s['converged_below']) or 'none'}"
        )
    return lines


def write_plot(results: dict[str, Any], path: Path) -> None:
    """A 2x2 figure: Rosenbrock f-evals and times; LM performance profiles (iters, time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    unc = [r for r in results["unconstrained"] if r["status"] == "ok"]
    problems = list(dict.fromkeys(r["problem"] for r in results["unconstrained"]))
    solvers = list(dict.fromkeys(r["solver"] for r in results["unconstrained"]))
    width = 0.8 / max(1, len(solvers))
    for ax, key, label in (
        (axes[0, 0], "fun_evals", "function evaluations"),
        (axes[0, 1], "time_s", "wall time after compile [s]"),
    ):
        for i, solver in enumerate(solvers):
            values = []
            for p in problems:
                match = [r for r in unc if r["problem"] == p and r["solver"] == solver]
                values.append(match[0][key] if match and match[0][key] else np.nan)
            xs = np.arange(len(problems)) + (i - (len(solvers) - 1) / 2) * width
            ax.bar(xs, values, width, label=solver)
        ax.set_xticks(np.arange(len(problems)), problems)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_title(f"Extended Rosenbrock: {label}")
    axes[0, 0].legend(fontsize=8)

    profile = results["performance_profiles"]
    for ax, metric, label in (
        (axes[1, 0], "iterations", "iterations"),
        (axes[1, 1], "time_s", "wall time"),
    ):
        data = profile.get(metric, {})
        finite = [v for ratios in data.values() for v in ratios if v is not None]
        tau_max = max([100.0, *finite]) * 1.2  # so that every solved problem shows
        taus = np.logspace(0, np.log10(tau_max), 300)
        num = max(1, len(profile.get("problems", [])))
        for solver, ratios in data.items():
            r = np.array([np.inf if v is None else v for v in ratios], dtype=float)
            ax.step(taus, [(r <= t).sum() / num for t in taus], where="post", label=solver)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("tau (ratio to the best solver)")
        ax.set_ylabel("fraction of problems")
        ax.set_title(f"MGH least squares: performance profile ({label})")
        ax.legend(fontsize=8, loc="lower right")
    meta = results["meta"]
    fig.suptitle(
        f"opifex.second_order benchmark — jax {meta['jax_version']}, {meta['device']},"
        f" {meta['date']}" + (" (quick)" if meta["config"]["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- entry points


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_second_order",
        description="opifex.second_order L-BFGS and Levenberg-Marquardt against scipy, optax,"
        " optimistix and jaxopt (Rosenbrock and the More-Garbow-Hillstrom set).",
    )
    parser.add_argument("--quick", action="store_true", help="smaller run (< ~40 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per solver")
    parser.add_argument(
        "--problems", default=None, help="comma-separated MGH problem names (default: MGH 1-20)"
    )
    parser.add_argument(
        "--all-mgh", action="store_true", help="all 35 MGH problems (adds ~1.5 minutes)"
    )
    parser.add_argument(
        "--nist", default=None, help="comma-separated NIST StRD problem names (default: all 27)"
    )
    parser.add_argument(
        "--count-check",
        choices=("none", "first", "all"),
        default=None,
        help="verify the JAX baselines' evaluation counters with an instrumented re-run",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="where the JSON and PNG go"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark, print the tables, write JSON + PNG; returns an exit code (0).

    Args:
        argv: command-line options (``["--quick"]`` ...); ``None`` means no options (the
            defaults), never ``sys.argv``, so that a caller such as the CLI can pass its own.
        progress: optional ``callback(done, total, label)`` called after every solver run.
    """
    args = parse_args([] if argv is None else list(argv))
    cfg = quick_config() if args.quick else BenchConfig()
    if args.repeats is not None:
        cfg = dataclasses.replace(cfg, repeats=args.repeats)
    if args.problems:
        cfg = dataclasses.replace(cfg, mgh_problems=tuple(args.problems.split(",")))
    if args.all_mgh:
        cfg = dataclasses.replace(cfg, all_mgh=True)
    if args.nist:
        cfg = dataclasses.replace(cfg, nist_problems=tuple(args.nist.split(",")))
    if args.count_check is not None:
        cfg = dataclasses.replace(cfg, count_check=args.count_check)

    import jax

    with jax.enable_x64(True):
        results = run_benchmark(cfg, progress)
    plot = None if args.no_plot else write_plot
    write_outputs(results, args.output_dir, NAME, render=render_tables, plot=plot)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:], progress=print_progress))
