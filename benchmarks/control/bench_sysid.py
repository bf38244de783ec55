"""System identification: SINDy, parametric least squares (single vs multiple shooting) and
neural ODEs, float64.

* **SINDy on Lotka-Volterra** ``x' = a x - b x y``, ``y' = -c y + d x y`` with ``a = 1``,
  ``b = 0.1``, ``c = 1.5``, ``d = 0.075``, from ``(10, 5)``, ``dt = 0.01``, 2001 samples
  (20 time units, about 2.5 periods; integrated with diffrax Dopri8 at ``rtol = atol = 1e-12``);
  degree-2 polynomial library, STLSQ threshold 0.05. Gaussian noise of 0 %, 0.1 %, 1 % and 5 %
  of each state's standard deviation; derivatives by 6th-order central differences or
  Savitzky-Golay (window 41, degree 3, the library on smoothed states). Per run: whether the
  support is exactly the true one and the largest coefficient error; ``--seeds`` noise draws.
* **Parametric pendulum fit** (``fit_parameters``, Levenberg-Marquardt): mass 1.2, length 0.8,
  damping 0.1 (gravity known) from one trajectory of ``--horizon`` periods of 0.05 s (default
  600: 30 s, large swings from ``theta = pi - 2.5``) under random torques, noise 0.01 on the
  states; per seed ``--guesses`` starting points drawn log-uniformly within a factor of the
  truth (``--spread``, default 5). Single vs multiple shooting (segments of 10 periods,
  continuity weight 10), both on the logarithms of the parameters (``positive=True``).
  A fit "recovers" the parameters when each is within 5 % of the truth. Held-out error: RMSE of
  the fitted model on 2 noise-free trajectories under other torques and starts. Time: the first
  call (compilation included) and the median of the later calls (steady state).
* **Neural ODE on the pendulum** (``fit_neural_ode``): an MLP 3-32-32-2 trained with Adam
  (``--node-steps`` steps, learning rate 3e-3) on 4 trajectories over the first 100 periods
  (5 s), single or multiple shooting (segments of 20); train RMSE over that window and
  extrapolation RMSE of the same rollouts over periods 101-200 (beyond the training window).
  Seeds draw the network and the torques.

Median and range over seeds. Run ``python benchmarks/control/bench_sysid.py [--quick]``; output:
tables on stdout, ``benchmarks/results/control_sysid.json`` and ``control_sysid.png``.
"""

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
from bench_common import print_progress, print_tables, run_metadata, write_outputs

from opifex.control import Dynamics, pendulum, simulate
from opifex.control._neural_ode import fit_neural_ode
from opifex.control._sindy import fit_sindy
from opifex.control._sysid import fit_parameters

LOG = logging.getLogger("opifex.benchmarks.control")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "control_sysid"
DISTRIBUTIONS = ("jax", "jaxlib", "diffrax", "optax", "opifex-core", "opifex-control")
Progress = Callable[[int, int, str], None]

LV = {"a": 1.0, "b": 0.1, "c": 1.5, "d": 0.075}
LV_DT, LV_SAMPLES, LV_THRESHOLD = 0.01, 2001, 0.05
NOISE_LEVELS = (0.0, 0.001, 0.01, 0.05)
DERIVATIVES = {
    "central-6": {"derivative": "central", "order": 6},
    "savgol-41-3": {"derivative": "savgol", "window": 41, "polyorder": 3},
}
TRUTH = {"mass": 1.2, "length": 0.8, "damping": 0.1}
DT, PENDULUM_NOISE, RECOVERED_RTOL = 0.05, 0.01, 0.05
SHOOTING = {
    "single": {"positive": True},
    "multiple": {"shooting": "multiple", "segment_length": 10, "positive": True},
}
NODE_TRAIN, NODE_TOTAL = 100, 200


def _stats(values: Sequence[float]) -> dict[str, float]:
    values = [v if np.isfinite(v) else np.inf for v in values]
    return {"median": float(np.median(values)), "min": min(values), "max": max(values)}


# -- SINDy ------------------------------------------------------------------------------------


def _lotka_volterra() -> tuple[jax.Array, np.ndarray]:
    a, b, c, d = LV["a"], LV["b"], LV["c"], LV["d"]
    model = Dynamics(
        lambda x, u, t, p: jnp.stack([a * x[0] - b * x[0] * x[1], -c * x[1] + d * x[0] * x[1]]),
        2,
        1,
    )
    options = {"method": "dopri8", "adaptive": True, "rtol": 1e-12, "atol": 1e-12}
    states = simulate(
        model, jnp.array([10.0, 5.0]), jnp.zeros((LV_SAMPLES - 1, 1)), LV_DT, **options
    )
    truth = np.zeros((6, 2))  # features 1, x0, x1, x0^2, x0 x1, x1^2
    truth[1, 0], truth[4, 0], truth[2, 1], truth[4, 1] = a, -b, -c, d
    return states, truth


def _sindy_runs(seeds: Sequence[int]) -> list[dict[str, Any]]:
    states, truth = _lotka_volterra()
    scale = jnp.std(states, axis=0)
    rows = []
    for noise in NOISE_LEVELS:
        for seed in seeds if noise > 0 else seeds[:1]:
            noisy = states + noise * scale * jax.random.normal(jax.random.key(seed), states.shape)
            for name, options in DERIVATIVES.items():
                start = time.perf_counter()
                model = fit_sindy(noisy, LV_DT, degree=2, threshold=LV_THRESHOLD, **options)
                seconds = time.perf_counter() - start
                coefficients = np.asarray(model.coefficients)
                rows.append(
                    {
                        "noise": noise,
                        "seed": seed,
                        "derivative": name,
                        "support_recovered": bool(np.all((coefficients != 0) == (truth != 0))),
                        "max_coefficient_error": float(np.max(np.abs(coefficients - truth))),
                        "equations": model.equations(4),
                        "seconds": seconds,
                    }
                )
    return rows


def _sindy_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for noise in NOISE_LEVELS:
        for name in DERIVATIVES:
            group = [r for r in rows if r["noise"] == noise and r["derivative"] == name]
            out.append(
                {
                    "noise": noise,
                    "derivative": name,
                    "runs": len(group),
                    "support_recovered": sum(r["support_recovered"] for r in group),
                    "max_coefficient_error": _stats([r["max_coefficient_error"] for r in group]),
                }
            )
    return out


# -- parametric fit ---------------------------------------------------------------------------


def _pendulum_trajectory(key: jax.Array, horizon: int, theta0: float) -> tuple:
    us = 0.5 * jax.random.normal(key, (horizon, 1))
    ys = simulate(pendulum(**TRUTH), jnp.array([jnp.pi - theta0, 0.0]), us, DT)
    return ys, us


def _parametric_runs(
    seeds: Sequence[int], guesses: int, horizon: int, spread: float, progress
) -> dict:
    model = pendulum()  # one object: one compiled program per shooting mode
    rows, timings = [], {name: [] for name in SHOOTING}
    for seed in seeds:
        key = jax.random.key(100 + seed)
        k_data, k_noise, k_guess, k_held = jax.random.split(key, 4)
        clean, us = _pendulum_trajectory(k_data, horizon, 2.5)
        noisy = clean + PENDULUM_NOISE * jax.random.normal(k_noise, clean.shape)
        held = [
            _pendulum_trajectory(k, horizon, t) for k, t in zip(*_held_out(k_held), strict=True)
        ]
        held_ys = jnp.stack([h[0] for h in held])
        held_us = jnp.stack([h[1] for h in held])
        factors = np.exp(np.asarray(jax.random.uniform(k_guess, (guesses, 3), minval=-1, maxval=1)))
        factors = factors ** np.log(spread)  # log-uniform within a factor `spread`
        for g in range(guesses):
            guess = {k: TRUTH[k] * float(f) for k, f in zip(sorted(TRUTH), factors[g], strict=True)}
            for name, options in SHOOTING.items():
                start = time.perf_counter()
                fit = fit_parameters(model, noisy, us, DT, guess, **options)
                timings[name].append(time.perf_counter() - start)
                errors = {k: abs(float(fit.params[k]) / TRUTH[k] - 1) for k in TRUTH}
                rows.append(
                    {
                        "seed": seed,
                        "guess": guess,
                        "shooting": name,
                        "status": fit.status_name,
                        "num_steps": int(fit.solve.num_steps),
                        "params": {k: float(v) for k, v in fit.params.items()},
                        "max_relative_error": max(errors.values()),
                        "recovered": max(errors.values()) < RECOVERED_RTOL,
                        "train_rmse": fit.train_rmse,
                        "held_out_rmse": fit.rmse(held_ys, held_us),
                        "max_defect": fit.max_defect,
                    }
                )
        progress(seed)
    return {"rows": rows, "timings": timings}


def _held_out(key: jax.Array) -> tuple[list[jax.Array], list[float]]:
    return list(jax.random.split(key, 2)), [1.0, 2.0]


def _parametric_summary(result: dict) -> dict[str, Any]:
    out = {}
    for name in SHOOTING:
        group = [r for r in result["rows"] if r["shooting"] == name]
        times = result["timings"][name]
        out[name] = {
            "runs": len(group),
            "recovered": sum(r["recovered"] for r in group),
            "converged": sum(r["status"] == "SUCCESS" for r in group),
            "held_out_rmse": _stats([r["held_out_rmse"] for r in group]),
            "max_relative_error": _stats([r["max_relative_error"] for r in group]),
            "num_steps": _stats([r["num_steps"] for r in group]),
            "first_call_seconds": times[0],
            "steady_state_seconds": float(np.median(times[1:])) if len(times) > 1 else None,
        }
    return out


# -- neural ODE -------------------------------------------------------------------------------


def _node_runs(seeds: Sequence[int], steps: int, progress) -> list[dict[str, Any]]:
    truth = pendulum()
    rows = []
    for seed in seeds:
        key_u, key_net = jax.random.split(jax.random.key(200 + seed))
        x0s = jnp.array([[jnp.pi + a, 0.0] for a in (-1.0, -0.5, 0.7, 1.2)])
        us = 0.5 * jax.random.normal(key_u, (4, NODE_TOTAL, 1))
        ys = jax.vmap(lambda x0, u: simulate(truth, x0, u, DT))(x0s, us)
        for name, options in (("single", {}), ("multiple", {"segment_length": 20})):
            shooting = "multiple" if options else "single"
            start = time.perf_counter()
            fit = fit_neural_ode(
                key_net,
                ys[:, : NODE_TRAIN + 1],
                us[:, :NODE_TRAIN],
                DT,
                hidden_sizes=(32, 32),
                learning_rate=3e-3,
                max_steps=steps,
                shooting=shooting,
                **options,
            )
            rows.append(
                {
                    "seed": seed,
                    "shooting": name,
                    "status": fit.status_name,
                    "train_rmse": fit.train_rmse,
                    "extrapolation_rmse": fit.rmse(ys, us, since=NODE_TRAIN + 1),
                    "seconds": time.perf_counter() - start,
                }
            )
        progress(seed)
    return rows


def _node_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name in ("single", "multiple"):
        group = [r for r in rows if r["shooting"] == name]
        out[name] = {
            key: _stats([r[key] for r in group])
            for key in ("train_rmse", "extrapolation_rmse", "seconds")
        }
    return out


# -- output -----------------------------------------------------------------------------------


def _cell(stats: dict[str, float], fmt: str = ".2e") -> str:
    if stats["median"] is None:
        return "failed"
    if stats["min"] == stats["max"]:
        return f"{stats['median']:{fmt}}"
    return f"{stats['median']:{fmt}} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def _render(results: dict[str, Any]) -> None:
    sindy = [
        [
            f"{100 * r['noise']:g} %",
            r["derivative"],
            f"{r['support_recovered']}/{r['runs']}",
            _cell(r["max_coefficient_error"]),
        ]
        for r in results["sindy"]["summary"]
    ]
    param = [
        [
            name,
            f"{s['recovered']}/{s['runs']}",
            f"{s['converged']}/{s['runs']}",
            _cell(s["held_out_rmse"]),
            _cell(s["num_steps"], ".0f"),
            f"{s['first_call_seconds']:.2f}",
            "-" if s["steady_state_seconds"] is None else f"{s['steady_state_seconds']:.3f}",
        ]
        for name, s in results["parametric"]["summary"].items()
    ]
    node = [
        [name, _cell(s["train_rmse"]), _cell(s["extrapolation_rmse"]), _cell(s["seconds"], ".1f")]
        for name, s in results["neural_ode"]["summary"].items()
    ]
    config = results["config"]
    sections = [
        (
            f"SINDy, Lotka-Volterra (threshold {LV_THRESHOLD}): median (range) over seeds",
            ["noise", "derivative", "support exact", "max |coef error|"],
            sindy,
        ),
        (
            f"pendulum, LM, horizon {config['horizon']}, noise {PENDULUM_NOISE}:"
            f" {len(config['seeds'])} seeds x {config['guesses']} guesses",
            [
                "shooting",
                "recovered",
                "SUCCESS",
                "held-out RMSE",
                "LM steps",
                "first s",
                "steady s",
            ],
            param,
        ),
        (
            f"neural ODE, pendulum, {config['node_steps']} Adam steps: median (range)",
            ["shooting", "train RMSE", "extrapolation RMSE", "seconds"],
            node,
        ),
    ]
    print_tables(sections, [], sys.stdout, left_columns=2)


def _plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for name in DERIVATIVES:
        rows = [r for r in results["sindy"]["summary"] if r["derivative"] == name]
        levels = [max(r["noise"], 1e-4) for r in rows]
        med = [r["max_coefficient_error"]["median"] for r in rows]
        axes[0].loglog(levels, med, "o-", label=name)
    axes[0].axhline(1e-3, color="grey", ls=":", label="1e-3")
    axes[0].set_xlabel("noise (fraction of std; 0 drawn at 1e-4)")
    axes[0].set_ylabel("max |coefficient error|")
    axes[0].set_title("SINDy, Lotka-Volterra", fontsize=9)
    axes[0].legend(fontsize=8)
    for i, (name, s) in enumerate(results["parametric"]["summary"].items()):
        rows = [r for r in results["parametric"]["rows"] if r["shooting"] == name]
        axes[1].scatter([i] * len(rows), [r["held_out_rmse"] for r in rows], alpha=0.6)
        axes[1].text(i, s["held_out_rmse"]["max"], f"{s['recovered']}/{s['runs']}", ha="center")
    axes[1].set_xticks([0, 1], list(results["parametric"]["summary"]))
    axes[1].set_yscale("log")
    axes[1].set_ylabel("held-out RMSE (recovered / runs above)")
    axes[1].set_title("pendulum LM fit from bad guesses", fontsize=9)
    names = list(results["neural_ode"]["summary"])
    for j, key in enumerate(("train_rmse", "extrapolation_rmse")):
        med = [results["neural_ode"]["summary"][n][key]["median"] for n in names]
        axes[2].bar(np.arange(len(names)) + 0.4 * j, med, 0.4, label=key.replace("_", " "))
    axes[2].set_xticks(np.arange(len(names)) + 0.2, names)
    axes[2].set_yscale("log")
    axes[2].set_title("neural ODE, pendulum (median over seeds)", fontsize=9)
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark (see the module docstring); 0 when it ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke-sized run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per randomised part")
    parser.add_argument("--guesses", type=int, default=4, help="starting points per seed")
    parser.add_argument("--spread", type=float, default=5.0, help="guesses within this factor")
    parser.add_argument("--horizon", type=int, default=600, help="pendulum periods of 0.05 s")
    parser.add_argument("--node-steps", type=int, default=1500, help="neural ODE Adam steps")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.guesses, args.horizon, args.node_steps = 1, 2, 200, 200
    jax.config.update("jax_enable_x64", True)
    logging.getLogger("opifex.control").setLevel(logging.ERROR)  # unconverged fits: counted
    progress = progress or print_progress
    seeds = list(range(args.seeds))
    total = 1 + 2 * len(seeds)
    done = [0]

    def tick(label: str) -> Callable[[Any], None]:
        def report(_: Any = None) -> None:
            done[0] += 1
            progress(done[0], total, label)

        return report

    start = time.perf_counter()
    sindy_rows = _sindy_runs(seeds)
    tick("SINDy")()
    parametric = _parametric_runs(
        seeds, args.guesses, args.horizon, args.spread, tick("pendulum fit")
    )
    node_rows = _node_runs(seeds, args.node_steps, tick("neural ODE"))
    results = {
        "benchmark": NAME,
        "meta": run_metadata(DISTRIBUTIONS),
        "config": {
            "seeds": seeds,
            "guesses": args.guesses,
            "guess_spread_factor": args.spread,
            "horizon": args.horizon,
            "node_steps": args.node_steps,
            "lotka_volterra": {**LV, "dt": LV_DT, "samples": LV_SAMPLES, "x0": [10.0, 5.0]},
            "sindy_threshold": LV_THRESHOLD,
            "noise_levels": list(NOISE_LEVELS),
            "derivatives": DERIVATIVES,
            "pendulum_truth": TRUTH,
            "dt": DT,
            "pendulum_noise": PENDULUM_NOISE,
            "recovered_rtol": RECOVERED_RTOL,
            "shooting": SHOOTING,
            "node_train_periods": NODE_TRAIN,
            "node_total_periods": NODE_TOTAL,
            "quick": args.quick,
        },
        "sindy": {"rows": sindy_rows, "summary": _sindy_summary(sindy_rows)},
        "parametric": {**parametric, "summary": _parametric_summary(parametric)},
        "neural_ode": {"rows": node_rows, "summary": _node_summary(node_rows)},
        "total_seconds": time.perf_counter() - start,
    }
    write_outputs(
        results, args.output_dir, NAME, render=_render, plot=None if args.no_plot else _plot
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
