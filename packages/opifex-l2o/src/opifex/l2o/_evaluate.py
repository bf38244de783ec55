"""Run any optax optimiser on a batch of tasks: loss curves, evaluation counts, divergence.

One key per task fixes everything about its run: ``jax.random.split(task_key, 3)`` gives the
key of ``family.sample``, the key of ``family.init`` and a minibatch stream, whose step ``k``
key is ``jax.random.fold_in(stream, k)``. Two optimisers run on the same task keys therefore see
the same tasks, the same starting points and the same minibatches.

Step ``k`` evaluates ``value, grad = value_and_grad(loss)(theta_k, task, key_k)`` and calls
``optimizer.update(grad, state, theta_k, value=value, grad=grad, value_fn=f_k)`` with
``f_k = loss(., task, key_k)``: extra arguments that optax's line-search optimisers need
(``optax.lbfgs``, ``opifex.second_order.create_lbfgs_optimizer``) and that every other
``GradientTransformationExtraArgs`` ignores. The loss curve is
``losses[k] = loss(theta_k, task, key_k)``, ``k = 0 .. num_steps``: the value the optimiser
itself sees (on minibatch families, a minibatch loss).

Line-search optimisers (their state holds ``num_linesearch_steps``) reuse the value and gradient
that the line search found at ``theta_{k+1}`` (``optax.value_and_grad_from_state``), as
``opifex.second_order.LBFGSSolver`` does; that value is on step ``k``'s minibatch, which is
exact on deterministic (full-batch) families, the setting L-BFGS is meant for. One step of such
an optimiser is one *iteration* and costs every evaluation of its line search, so the
evaluation count of step ``k`` (``trace["num_fun_evals"]``, ``evaluation_counts``) is the
number of loss evaluations (value, or value and gradient) used to reach ``theta_k`` and know its
loss: ``k + 1`` for a first-order optimiser, ``1`` plus all line-search trials for L-BFGS.
Compare methods of different costs on that axis as well as on steps.

Each run is ``opifex.core.run_solver`` of an ``opifex.core.OptaxSolver`` on the task's minibatch
stream, without a convergence test, so it takes all ``num_steps`` steps unless the loss becomes
NaN / inf (status ``NONFINITE``; the curve is NaN after that step, never replaced). A task is
``diverged`` (``diverged_mask``) when its curve has a non-finite entry or ends above where it
started: a run that blew up to 1e15 without overflowing is not counted as a success.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import (
    OptaxSolver,
    SolveResult,
    TaskFamily,
    check_int_at_least,
    check_task_family,
    run_solver,
)


def diverged_mask(losses: jax.Array) -> jax.Array:
    """Curves ``(..., num_steps + 1)`` with a non-finite entry or a final loss above the first.

    Example:
        >>> import jax.numpy as jnp
        >>> diverged_mask(jnp.array([[3.0, 1.0], [3.0, jnp.nan], [3.0, 1e15]])).tolist()
        [False, True, True]
    """
    finite = jnp.all(jnp.isfinite(losses), axis=-1)
    return ~finite | (losses[..., -1] > losses[..., 0])


def check_task_keys(task_keys: Any) -> jax.Array:
    """Return ``task_keys`` as a 1-d typed key array (raw ``uint32`` ``(n, 2)`` keys are wrapped).

    Raises:
        TypeError: not a key array.
        ValueError: empty, or not one key per task.
    """
    dtype = getattr(task_keys, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        keys = task_keys
    elif dtype == jnp.uint32 and np.ndim(task_keys) == 2 and np.shape(task_keys)[1] == 2:
        keys = jax.random.wrap_key_data(task_keys)
    else:
        raise TypeError(
            "task_keys must be a key array, e.g. jax.random.split(jax.random.key(0), num_tasks), "
            f"got {type(task_keys).__name__}" + (f" with dtype {dtype}" if dtype else "")
        )
    if keys.ndim != 1 or keys.shape[0] == 0:
        raise ValueError(
            f"task_keys must hold one key per task (shape (num_tasks,)), got {keys.shape}"
        )
    return keys


def check_key(key: Any) -> None:
    """Raise ``TypeError`` unless ``key`` is one ``jax.random`` key (typed, or raw ``uint32``)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if not ((typed and key.shape == ()) or (dtype == jnp.uint32 and np.shape(key) == (2,))):
        raise TypeError(f"key must be one jax.random key, e.g. jax.random.key(0), got {key!r:.80}")


def check_family(family: Any) -> None:
    """Raise ``TypeError`` unless ``family`` is a hashable ``TaskFamily``."""
    check_task_family(family)
    try:
        hash(family)
    except TypeError as error:
        raise TypeError(
            f"family must be hashable (a frozen dataclass), got {type(family).__name__}"
        ) from error


def split_task_keys(key: jax.Array, num_train: int, num_test: int) -> tuple[jax.Array, jax.Array]:
    """Disjoint training and held-out task keys: ``num_train`` and ``num_test`` of them.

    ``train, test = jax.random.split(key)``, then each is split into its number of task keys.

    Example:
        >>> import jax
        >>> train, test = split_task_keys(jax.random.key(0), 3, 5)
        >>> train.shape, test.shape
        ((3,), (5,))
    """
    check_key(key)
    check_int_at_least(num_train, 1, "num_train")
    check_int_at_least(num_test, 1, "num_test")
    train_key, test_key = jax.random.split(key)
    return jax.random.split(train_key, num_train), jax.random.split(test_key, num_test)


def task_and_params(family: TaskFamily, task_key: jax.Array) -> tuple[Any, Any, jax.Array]:
    """The task, initial parameters and minibatch stream key of one task key (unchecked)."""
    sample_key, init_key, stream_key = jax.random.split(task_key, 3)
    task = family.sample(sample_key)
    return task, family.init(init_key, task), stream_key


@functools.partial(jax.jit, static_argnames="family")
def _sample(family: TaskFamily, task_keys: jax.Array) -> tuple[Any, Any]:
    tasks, params, _ = jax.vmap(lambda k: task_and_params(family, k))(task_keys)
    return tasks, params


def sample_tasks(family: TaskFamily, task_keys: jax.Array) -> tuple[Any, Any]:
    """The tasks and initial parameters that ``run_optimizer`` uses for ``task_keys``.

    Returns:
        ``(tasks, params)``, both batched over the task keys.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> tasks, params = sample_tasks(QuadraticFamily(dimension=3),
        ...                              jax.random.split(jax.random.key(0), 4))
        >>> tasks.matrix.shape, params.shape
        ((4, 3, 3), (4, 3))
    """
    check_family(family)
    return _sample(family, check_task_keys(task_keys))


def _run_task(
    optimizer: optax.GradientTransformationExtraArgs,
    family: TaskFamily,
    num_steps: int,
    task_key: jax.Array,
) -> SolveResult:
    task, params, stream_key = task_and_params(family, task_key)

    def loss(params: Any, key: jax.Array) -> jax.Array:
        return family.loss(params, task, key)

    solver = OptaxSolver(loss, optimizer, stochastic=True)
    return run_solver(solver, params, stream_key, max_steps=num_steps)


def run_tasks(
    optimizer: optax.GradientTransformationExtraArgs,
    family: TaskFamily,
    task_keys: jax.Array,
    num_steps: int,
) -> SolveResult:
    """``run_optimizer`` without checks or ``jit``: traceable (e.g. ``vmap``-ed over an lr)."""
    return jax.vmap(lambda k: _run_task(optimizer, family, num_steps, k))(task_keys)


def evaluation_counts(result: SolveResult) -> np.ndarray:
    """Integer evaluation counts per step of batched runs (``trace["num_fun_evals"]``).

    A run stopped early (a non-finite loss) has NaN entries after its last step; its count
    stays at the last value there.

    Example:
        >>> import numpy as np
        >>> from opifex.core import SolveResult
        >>> trace = {"num_fun_evals": np.array([[1.0, 2.0, np.nan]])}
        >>> evaluation_counts(SolveResult(*(None,) * 6, trace, {})).tolist()
        [[1, 2, 2]]
    """
    counts = np.asarray(result.trace["num_fun_evals"], dtype=float)
    filled = np.where(np.isnan(counts), -np.inf, counts)
    return np.maximum.accumulate(filled, axis=-1).astype(np.int64)


# the same wrapper for the same optimiser, so that a second run does not recompile
_with_extra_args = functools.lru_cache(maxsize=64)(optax.with_extra_args_support)
_run_jit = jax.jit(run_tasks, static_argnames=("optimizer", "family", "num_steps"))


def run_optimizer(
    optimizer: optax.GradientTransformation,
    family: TaskFamily,
    task_keys: jax.Array,
    num_steps: int,
) -> SolveResult:
    """Run ``optimizer`` for ``num_steps`` steps on each task of ``task_keys`` (``vmap``, ``jit``).

    Args:
        optimizer: any optax transformation; a plain ``GradientTransformation`` is wrapped with
            ``optax.with_extra_args_support``. It is a static argument of the compiled run:
            reuse the same object to avoid recompiling.
        family: a hashable ``TaskFamily``.
        task_keys: one key per task, shape ``(num_tasks,)``; each fixes the task, the initial
            parameters and the minibatches (see the module docstring).
        num_steps: optimiser steps (>= 1); for L-BFGS, iterations.

    Returns:
        A ``SolveResult`` batched over the tasks: ``trace["value"]`` holds the
        ``(num_tasks, num_steps + 1)`` loss curves, ``trace["num_fun_evals"]`` the evaluation
        counts (``evaluation_counts``), ``params`` the final parameters. A run stops early only
        at a non-finite loss (status ``NONFINITE``; its curve is NaN after that step).

    Raises:
        TypeError: ``optimizer`` not an optax transformation, ``family`` not a hashable
            ``TaskFamily``, ``task_keys`` not keys.
        ValueError: ``num_steps < 1`` or no task keys.

    Example:
        >>> import jax, optax
        >>> from opifex.core.families import QuadraticFamily
        >>> keys = jax.random.split(jax.random.key(0), 3)
        >>> result = run_optimizer(optax.adam(0.1), QuadraticFamily(dimension=4), keys, 20)
        >>> losses = result.trace["value"]
        >>> losses.shape, diverged_mask(losses).tolist()
        ((3, 21), [False, False, False])
        >>> bool((losses[:, -1] < losses[:, 0]).all())
        True
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}"
        )
    if not isinstance(optimizer, optax.GradientTransformationExtraArgs):
        optimizer = _with_extra_args(optimizer)
    check_family(family)
    check_int_at_least(num_steps, 1, "num_steps")
    return _run_jit(optimizer, family, check_task_keys(task_keys), num_steps)
