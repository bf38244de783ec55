"""``opifex mpc``: swing a pendulum or a cart-pole up with MPC in closed loop, and plot it.

The task is ``opifex.control.swing_up(system)`` (hanging at rest to upright, control bounded);
the controller is ``MPCController`` (iLQR, a fixed iteration budget per control period, the
plan warm-started by shifting); the plant is the true model integrated more finely (RK4 with
8 substeps per period). With ``identify``, the controller's model is first fitted to noisy
simulated trajectories by ``fit_parameters`` (multiple shooting, Levenberg-Marquardt) from a
wrong guess, and MPC runs on the identified model against the true plant.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

PLANT_SUBSTEPS = 8
HELD_TOLERANCE = 0.05  # rad
# the fit's data: 4 noisy trajectories of 150 periods; held-out: 8 of 12 periods (1 s for the
# pendulum: a chaotic swing's error grows with the horizon whatever the model)
IDENTIFY = {
    "trajectories": 4,
    "periods": 150,
    "heldout_trajectories": 8,
    "heldout_periods": 12,
    "noise": 0.01,
    "segment": 10,
    "spread": 2.0,
}


@dataclasses.dataclass(frozen=True)
class SwingUpReport:
    """What ``run_swing_up`` measured.

    Attributes:
        system: ``"pendulum"`` or ``"cartpole"``.
        dt: the control period (s).
        state_names: the state's labels.
        states: the closed-loop states, ``(N + 1, n)``.
        controls: the applied controls, ``(N, m)``.
        iterations: iLQR iterations per period.
        statuses: each period's ``SolveStatus`` name.
        step_ms: wall time of each ``controller.step`` call (ms; dispatch included).
        compile_seconds: the first call's compilation.
        max_control: the control bound.
        angle_index: where the pole angle sits in the state.
        identification: the fit (true, guessed and fitted parameters, errors) or ``None``.
    """

    system: str
    dt: float
    state_names: tuple[str, ...]
    states: np.ndarray
    controls: np.ndarray
    iterations: np.ndarray
    statuses: list[str]
    step_ms: np.ndarray
    compile_seconds: float
    max_control: float
    angle_index: int
    identification: dict[str, Any] | None

    @property
    def angles(self) -> np.ndarray:
        """The pole angle from upright, wrapped to ``[-pi, pi)``."""
        from opifex.control import wrap_angle

        return np.asarray(wrap_angle(self.states[:, self.angle_index]))

    @property
    def held_from(self) -> float | None:
        """The time (s) from which ``|angle| < 0.05`` to the end; ``None`` if never."""
        outside = np.flatnonzero(np.abs(self.angles) >= HELD_TOLERANCE)
        first = 0 if outside.size == 0 else int(outside[-1]) + 1
        return None if first >= self.angles.size else first * self.dt


def _random_trajectories(system: str, seed: int, count: int, periods: int) -> tuple[Any, Any]:
    """Noisy trajectories of the true model under random bounded controls."""
    import jax
    import jax.numpy as jnp

    from opifex.control import SWING_UPS, simulate, swing_up_model

    task, model = SWING_UPS[system], swing_up_model(system)
    rng = np.random.default_rng(seed)
    starts = np.zeros((count, model.state_dim))
    starts[:, task.angle_index] = rng.uniform(-math.pi, math.pi, count)
    controls = rng.uniform(-task.max_control, task.max_control, (count, periods, 1))
    run = jax.vmap(
        lambda x0, us: simulate(model, x0, us, task.dt, method="rk4", substeps=PLANT_SUBSTEPS)
    )
    states = np.asarray(run(jnp.asarray(starts), jnp.asarray(controls)))
    states = states + IDENTIFY["noise"] * rng.standard_normal(states.shape)
    return states, controls


def identify(system: str, seed: int = 0) -> dict[str, Any]:
    """Fit the model's parameters (all but gravity) to noisy data from a wrong guess.

    Returns:
        ``true``, ``guess`` and ``fitted`` parameters, the relative errors, the fit's status,
        and the held-out RMSE of the fitted and of the guessed model on fresh noisy data.

    Example:
        >>> fit = identify("pendulum")
        >>> fit["status"], max(fit["relative_error"].values()) < 0.05
        ('SUCCESS', True)
    """
    from opifex.control import SWING_UPS, fit_parameters, swing_up_model, trajectory_rmse

    task, truth = SWING_UPS[system], swing_up_model(system).params
    rng = np.random.default_rng(seed + 1000)
    spread = math.log(IDENTIFY["spread"])
    guess = {k: v * math.exp(rng.uniform(-spread, spread)) for k, v in truth.items()}
    guess.pop("gravity")
    states, controls = _random_trajectories(
        system, seed, IDENTIFY["trajectories"], IDENTIFY["periods"]
    )
    fit = fit_parameters(
        swing_up_model(system),
        states,
        controls,
        task.dt,
        guess,
        shooting="multiple",
        segment_length=IDENTIFY["segment"],
        positive=True,
    )
    fitted = {k: float(v) for k, v in fit.params.items()}
    test_states, test_controls = _random_trajectories(
        system, seed + 1, IDENTIFY["heldout_trajectories"], IDENTIFY["heldout_periods"]
    )
    return {
        "true": {k: truth[k] for k in guess},
        "guess": guess,
        "fitted": fitted,
        "relative_error": {k: abs(fitted[k] / truth[k] - 1) for k in guess},
        "status": fit.status_name,
        "heldout_rmse": fit.rmse(test_states, test_controls),
        "heldout_rmse_of_guess": trajectory_rmse(
            swing_up_model(system, **guess), test_states, test_controls, task.dt
        ),
    }


def run_swing_up(
    system: str,
    *,
    seconds: float = 12.0,
    budget: int = 10,
    identified: bool = False,
    seed: int = 0,
    progress: Any = None,
) -> SwingUpReport:
    """Run the closed-loop swing-up of ``system`` for ``seconds``.

    Args:
        system: ``"pendulum"`` or ``"cartpole"``.
        seconds: the episode's length.
        budget: iLQR iterations per control period.
        identified: control with a model fitted to noisy data (``identify``) instead of the
            true one.
        seed: the identification's guess and data.
        progress: ``progress(done, total, label)``, called per stage.

    Example:
        >>> report = run_swing_up("pendulum", seconds=6.0)
        >>> report.held_from is not None and report.held_from < 5.0
        True
    """
    import jax
    import jax.numpy as jnp

    from opifex.control import SWING_UPS, MPCController, discretize, swing_up, swing_up_model
    from opifex.core import SolveStatus

    task = SWING_UPS[system]
    tick = progress or (lambda *args: None)
    stages = 3 if identified else 2
    identification = None
    params: dict[str, float] = {}
    if identified:
        identification = identify(system, seed)
        params = identification["fitted"]
        tick(1, stages, "identified the model")
    problem, x0 = swing_up(system, **params)
    true_model = swing_up_model(system)
    plant = jax.jit(discretize(true_model, task.dt, substeps=PLANT_SUBSTEPS))
    controller = MPCController(problem, max_steps=budget)
    start = time.perf_counter()
    controller.step(x0).block_until_ready()
    compile_seconds = time.perf_counter() - start
    controller.reset()
    tick(stages - 1, stages, "compiled the controller")
    periods = max(1, round(seconds / task.dt))
    x, states, controls, iterations, statuses, step_ms = x0, [x0], [], [], [], []
    for period in range(periods):
        begin = time.perf_counter()
        u = controller.step(x).block_until_ready()
        step_ms.append(1e3 * (time.perf_counter() - begin))
        iterations.append(int(controller.state.num_steps))
        statuses.append(SolveStatus(int(controller.state.status)).name)
        x = plant(x, u, jnp.asarray(period * task.dt))
        states.append(x)
        controls.append(u)
    tick(stages, stages, "closed loop")
    return SwingUpReport(
        system=system,
        dt=task.dt,
        state_names=tuple(true_model.state_names),
        states=np.asarray(jnp.stack(states), np.float64),
        controls=np.asarray(jnp.stack(controls), np.float64),
        iterations=np.asarray(iterations),
        statuses=statuses,
        step_ms=np.asarray(step_ms),
        compile_seconds=compile_seconds,
        max_control=task.max_control,
        angle_index=task.angle_index,
        identification=identification,
    )


def render(report: SwingUpReport, console: Console) -> None:
    """Print the identification (if any) and the closed loop's outcome and timings."""
    fit = report.identification
    if fit is not None:
        table = Table(title="Identified from noisy data", box=box.SIMPLE_HEAD)
        for column in ("parameter", "true", "guess", "fitted", "rel. error"):
            table.add_column(column, justify="left" if column == "parameter" else "right")
        for name, true in fit["true"].items():
            table.add_row(
                name,
                f"{true:.4g}",
                f"{fit['guess'][name]:.4g}",
                f"{fit['fitted'][name]:.4g}",
                f"{fit['relative_error'][name]:.1e}",
            )
        console.print(table)
        console.print(
            f"fit {fit['status']}; held-out RMSE {fit['heldout_rmse']:.4f} "
            f"(the guess: {fit['heldout_rmse_of_guess']:.4f})"
        )
    angles = report.angles
    held = report.held_from
    statuses = {name: report.statuses.count(name) for name in dict.fromkeys(report.statuses)}
    lines = [
        f"{report.system} swing-up, {len(report.controls)} periods of {report.dt} s, "
        f"|u| <= {report.max_control:g}: "
        + (
            f"upright (|angle| < {HELD_TOLERANCE}) from {held:.2f} s to the end"
            if held is not None
            else f"NOT held upright (final |angle| {abs(angles[-1]):.3f} rad)"
        ),
        f"controller: compile {report.compile_seconds:.1f} s, step median "
        f"{np.median(report.step_ms):.2f} ms (p90 {np.percentile(report.step_ms, 90):.2f} ms, "
        f"period {1e3 * report.dt:.0f} ms), iterations median "
        f"{np.median(report.iterations):.0f} / max {report.iterations.max()}",
        "statuses: " + ", ".join(f"{k} {v}" for k, v in statuses.items()),
    ]
    for line in lines:
        console.print(line)


def plot(report: SwingUpReport, path: Path) -> None:
    """Angle, the other states and the control against time, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.arange(len(report.states)) * report.dt
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(times, report.angles)
    axes[0].axhspan(-HELD_TOLERANCE, HELD_TOLERANCE, color="0.85")
    axes[0].set_ylabel("angle from upright (rad)")
    title = f"opifex mpc {report.system}"
    if report.identification is not None:
        title += " (model identified from noisy data)"
    axes[0].set_title(title)
    for i, name in enumerate(report.state_names):
        if i != report.angle_index:
            axes[1].plot(times, report.states[:, i], label=name)
    axes[1].legend(fontsize=8)
    axes[1].set_ylabel("other states")
    axes[2].step(times[:-1], report.controls[:, 0], where="post")
    for bound in (-report.max_control, report.max_control):
        axes[2].axhline(bound, color="0.6", ls="--", lw=0.8)
    axes[2].set(xlabel="time (s)", ylabel="control")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
