"""Hand-designed baselines for learned optimisers, with learning rates tuned on training tasks.

Baselines (``BASELINES``):

* ``"adam"``: ``optax.adam(lr)`` (``b1=0.9, b2=0.999, eps=1e-8``), ``lr`` tuned;
* ``"sgd"``: plain gradient descent ``optax.sgd(lr)``, ``lr`` tuned;
* ``"momentum"``: heavy-ball SGD ``optax.sgd(lr, momentum=0.9)``, ``lr`` tuned;
* ``"lbfgs"``: ``opifex.second_order.create_lbfgs_optimizer()`` (memory 10, More-Thuente
  line search): nothing to tune. A step is an iteration, which costs every evaluation of its
  line search (the runs' ``trace["num_fun_evals"]`` counts them);
* ``"ista"`` / ``"fista"``: proximal gradient and its accelerated form (Beck and Teboulle,
  2009) with step ``1 / ||A||_2^2``, from ``opifex.core.families``; only for a
  ``LassoFamily``, whose non-smooth ``l1`` term they handle exactly. A step is one iteration
  (one gradient of the smooth part), and the evaluation count of step ``k`` is ``k + 1`` as for
  a first-order optimiser.

Tuning (``tune_learning_rate``) is a grid search on *training* tasks; evaluate the tuned baseline
on held-out tasks (other keys, e.g. from ``split_task_keys``). The score of a learning rate is
the mean over the training tasks of the final loss, the quantity at which the speedup of a
learned optimiser is measured (its target is the baseline's final loss); a learning rate with
which any training task diverges (a NaN / inf loss anywhere in its curve, or a final loss above
the first: ``diverged_mask``) scores ``inf``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import SolveResult, TaskFamily, check_choice, check_int_at_least
from opifex.core.families import LassoFamily, fista, ista
from opifex.l2o._evaluate import (
    check_family,
    check_task_keys,
    diverged_mask,
    run_optimizer,
    run_tasks,
    task_and_params,
)
from opifex.second_order import create_lbfgs_optimizer

logger = logging.getLogger(__name__)

TUNABLE_BASELINES = ("adam", "momentum", "sgd")
PROXIMAL_BASELINES = ("fista", "ista")
BASELINES = (*TUNABLE_BASELINES, "lbfgs", *PROXIMAL_BASELINES)
# 1e-4 .. 10, three points per decade
# Adam's best rate on the unit-scale quadratic family is 1.0: the grid must reach past it
DEFAULT_LEARNING_RATES = tuple(float(lr) for lr in np.logspace(-4.0, 1.0, 16))
MOMENTUM = 0.9


class TuningResult(NamedTuple):
    """The grid search of ``tune_learning_rate``.

    Attributes:
        name: the baseline.
        learning_rate: the best learning rate of the grid.
        grid: the learning rates tried, increasing.
        scores: per learning rate, the mean final training loss (``inf``: some task diverged).
        num_diverged: per learning rate, how many training tasks diverged.
    """

    name: str
    learning_rate: float
    grid: tuple[float, ...]
    scores: tuple[float, ...]
    num_diverged: tuple[int, ...]


def _make(name: str, learning_rate: Any) -> optax.GradientTransformationExtraArgs:
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=MOMENTUM)
    return optax.sgd(learning_rate)


@functools.lru_cache(maxsize=256)
def _optimizer(name: str, learning_rate: float | None) -> optax.GradientTransformationExtraArgs:
    # one object per (name, learning rate), so that runs with it reuse their compilation
    return create_lbfgs_optimizer() if name == "lbfgs" else _make(name, learning_rate)


def _check_learning_rate(name: str, learning_rate: Any) -> float | None:
    check_choice(name, BASELINES, "name")
    if name not in TUNABLE_BASELINES:
        if learning_rate is not None:
            raise ValueError(f"baseline {name!r} takes no learning rate, got {learning_rate!r}")
        return None
    if learning_rate is None:
        raise ValueError(f"baseline {name!r} needs a learning_rate")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float | np.number):
        raise TypeError(f"learning_rate must be a number, got {type(learning_rate).__name__}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    return float(learning_rate)


def baseline_optimizer(
    name: str, learning_rate: float | None = None
) -> optax.GradientTransformationExtraArgs:
    """The optax optimiser of baseline ``name`` (see the module docstring).

    Args:
        name: ``"adam"``, ``"sgd"``, ``"momentum"`` (need ``learning_rate``) or ``"lbfgs"``.
        learning_rate: > 0, for the tunable baselines only.

    Returns:
        The same object for the same arguments (so that runs with it are compiled once).

    Raises:
        ValueError: unknown name, ``"ista"`` / ``"fista"`` (not optax optimisers: use
            ``run_baseline``), a missing or unexpected learning rate.

    Example:
        >>> baseline_optimizer("adam", 1e-2) is baseline_optimizer("adam", 1e-2)
        True
    """
    learning_rate = _check_learning_rate(name, learning_rate)
    if name in PROXIMAL_BASELINES:
        raise ValueError(f"{name!r} is not an optax optimiser: run it with run_baseline")
    return _optimizer(name, learning_rate)


@functools.partial(jax.jit, static_argnames=("name", "family", "num_steps"))
def _run_proximal(name: str, family: LassoFamily, task_keys: jax.Array, num_steps: int) -> Any:
    tasks, params, _ = jax.vmap(lambda key: task_and_params(family, key))(task_keys)
    method = fista if name == "fista" else ista
    result = jax.vmap(lambda a, b, x0: method(a, b, family.l1_penalty, num_steps, x0))(
        tasks.matrix, tasks.target, params
    )
    # one gradient of the smooth part per iteration, as a first-order optimiser's evaluations
    counts = jnp.arange(1, num_steps + 2, dtype=result.trace["value"].dtype)
    counts = jnp.where(jnp.isnan(result.trace["value"]), jnp.nan, counts)
    return result._replace(trace={**result.trace, "num_fun_evals": counts})


def run_baseline(
    name: str,
    family: TaskFamily,
    task_keys: jax.Array,
    num_steps: int,
    learning_rate: float | None = None,
) -> SolveResult:
    """Run baseline ``name`` on the tasks of ``task_keys``, as ``run_optimizer`` does.

    Args:
        name: one of ``BASELINES``.
        family: a hashable ``TaskFamily`` (a ``LassoFamily`` for ``"ista"`` / ``"fista"``).
        task_keys: one key per task (the same tasks and starts as ``run_optimizer``).
        num_steps: steps (>= 1); iterations for L-BFGS, ISTA and FISTA.
        learning_rate: for ``"adam"``, ``"sgd"`` and ``"momentum"`` only.

    Returns:
        A ``SolveResult`` batched over the tasks (``run_optimizer``'s layout: loss curves in
        ``trace["value"]``, evaluation counts in ``trace["num_fun_evals"]``).

    Raises:
        ValueError: unknown name, a missing or unexpected learning rate, ISTA / FISTA on a
            family that is not a ``LassoFamily``.

    Example:
        >>> import jax
        >>> from opifex.core.families import LassoFamily
        >>> keys = jax.random.split(jax.random.key(0), 2)
        >>> result = run_baseline("fista", LassoFamily(num_rows=10, dimension=20), keys, 50)
        >>> result.trace["value"].shape, int(result.trace["num_fun_evals"][0, -1])
        ((2, 51), 51)
    """
    learning_rate = _check_learning_rate(name, learning_rate)
    if name not in PROXIMAL_BASELINES:
        return run_optimizer(_optimizer(name, learning_rate), family, task_keys, num_steps)
    if not isinstance(family, LassoFamily):
        raise ValueError(
            f"baseline {name!r} solves LASSO problems only: family must be a LassoFamily, got "
            f"{type(family).__name__}"
        )
    check_int_at_least(num_steps, 1, "num_steps")
    return _run_proximal(name, family, check_task_keys(task_keys), num_steps)


@functools.partial(jax.jit, static_argnames=("name", "family", "num_steps"))
def _final_losses(
    name: str, family: TaskFamily, task_keys: jax.Array, num_steps: int, grid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Final losses and divergence flags, shape ``(len(grid), num_tasks)``: one compilation."""

    def run(learning_rate: jax.Array) -> tuple[jax.Array, jax.Array]:
        result = run_tasks(_make(name, learning_rate), family, task_keys, num_steps)
        losses = result.trace["value"]
        return losses[:, -1], diverged_mask(losses)

    return jax.vmap(run)(grid)


def check_grid(grid: Any) -> tuple[float, ...]:
    """Return ``grid`` as an increasing tuple of learning rates, or raise ``ValueError``."""
    values = np.asarray(grid, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"grid must be a non-empty 1-d sequence of learning rates, got {grid!r}")
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"grid must hold finite learning rates > 0, got {grid!r}")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"grid must be strictly increasing, got {grid!r}")
    return tuple(float(v) for v in values)


def tune_learning_rate(
    name: str,
    family: TaskFamily,
    train_keys: jax.Array,
    num_steps: int,
    grid: Any = DEFAULT_LEARNING_RATES,
) -> TuningResult:
    """Grid-search the learning rate of baseline ``name`` on the training tasks ``train_keys``.

    Every learning rate runs ``num_steps`` steps on every training task (one compiled, ``vmap``-ed
    run); its score is the mean final loss, ``inf`` if any task diverged (module docstring). A
    best learning rate at an end of the grid is logged as a warning: widen the grid.

    Args:
        name: ``"adam"``, ``"sgd"`` or ``"momentum"``.
        family: a hashable ``TaskFamily``.
        train_keys: one key per training task; never the keys of the tasks you evaluate on.
        num_steps: steps per run (>= 1), the horizon the learning rate is tuned for.
        grid: increasing learning rates > 0; default ``DEFAULT_LEARNING_RATES`` (1e-4 .. 10).

    Returns:
        A ``TuningResult`` (the best learning rate and the full table).

    Raises:
        ValueError: a name without a learning rate, a bad grid, bad keys or ``num_steps``.
        RuntimeError: every learning rate of the grid diverged on some training task.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> keys = jax.random.split(jax.random.key(0), 4)
        >>> result = tune_learning_rate("adam", QuadraticFamily(dimension=4), keys, 20,
        ...                             grid=[0.01, 0.1, 1.0, 10.0])
        >>> result.learning_rate, result.num_diverged  # 10.0 ends above where it started
        (1.0, (0, 0, 0, 4))
    """
    check_choice(name, TUNABLE_BASELINES, "name (a baseline with a learning rate)")
    check_family(family)
    check_int_at_least(num_steps, 1, "num_steps")
    grid = check_grid(grid)
    train_keys = check_task_keys(train_keys)
    finals, diverged = _final_losses(name, family, train_keys, num_steps, jnp.asarray(grid))
    num_diverged = np.asarray(diverged).sum(axis=1)
    scores = np.where(num_diverged > 0, np.inf, np.asarray(finals, dtype=float).mean(axis=1))
    if not np.any(np.isfinite(scores)):
        raise RuntimeError(
            f"every learning rate of the grid {grid} diverged on some training task of {name!r}"
        )
    best = int(np.argmin(scores))
    result = TuningResult(
        name, grid[best], grid, tuple(float(s) for s in scores), tuple(int(n) for n in num_diverged)
    )
    logger.info(
        "tuned %s: learning rate %.3g, mean final loss %.4g", name, grid[best], scores[best]
    )
    if len(grid) > 1 and best in (0, len(grid) - 1):
        logger.warning(
            "the best learning rate of %s, %.3g, is at the %s end of the grid [%.3g, %.3g]: "
            "widen the grid",
            name,
            grid[best],
            "lower" if best == 0 else "upper",
            grid[0],
            grid[-1],
        )
    return result
