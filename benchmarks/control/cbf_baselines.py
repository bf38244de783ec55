"""Per-step time of the CBF safety filter, opifex beside qpax and cbfpy (``bench_cbf.py``).

Two problems; the calls cycle through the states of one closed-loop episode of each (opifex's
sample-and-hold filter, one RK4 step per period), with the episode's nominal controls:

* cruise control from 25 m/s, 80 m behind the lead car (the filter brakes, then follows);
* obstacle avoidance past three discs, the mass passing between two of them.

Timed, each as one jitted call per step (rows and QP together), float64, CPU:

* opifex ``SafetyFilter.filter`` with the sample-and-hold rows (the benchmark's filters) and
  with the continuous-time rows only;
* ``qpax.solve_qp`` (primal-dual interior point, ``solver_tol=1e-6``) on the same
  sample-and-hold rows and box (opifex's ``SafetyFilter.rows`` builds them);
* ``cbfpy``'s ``CBF.safety_filter`` on the continuous-time problem (its own Lie derivatives,
  ``relax_qp=False``: hard constraints, qpax backend, ``solver_tol=1e-6``), the exponential CBF
  of the obstacles as its relative-degree-2 barriers with ``alpha_2(h) = k h``.

Each entry also records the largest difference from opifex's control over the same states.
``qpax`` and ``cbfpy`` are optional (``uv pip install qpax cbfpy``, never a dependency): an
entry says "unavailable" with the import error when they are missing.
"""

import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.control import discretize

SOLVER_TOL = 1e-6


def time_calls(call: Callable[[int], Any], states: int, repeats: int) -> tuple[dict, list]:
    """``call(i)`` on state ``i``: the first call (compilation included) and the median / p90
    of ``repeats`` more, cycling through the states; also every state's output."""
    start = time.perf_counter()
    jax.block_until_ready(call(0))
    compile_seconds = time.perf_counter() - start
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call(k % states))
        times.append(time.perf_counter() - start)
    ms = 1e3 * np.asarray(times)
    stats = {
        "compile_seconds": compile_seconds,
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "calls": repeats,
        "states": states,
    }
    return stats, [call(i) for i in range(states)]


def _episode(safety: Any, x0: Any, nominal: Callable, bp: Any, steps: int, dt: float) -> tuple:
    step = discretize(safety.dynamics, dt)

    def advance(x: Any, _: Any) -> tuple:
        u_nom = nominal(x)
        u = safety.filter(x, u_nom, 0.0, None, bp).control
        return step(x, u, 0.0, None), (x, u_nom)

    _, (xs, us) = jax.jit(lambda x: jax.lax.scan(advance, x, None, length=steps))(x0)
    return list(xs), list(us)


def _problems(bench: Any, args: Any) -> dict[str, dict[str, Any]]:
    acc = bench.adaptive_cruise_control()
    centers = jnp.array([[4.0, 0.9], [4.2, -0.9], [6.5, 0.2]])
    radii = jnp.array([0.8, 0.8, 1.0])
    goal = jnp.array([10.0, 0.0])
    bp = tuple(
        {"center": centers[i], "radius": radii[i], "gain": args.obstacle_gain} for i in range(3)
    )
    acc_filters = {s: bench.acc_filter(args.alpha, s) for s in (True, False)}
    obstacle_filters = {s: bench.obstacle_filter(args, s) for s in (True, False)}
    acc_states = _episode(
        acc_filters[True],
        jnp.array([25.0, 80.0, bench.V_LEAD]),
        lambda x: bench.acc_nominal(x, acc.params, args.gain),
        None,
        200,
        bench.ACC_DT,
    )
    obstacle_states = _episode(
        obstacle_filters[True],
        jnp.array([0.0, 0.0, 0.0, 0.0]),
        lambda x: bench.obstacle_nominal(x, goal),
        bp,
        200,
        bench.OBS_DT,
    )
    return {
        "acc": {"states": acc_states, "barrier_params": None, "filters": acc_filters},
        "obstacles": {
            "states": obstacle_states,
            "barrier_params": bp,
            "centers": centers,
            "radii": radii,
            "filters": obstacle_filters,
        },
    }


def _qpax_step(safety: Any) -> Callable:
    import qpax

    m = safety.dynamics.control_dim
    lower, upper = jnp.asarray(safety.control_lower), jnp.asarray(safety.control_upper)
    weight = jnp.ones(m) if safety.control_weight is None else jnp.asarray(safety.control_weight)

    @jax.jit
    def step(x: Any, u_nom: Any, barrier_params: Any) -> Any:
        _, normals, offsets = safety.rows(x, 0.0, None, barrier_params)
        g_mat = jnp.concatenate([-normals, jnp.eye(m), -jnp.eye(m)])
        h_vec = jnp.concatenate([-offsets, upper, -lower])
        u, *_, converged, _ = qpax.solve_qp(
            jnp.diag(weight),
            -weight * u_nom,
            jnp.zeros((0, m)),
            jnp.zeros(0),
            g_mat,
            h_vec,
            solver_tol=SOLVER_TOL,
        )
        return u, converged

    return step


def _cbfpy_filter(name: str, problem: dict, bench: Any, args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cbfpy import CBF, CBFConfig

    safety = problem["filters"][False]
    model = safety.dynamics
    lower, upper = np.asarray(safety.control_lower), np.asarray(safety.control_upper)

    class Config(CBFConfig):
        def __init__(self) -> None:
            super().__init__(
                n=model.state_dim,
                m=model.control_dim,
                u_min=lower,
                u_max=upper,
                relax_qp=False,
                solver_tol=SOLVER_TOL,
                backend="qpax",
            )

        def f(self, z: Any) -> Any:
            return model.control_affine(z)[0]

        def g(self, z: Any) -> Any:
            return model.control_affine(z)[1]

        if name == "acc":

            def h_1(self, z: Any) -> Any:
                return jnp.array([z[1] - bench.HEADWAY * z[0]])

            def alpha(self, h: Any) -> Any:
                return args.alpha * h

        else:

            def h_2(self, z: Any) -> Any:
                offset = z[:2] - problem["centers"]
                return jnp.sum(offset**2, axis=1) - problem["radii"] ** 2

            def alpha(self, h: Any) -> Any:
                return args.obstacle_alpha * h

            def alpha_2(self, h: Any) -> Any:
                return args.obstacle_gain * h

    return CBF.from_config(Config())


def _baseline(baseline: str, name: str, problem: dict, bench: Any, args: Any, reference: dict):
    xs, us = problem["states"]
    bp, n = problem["barrier_params"], len(xs)
    if baseline == "qpax":
        step = _qpax_step(problem["filters"][True])
        stats, outs = time_calls(lambda i: step(xs[i], us[i], bp), n, args.timing_calls)
        extra = {"problem": "sample_and_hold", "converged_states": sum(bool(c) for _, c in outs)}
        return {
            **stats,
            **extra,
            "max_abs_diff_vs_opifex": _gap([u for u, _ in outs], reference[True]),
        }
    cbf = _cbfpy_filter(name, problem, bench, args)
    stats, outs = time_calls(lambda i: cbf.safety_filter(xs[i], us[i]), n, args.timing_calls)
    return {
        **stats,
        "problem": "continuous",
        "max_abs_diff_vs_opifex": _gap(outs, reference[False]),
    }


def _gap(us: list, reference: Any) -> float:
    return float(np.abs(np.stack([np.asarray(u) for u in us]) - reference).max())


def _opifex(safety: Any, problem: dict, calls: int) -> tuple[dict[str, Any], Any]:
    xs, us = problem["states"]
    bp = problem["barrier_params"]
    call = jax.jit(safety.filter)
    stats, results = time_calls(lambda i: call(xs[i], us[i], 0.0, None, bp), len(xs), calls)
    entry = {
        **stats,
        "rows": int(results[0].constraint.shape[0]),
        "states_with_active_rows": int(sum(bool(np.any(r.multipliers > 0)) for r in results)),
        "all_feasible": all(bool(r.feasible) for r in results),
    }
    return entry, np.stack([np.asarray(r.control) for r in results])


def timing(bench: Any, args: Any) -> dict[str, Any]:
    """Per-step times (see the module docstring); a failing baseline is recorded, not raised."""
    out: dict[str, Any] = {}
    for name, problem in _problems(bench, args).items():
        reference = {}
        for sampled, label in ((True, "sample_and_hold"), (False, "continuous")):
            entry, reference[sampled] = _opifex(
                problem["filters"][sampled], problem, args.timing_calls
            )
            out[f"opifex_{name}_{label}"] = entry
        for baseline in ("qpax", "cbfpy"):
            key = f"{baseline}_{name}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    __import__(baseline)
            except ImportError as error:
                out[key] = {"status": "unavailable", "error": str(error)}
                continue
            try:
                out[key] = {
                    "status": "ok",
                    **_baseline(baseline, name, problem, bench, args, reference),
                }
            except Exception as error:  # a crashing baseline is recorded, never dropped
                out[key] = {"status": "error", "error": repr(error)[:300]}
    return out
