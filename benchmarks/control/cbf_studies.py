"""The closed-loop studies of the CBF benchmark (``bench_cbf.py``): models, filters, starts.

Cruise control (Ames et al., CDC 2014) and three-disc obstacle avoidance with a double
integrator; each study is a ``vmap`` over random episodes, the plant integrated with RK4 at
fine steps and the filter's control held over each period. ``h`` is checked at every fine step.
"""

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.control import adaptive_cruise_control, discretize, double_integrator
from opifex.control._barriers import (
    circular_obstacle_barrier,
    circular_obstacle_bound,
    time_headway_barrier,
)
from opifex.control._safety import SafetyFilter

GRAVITY, V_LEAD, V_DESIRED, HEADWAY = 9.81, 13.89, 24.0, 1.8
ACC_DT, ACC_STEPS, SPEED_RANGE = 0.1, 300, (0.0, 35.0)
OBS_DT, OBS_STEPS, MAX_ACCEL, NUM_OBSTACLES = 0.05, 400, 2.0, 3
VIOLATION = -1e-3
ACC_STARTS = (
    "candidates: speed U[10, 30] m/s, gap U[0, 150] m, lead speed 13.89 m/s; excluded: unsafe "
    "(h < 0) and provably unrecoverable (full braking, which gives the lowest speed and so the "
    "highest h at every later time of any admissible control, reaches h < 0 within 30 s); the "
    "first --episodes valid candidates in draw order are used"
)
OBSTACLE_STARTS = (
    "start (0, U[-1, 1]) at rest, goal (10, U[-1, 1]), 3 disc centres (U[3, 7], U[-1.5, 1.5]), "
    "radii U[0.5, 1]; excluded: start or goal inside or on a disc (h <= 0; none can be with "
    "these ranges); a start at rest outside every disc has h2 = k h > 0, inside the certified set"
)


def _summary(h: Any, infeasible: Any) -> dict[str, Any]:
    """``h``: (episodes, control steps) minimum of ``h`` over each period's fine steps."""
    h, infeasible = np.asarray(h), np.asarray(infeasible)
    min_h = h.min(axis=1)
    return {
        "violating_episodes": int(np.sum(min_h < VIOLATION)),
        "violating_control_periods": int(np.sum(h < VIOLATION)),
        "min_h": float(min_h.min()),
        "median_episode_min_h": float(np.median(min_h)),
        "infeasible_steps": int(infeasible.sum()),
        "episodes_with_infeasible_steps": int(infeasible.any(axis=1).sum()),
    }


def _traces(h: Any, episodes: int = 6, every: int = 5) -> list[list[float]]:
    return np.round(np.asarray(h)[:episodes, ::every], 4).tolist()


# -- adaptive cruise control ---------------------------------------------------------------


def acc_intersample_bound(params: dict[str, float], alpha: float) -> float:
    """``M >= |d^2 psi / dt^2|`` over a period for the headway barrier, speeds in SPEED_RANGE.

    ``psi = dh/dt + alpha h`` with ``h = gap - T_h v``, lead speed constant, ``u`` held:
    ``d^2 psi/dt^2 = -(1 + alpha T_h) v'' - T_h v''' - alpha v'`` with ``m v' = u - F(v)``,
    ``v'' = -F'(v) v' / m``, ``v''' = -(F''(v) v'^2 + F'(v) v'') / m``; each is bounded with
    ``|u| <= 0.3 m g`` and the largest ``|F|``, ``F'`` over the speed range.
    """
    mass, f0, f1, f2 = (params[k] for k in ("mass", "f0", "f1", "f2"))
    v_hi = SPEED_RANGE[1]
    accel = (0.3 * mass * GRAVITY + f0 + f1 * v_hi + f2 * v_hi**2) / mass
    slope = f1 + 2 * f2 * v_hi
    jerk = slope * accel / mass
    snap = (2 * f2 * accel**2 + slope * jerk) / mass
    return (1 + alpha * HEADWAY) * jerk + HEADWAY * snap + alpha * accel


def acc_filter(alpha: float, sampled: bool) -> SafetyFilter:
    """The cruise-control filter (with the sample-and-hold rows when ``sampled``)."""
    acc = adaptive_cruise_control()
    extra = {}
    if sampled:
        extra = {"period": ACC_DT, "intersample_bound": acc_intersample_bound(acc.params, alpha)}
    return SafetyFilter(acc, [time_headway_barrier(HEADWAY)], alpha=alpha, **extra)


def acc_nominal(x: jax.Array, params: dict, gain: float) -> jax.Array:
    """A proportional speed tracker plus the drag."""
    drag = params["f0"] + params["f1"] * x[0] + params["f2"] * x[0] ** 2
    return jnp.array([params["mass"] * gain * (V_DESIRED - x[0]) + drag])


def _acc_rollout(control: Callable, disturbance: bool, substeps: int) -> Callable:
    """``episode(x0) -> (min h per period, infeasible per period, speeds)``."""
    acc = adaptive_cruise_control()
    fine = discretize(acc, ACC_DT / substeps)

    def episode(x0: jax.Array) -> tuple[jax.Array, ...]:
        def period(x: jax.Array, k: jax.Array) -> tuple[jax.Array, tuple]:
            u, infeasible = control(x)

            def plant(x: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
                t = (k * substeps + j) * ACC_DT / substeps
                braking = disturbance & (t >= 5.0) & (t < 8.0)
                params = {**acc.params, "lead_accel": jnp.where(braking, -0.3 * GRAVITY, 0.0)}
                x = fine(x, u, t, params)
                return x, jnp.stack([x[1] - HEADWAY * x[0], x[0]])

            x, out = jax.lax.scan(plant, x, jnp.arange(substeps))
            return x, (out[:, 0].min(), infeasible, out[:, 1].min(), out[:, 1].max())

        return jax.lax.scan(period, x0, jnp.arange(ACC_STEPS))[1]

    return jax.jit(jax.vmap(episode))


def acc_starts(seed: int, episodes: int, substeps: int) -> tuple[jax.Array, dict[str, int]]:
    """Random starts (``ACC_STARTS``) and the counts of those excluded."""
    acc = adaptive_cruise_control()
    candidates = 3 * episodes
    k1, k2 = jax.random.split(jax.random.key(seed))
    speed = jax.random.uniform(k1, (candidates,), minval=10.0, maxval=30.0)
    gap = jax.random.uniform(k2, (candidates,), minval=0.0, maxval=150.0)
    x0 = jnp.stack([speed, gap, jnp.full((candidates,), V_LEAD)], axis=1)
    brake = jnp.array([acc.control_lower[0]])
    h_brake = _acc_rollout(lambda x: (brake, False), False, substeps)(x0)[0].min(axis=1)
    h0 = np.asarray(gap - HEADWAY * speed)
    unsafe, unrecoverable = h0 < 0, (h0 >= 0) & (np.asarray(h_brake) < 0)
    valid = np.flatnonzero(~unsafe & ~unrecoverable)
    if valid.size < episodes:
        raise RuntimeError(f"only {valid.size} valid starts of {candidates} candidates")
    drawn = int(valid[episodes - 1]) + 1  # candidates examined to find `episodes` valid ones
    counts = {
        "candidates_drawn": drawn,
        "excluded_unsafe": int(unsafe[:drawn].sum()),
        "excluded_unrecoverable": int(unrecoverable[:drawn].sum()),
    }
    return x0[valid[:episodes]], counts


def acc_study(
    x0: jax.Array, args: argparse.Namespace, alpha: float, sampled: bool, disturbance: bool
) -> dict[str, Any]:
    """Closed-loop episodes of cruise control from the starts ``x0``."""
    safety = acc_filter(alpha, sampled)
    params = safety.dynamics.params

    def control(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        result = safety.filter(x, acc_nominal(x, params, args.gain))
        return result.control, ~result.feasible

    start = time.perf_counter()
    h, infeasible, v_min, v_max = jax.block_until_ready(
        _acc_rollout(control, disturbance, args.substeps)(x0)
    )
    return {
        "alpha": alpha,
        "sample_and_hold_condition": sampled,
        "intersample_bound": acc_intersample_bound(params, alpha) if sampled else None,
        "lead_braking": disturbance,
        "episodes": int(x0.shape[0]),
        **_summary(h, infeasible),
        "speed_range_seen": [float(np.min(v_min)), float(np.max(v_max))],
        "seconds_incl_compile": time.perf_counter() - start,
        "h_traces_every_0.5s": _traces(h),
    }


# -- obstacle avoidance --------------------------------------------------------------------


def obstacle_filter(args: argparse.Namespace, sampled: bool) -> SafetyFilter:
    """The filter for NUM_OBSTACLES discs (their parameters are passed per episode)."""
    model = double_integrator(2, max_accel=MAX_ACCEL)
    barriers = [circular_obstacle_barrier([5.0, 0.0], 1.0, args.obstacle_gain)] * NUM_OBSTACLES
    extra = {}
    if sampled:
        bound = circular_obstacle_bound(args.obstacle_alpha, MAX_ACCEL, OBS_DT)
        extra = {"period": OBS_DT, "intersample_bound": [bound] * NUM_OBSTACLES}
    return SafetyFilter(model, barriers, alpha=args.obstacle_alpha, **extra)


def obstacle_nominal(x: jax.Array, goal: jax.Array) -> jax.Array:
    """A saturated PD law to the goal."""
    return jnp.clip(1.0 * (goal - x[:2]) - 1.5 * x[2:], -MAX_ACCEL, MAX_ACCEL)


def obstacle_tasks(seed: int, num: int) -> dict[str, jax.Array]:
    """Random tasks (``OBSTACLE_STARTS``)."""
    keys = jax.random.split(jax.random.key(seed), 5)
    y0 = jax.random.uniform(keys[0], (num,), minval=-1, maxval=1)
    goal_y = jax.random.uniform(keys[1], (num,), minval=-1, maxval=1)
    cx = jax.random.uniform(keys[2], (num, NUM_OBSTACLES), minval=3.0, maxval=7.0)
    cy = jax.random.uniform(keys[3], (num, NUM_OBSTACLES), minval=-1.5, maxval=1.5)
    radii = jax.random.uniform(keys[4], (num, NUM_OBSTACLES), minval=0.5, maxval=1.0)
    return {
        "start": jnp.stack([jnp.zeros(num), y0], axis=1),
        "goal": jnp.stack([jnp.full((num,), 10.0), goal_y], axis=1),
        "centers": jnp.stack([cx, cy], axis=-1),
        "radii": radii,
    }


def obstacle_study(args: argparse.Namespace, sampled: bool) -> dict[str, Any]:
    """Closed-loop episodes of obstacle avoidance."""
    safety = obstacle_filter(args, sampled)
    fine = discretize(safety.dynamics, OBS_DT / args.substeps)
    tasks = obstacle_tasks(args.seed + 7, args.episodes)

    def distance(x: jax.Array, task: dict) -> jax.Array:
        offset = x[:2] - task["centers"]
        return jnp.min(jnp.sum(offset**2, axis=1) - task["radii"] ** 2)

    inside = jax.vmap(
        lambda t: (
            jnp.minimum(distance(jnp.r_[t["start"], 0, 0], t), distance(jnp.r_[t["goal"], 0, 0], t))
            <= 0
        )
    )(tasks)
    keep = np.flatnonzero(~np.asarray(inside))[: args.episodes]
    tasks = jax.tree.map(lambda a: a[keep], tasks)

    def episode(task: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
        barrier_params = tuple(
            {"center": task["centers"][i], "radius": task["radii"][i], "gain": args.obstacle_gain}
            for i in range(NUM_OBSTACLES)
        )

        def period(x: jax.Array, _: jax.Array) -> tuple[jax.Array, tuple]:
            result = safety.filter(x, obstacle_nominal(x, task["goal"]), 0.0, None, barrier_params)

            def plant(x: jax.Array, _: jax.Array) -> tuple[jax.Array, jax.Array]:
                x = fine(x, result.control, 0.0, None)
                return x, distance(x, task)

            x_next, h = jax.lax.scan(plant, x, jnp.arange(args.substeps))
            return x_next, (jnp.min(h), ~result.feasible, x_next)

        x0 = jnp.concatenate([task["start"], jnp.zeros(2)])
        return jax.lax.scan(period, x0, jnp.arange(OBS_STEPS))[1]

    start = time.perf_counter()
    h, infeasible, states = jax.block_until_ready(jax.jit(jax.vmap(episode))(tasks))
    states = np.asarray(states)
    reached = np.linalg.norm(states[:, -1, :2] - np.asarray(tasks["goal"]), axis=1) < 0.2
    return {
        "alpha": args.obstacle_alpha,
        "ecbf_gain_k": args.obstacle_gain,
        "sample_and_hold_condition": sampled,
        "episodes": len(keep),
        "excluded_start_or_goal_in_disc": int(np.asarray(inside).sum()),
        **_summary(h, infeasible),
        "goal_reached_fraction": float(reached.mean()),
        "max_speed": float(np.linalg.norm(states[:, :, 2:], axis=-1).max()),
        "seconds_incl_compile": time.perf_counter() - start,
        "examples": [
            {
                "path": np.round(states[i, ::4, :2], 3).tolist(),
                "centers": np.asarray(tasks["centers"][i]).tolist(),
                "radii": np.asarray(tasks["radii"][i]).tolist(),
                "goal": np.asarray(tasks["goal"][i]).tolist(),
            }
            for i in (int(np.argmax(reached)), int(np.argmin(reached)))  # reached, stuck
        ],
    }
