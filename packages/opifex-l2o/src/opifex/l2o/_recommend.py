"""Which algorithm to use on an ``OptimizationProblem``, and running it on one of its tasks.

``recommend_algorithm`` applies a fixed rule, first match wins:

1. ``"lasso"`` -> ``"fista"``: the ``l1`` term is not differentiable at 0; proximal gradient
   (FISTA) handles it exactly.
2. A stochastic loss (a PINN, whose loss draws collocation points, or a family with a
   ``batch_size``) -> ``"learned"`` if the engine's learned optimiser was meta-trained on this
   very family, else ``"adam"``: line searches and curvature pairs need a deterministic loss.
3. A least-squares problem (``"quadratic"``, ``"rosenbrock"``) with at most
   ``GAUSS_NEWTON_MAX_PARAMS`` unknowns -> ``"gauss_newton"`` (Levenberg-Marquardt on the
   residual, ``opifex.second_order.least_squares``): it uses the residual's Jacobian.
4. Anything else (smooth and deterministic) -> ``"lbfgs"`` (``opifex.second_order.minimize``).

``solve_with`` runs one of these ``ALGORITHMS`` on the task of a key (``OptimizationProblem
.sample``). ``num_steps`` counts steps of the first-order methods and iterations of L-BFGS,
Gauss-Newton and FISTA. The learned optimiser runs with the engine's fallback; ``"adam"`` is
``optax.adam(fallback_learning_rate)`` under the same detection, without fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from opifex.core import SolveResult, TaskFamily
from opifex.core.families import fista
from opifex.l2o._engine_config import L2OEngineConfig
from opifex.l2o._engine_result import EngineInfo, engine_result
from opifex.l2o._evaluate import task_and_params
from opifex.l2o._fallback import guarded_solve
from opifex.l2o._problem import FamilyLoss, OptimizationProblem
from opifex.second_order import least_squares, minimize

ALGORITHMS = ("learned", "adam", "lbfgs", "gauss_newton", "fista")
GAUSS_NEWTON_MAX_PARAMS = 1000


class Recommendation(NamedTuple):
    """An algorithm from ``ALGORITHMS`` and the rule that chose it."""

    algorithm: str
    reason: str


def recommend_algorithm(
    problem: OptimizationProblem, meta_trained_family: TaskFamily | None = None
) -> Recommendation:
    """The algorithm the module docstring's rule gives for ``problem``.

    Args:
        problem: an ``OptimizationProblem``.
        meta_trained_family: the family the learned optimiser was meta-trained on, if any.

    Raises:
        TypeError: ``problem`` is not an ``OptimizationProblem``.

    Example:
        >>> recommend_algorithm(OptimizationProblem("rosenbrock", 10)).algorithm
        'gauss_newton'
        >>> recommend_algorithm(OptimizationProblem("poisson_pinn", 1)).algorithm
        'adam'
    """
    if not isinstance(problem, OptimizationProblem):
        raise TypeError(f"problem must be an OptimizationProblem, got {type(problem).__name__}")
    if problem.problem_type == "lasso":
        return Recommendation("fista", "non-smooth l1 term: proximal gradient handles it exactly")
    if problem.is_stochastic:
        if meta_trained_family is not None and meta_trained_family == problem.family():
            return Recommendation("learned", "stochastic loss, learned optimiser trained on it")
        return Recommendation("adam", "stochastic loss, no learned optimiser trained on it")
    if problem.is_least_squares and problem.num_params <= GAUSS_NEWTON_MAX_PARAMS:
        return Recommendation("gauss_newton", "small deterministic least-squares problem")
    return Recommendation("lbfgs", "smooth deterministic loss")


def solve_with(
    algorithm: str,
    problem: OptimizationProblem | TaskFamily,
    key: jax.Array,
    num_steps: int,
    config: L2OEngineConfig,
    make_optimizer: Callable[[Any], optax.GradientTransformationExtraArgs],
    phi: Any,
) -> SolveResult:
    """Run ``algorithm`` on the task of ``key`` for ``num_steps`` steps or iterations.

    Unchecked (the engine validates). ``problem`` may be a bare ``TaskFamily`` except for
    ``"gauss_newton"`` (which needs ``OptimizationProblem.residual_fn``). ``make_optimizer``
    and ``phi`` are the learned optimiser (used by ``"learned"`` only). The result is a
    ``SolveResult`` whose ``aux`` is an ``EngineInfo`` (``aux.task`` is the task).

    Example:
        >>> import jax
        >>> from opifex.l2o._engine_config import optimizer_factory
        >>> config = L2OEngineConfig()
        >>> result = solve_with("gauss_newton", OptimizationProblem("rosenbrock", 4),
        ...     jax.random.key(0), 50, config, optimizer_factory(config), None)
        >>> result.aux.method, bool(result.value < 1e-12)
        ('gauss_newton', True)
    """
    family = problem.family() if isinstance(problem, OptimizationProblem) else problem
    task, params, stream_key = task_and_params(family, key)
    loss = FamilyLoss(family)
    if algorithm == "adam":
        dtype = jnp.result_type(*jax.tree.leaves(params))
        make_optimizer, phi = optax.adam, np.asarray(config.fallback_learning_rate, dtype)
    if algorithm in ("learned", "adam"):
        return guarded_solve(
            config,
            make_optimizer,
            phi,
            loss,
            params,
            stream_key,
            num_steps,
            (task,),
            method=algorithm,
            task=task,
        )
    info = EngineInfo(algorithm, None, -1, task)
    if algorithm == "lbfgs":
        key0 = jax.random.fold_in(stream_key, 0)
        solved = minimize(loss, params, key0, task, max_steps=num_steps, atol=config.atol)
    elif algorithm == "gauss_newton":
        solved = least_squares(
            problem.residual_fn(),
            params,
            task,
            max_steps=num_steps,
            atol=config.atol,
        )
    else:  # FISTA runs its iterations: the l1 term has no gradient-norm test
        solved = fista(task.matrix, task.target, family.l1_penalty, num_steps, params)
    return engine_result(solved, info, num_steps + 1)
