"""``L2OEngine``: a learned optimiser with meta-training, a fallback, warm starts and a chooser.

A thin façade over the functional core: ``meta_train`` (meta-training), ``guarded_solve`` (the
learned optimiser as an ``opifex.core.OptaxSolver`` under ``jit`` with convergence, divergence
and stall detection, and the Adam / L-BFGS fallback), ``WarmStartStore``,
``recommend_algorithm`` / ``solve_with`` and ``L2OBenchmark`` (``compare_all_solvers``). Every
solve returns an ``opifex.core.SolveResult`` whose ``aux`` is an ``EngineInfo``. The engine
holds the config, the learned optimiser's ``phi`` and the state that must persist between calls
(the warm-start store, the family it was meta-trained on).

Before meta-training, ``phi`` is ``init_phi(config, fold_in(key, 0))`` (or the ``phi`` given):
for ``"learnable_adam"`` / ``"learnable_sgd"`` that is Adam / SGD with the configured
hyperparameters, a sound optimiser; for ``"mlp"`` / ``"lstm"`` it is random, and solving with it
emits a ``UserWarning`` (the fallback then usually takes over).

Randomness: every method that draws takes an optional ``key``; without one, the engine draws
``fold_in(key, n)`` for its ``n``-th draw (``n = 1, 2, ...``) from the key it was made with.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import (
    SolveResult,
    SolveStatus,
    TaskFamily,
    check_finite,
    check_float_pytree,
    check_int_at_least,
    check_scalar_output,
)
from opifex.core.families import BurgersFamily, PoissonFamily
from opifex.core.metatrain import Curriculum, MetaTrainConfig, MetaTrainResult, WarmStartStore
from opifex.l2o._baselines import DEFAULT_LEARNING_RATES
from opifex.l2o._engine_config import L2OEngineConfig, init_phi, optimizer_factory
from opifex.l2o._evaluate import check_family, check_key
from opifex.l2o._fallback import guarded_solve
from opifex.l2o._learned_meta import meta_train
from opifex.l2o._problem import PINN_TYPES, OptimizationProblem
from opifex.l2o._recommend import Recommendation, recommend_algorithm, solve_with
from opifex.l2o._solver_table import solver_table


@dataclasses.dataclass(frozen=True)
class _KeyFree:
    """``loss(params, key) = fun(params)``: a user objective in the engine's loss form."""

    fun: Callable[[Any], jax.Array]

    def __call__(self, params: Any, key: jax.Array) -> jax.Array:
        del key
        return self.fun(params)


def _check_objective(
    objective_fn: Any, initial_params: Any, *, same_dtype: bool
) -> Callable[..., Any]:
    if not callable(objective_fn):
        raise TypeError(f"objective_fn must be callable, got {type(objective_fn).__name__}")
    try:
        hash(objective_fn)
    except TypeError:
        raise TypeError("objective_fn must be hashable (it is a static argument of jit)") from None
    check_float_pytree(initial_params, "initial_params")
    check_finite(initial_params, "initial_params")
    out = jax.eval_shape(objective_fn, initial_params)
    if not hasattr(out, "dtype") or not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"objective_fn(initial_params) must return a float scalar, got {out!r}")
    check_scalar_output(out, "objective_fn(initial_params)")
    dtypes = {jnp.result_type(leaf) for leaf in jax.tree.leaves(initial_params)} | {out.dtype}
    if same_dtype and len(dtypes) > 1:
        raise TypeError(
            "the L-BFGS fallback needs initial_params and objective_fn(initial_params) of one "
            f"floating-point dtype, got {sorted(str(d) for d in dtypes)}"
        )
    return _KeyFree(objective_fn)


def _pinn_family(problem: Any) -> TaskFamily:
    if isinstance(problem, PoissonFamily | BurgersFamily):
        return problem
    if isinstance(problem, OptimizationProblem):
        if problem.problem_type not in PINN_TYPES:
            raise ValueError(
                f"solve_physics_informed needs a PINN problem ({', '.join(PINN_TYPES)}), got "
                f"{problem.problem_type!r}"
            )
        return problem.family()
    raise TypeError(
        "problem must be a PoissonFamily, a BurgersFamily or a PINN OptimizationProblem, got "
        f"{type(problem).__name__}"
    )


class L2OEngine:
    """Learned optimisation with meta-training, fallback, warm starts and solver selection.

    Args:
        l2o_config: an ``L2OEngineConfig`` (default ``L2OEngineConfig()``).
        meta_config: a ``MetaTrainConfig`` (default ``MetaTrainConfig()``) for ``meta_train``.
        key: the engine's ``jax.random`` key (default ``jax.random.key(0)``).
        rngs: instead of ``key``: a Flax ``nnx.Rngs`` (or any callable returning a key); the
            engine's key is ``rngs()``.
        phi: the learned optimiser's weights (e.g. from an earlier meta-training); default
            ``init_phi(l2o_config, fold_in(key, 0))``.

    Raises:
        TypeError: a config of the wrong type, both ``key`` and ``rngs``, a bad key, or a
            ``phi`` that does not fit the optimiser.

    Example:
        >>> import jax.numpy as jnp
        >>> engine = L2OEngine(L2OEngineConfig(learning_rate=0.1, atol=1e-4))
        >>> result = engine.optimize(jnp.zeros(3), lambda x: jnp.sum((x - 2.0) ** 2), 500)
        >>> result.status_name, bool(jnp.allclose(result.params, 2.0, atol=1e-3))
        ('SUCCESS', True)
    """

    def __init__(
        self,
        l2o_config: L2OEngineConfig | None = None,
        meta_config: MetaTrainConfig | None = None,
        *,
        key: jax.Array | None = None,
        rngs: Any = None,
        phi: Any = None,
    ):
        self.config = L2OEngineConfig() if l2o_config is None else l2o_config
        self.meta_config = MetaTrainConfig() if meta_config is None else meta_config
        if not isinstance(self.config, L2OEngineConfig):
            raise TypeError(f"l2o_config must be an L2OEngineConfig, got {type(l2o_config)}")
        if not isinstance(self.meta_config, MetaTrainConfig):
            raise TypeError(f"meta_config must be a MetaTrainConfig, got {type(meta_config)}")
        if key is not None and rngs is not None:
            raise TypeError("pass key or rngs, not both")
        if rngs is not None:
            if not callable(rngs):
                raise TypeError(f"rngs must be an nnx.Rngs or callable, got {type(rngs).__name__}")
            key = rngs()
        self.key = jax.random.key(0) if key is None else key
        check_key(self.key)
        self._draws = 0
        self.make_optimizer = optimizer_factory(self.config)
        if phi is None:
            self.phi, self.phi_source = (
                init_phi(self.config, jax.random.fold_in(self.key, 0)),
                "init",
            )
        else:
            check_float_pytree(phi, "phi")
            check_finite(phi, "phi")
            self.make_optimizer(phi)  # raises if phi does not fit the optimiser
            self.phi, self.phi_source = phi, "user"
        self.meta_trained_family: TaskFamily | None = None
        self.meta_train_result: MetaTrainResult | None = None
        self.warm_starts = WarmStartStore(
            self.config.warm_start_size, self.config.similarity_threshold
        )

    # ------------------------------------------------------------------ helpers

    def _key(self, key: jax.Array | None) -> jax.Array:
        if key is not None:
            check_key(key)
            return key
        self._draws += 1
        return jax.random.fold_in(self.key, self._draws)

    def _warn_if_untrained(self) -> None:
        if self.phi_source == "init" and not self.config.untrained_is_meaningful:
            warnings.warn(
                f"the {self.config.optimizer!r} learned optimiser has not been meta-trained: its "
                "phi is random (call meta_train, or pass phi=)",
                UserWarning,
                stacklevel=3,
            )

    @property
    def optimizer(self) -> Any:
        """The learned optimiser with the current ``phi`` (an optax transformation)."""
        return self.make_optimizer(self.phi)

    # ------------------------------------------------------------------ meta-training

    def meta_train(
        self,
        problem_family: TaskFamily | OptimizationProblem,
        num_meta_epochs: int,
        validation_problems: int | jax.Array | None = None,
        *,
        key: jax.Array | None = None,
        curriculum: Curriculum | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> MetaTrainResult:
        """Meta-train ``phi`` on a family (``opifex.l2o.meta_train``); keep the best ``phi``.

        The engine's ``meta_config`` is used with ``num_outer_steps = num_meta_epochs`` and
        ``validation_every`` capped at ``num_meta_epochs`` (so training is validated at least
        once after it starts). Training continues from the current ``phi``. Afterwards
        ``phi`` is the result's ``best_phi`` (the best validated) and ``meta_trained_family``
        the family (``recommend_algorithm`` uses it).

        Args:
            problem_family: a hashable ``TaskFamily`` or an ``OptimizationProblem``.
            num_meta_epochs: outer steps (>= 1).
            validation_problems: ``None`` (the config's validation tasks), an int (that many
                held-out tasks) or a ``jax.random`` key (the key of the held-out tasks).
            key: the run's key (default: the engine's next draw).
            curriculum: an optional ``L2OCurriculum`` (``opifex.core.metatrain.Curriculum``).
            checkpoint_path: checkpoint file; an existing one is resumed (see ``meta_train``).
            progress: show a progress bar.

        Returns:
            The ``MetaTrainResult``.

        Example:
            >>> import jax
            >>> from opifex.l2o import MetaTrainConfig
            >>> engine = L2OEngine(L2OEngineConfig(optimizer="learnable_sgd", learning_rate=1e-3),
            ...     MetaTrainConfig(estimator="truncated_bptt", num_tasks=2, truncation_length=5,
            ...                     horizon=10, outer_learning_rate=0.1))
            >>> result = engine.meta_train(OptimizationProblem("quadratic", 3), 10, 2,
            ...                            progress=False)
            >>> float(jax.numpy.exp(engine.phi["log_learning_rate"])) > 1e-3
            True
        """
        if isinstance(problem_family, OptimizationProblem):
            family = problem_family.family()
        else:
            check_family(problem_family)
            family = problem_family
        check_int_at_least(num_meta_epochs, 1, "num_meta_epochs")
        config = dataclasses.replace(
            self.meta_config,
            num_outer_steps=num_meta_epochs,
            validation_every=min(self.meta_config.validation_every, num_meta_epochs),
        )
        validation_key = None
        if isinstance(validation_problems, int) and not isinstance(validation_problems, bool):
            config = dataclasses.replace(config, num_validation_tasks=validation_problems)
        elif validation_problems is not None:
            check_key(validation_problems)
            validation_key = validation_problems
        result = meta_train(
            self._key(key),
            self.phi,
            family,
            self.make_optimizer,
            config,
            curriculum=curriculum,
            validation_key=validation_key,
            checkpoint_path=checkpoint_path,
            progress=progress,
        )
        self.phi, self.phi_source = result.best_phi, "meta_train"
        self.meta_trained_family, self.meta_train_result = family, result
        return result

    # ------------------------------------------------------------------ solving

    def optimize(self, initial_params: Any, objective_fn: Callable, num_steps: int) -> SolveResult:
        """Minimise ``objective_fn(params)`` from ``initial_params`` with the learned optimiser.

        The optimiser runs compiled, under the config's detection; if it diverges or stalls and
        ``use_traditional_fallback`` is set, Adam or L-BFGS continues from the best parameters
        for the remaining steps (``opifex.l2o._fallback``). The same ``objective_fn`` object
        reuses its compilation.

        Args:
            initial_params: a non-empty pytree of finite floating-point arrays.
            objective_fn: ``params -> scalar`` (deterministic, hashable).
            num_steps: the step budget (>= 1), fallback included.

        Returns:
            A ``SolveResult``; ``aux`` is an ``EngineInfo`` (``aux.method`` names what produced
            ``params``, ``aux.fallback_step`` when the fallback took over), ``trace`` has
            ``"value"``, ``"grad_norm"`` and ``"learning_rate"``.

        Raises:
            TypeError / ValueError: a bad argument (non-float or non-finite parameters, a
                non-scalar objective, ``num_steps < 1``).
        """
        check_int_at_least(num_steps, 1, "num_steps")
        same_dtype = self.config.use_traditional_fallback and (
            self.config.fallback_optimizer == "lbfgs"
        )
        loss = _check_objective(objective_fn, initial_params, same_dtype=same_dtype)
        self._warn_if_untrained()
        params = jax.tree.map(jnp.asarray, initial_params)
        unused = jax.random.key(0)  # the loss key, which a user objective ignores
        return guarded_solve(
            self.config, self.make_optimizer, self.phi, loss, params, unused, num_steps
        )

    def optimize_with_meta_framework(
        self, initial_params: Any, objective_fn: Callable, num_steps: int
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """``optimize``, returning ``(params, history)``.

        ``history`` has ``"loss"``, ``"grad_norm"`` and ``"learning_rate"``, each of length
        ``num_steps_taken + 1`` (entry ``k``: after ``k`` steps). ``learning_rate[k]`` is the
        effective step size ``||u|| / ||g||`` of the step that led to iterate ``k`` (the
        update's norm over the gradient's; NaN at 0 and for L-BFGS iterations).

        Example:
            >>> import jax.numpy as jnp
            >>> engine = L2OEngine(L2OEngineConfig(learning_rate=0.1))
            >>> params, history = engine.optimize_with_meta_framework(
            ...     jnp.zeros(2), lambda x: jnp.sum((x - 1.0) ** 2), 10)
            >>> sorted(history), round(float(history["learning_rate"][1]), 4)
            (['grad_norm', 'learning_rate', 'loss'], 0.05)
        """
        result = self.optimize(initial_params, objective_fn, num_steps)
        taken = int(result.num_steps) + 1
        history = {
            "loss": result.trace["value"][:taken],
            "grad_norm": result.trace["grad_norm"][:taken],
            "learning_rate": result.trace["learning_rate"][:taken],
        }
        return result.params, history

    def solve_gradient_problem(
        self,
        problem: OptimizationProblem | TaskFamily | tuple[Callable, Any],
        key: jax.Array | None = None,
        num_steps: int = 1000,
    ) -> SolveResult:
        """Solve a problem with the learned optimiser (and the fallback).

        Args:
            problem: an ``OptimizationProblem`` or a hashable ``TaskFamily`` (a task is drawn
                with ``key``, as ``run_optimizer`` draws it; ``result.aux.task`` is that task), or
                a pair ``(objective_fn, initial_params)`` (``optimize``).
            key: the task's key (default: the engine's next draw).
            num_steps: the step budget (>= 1).

        Example:
            >>> import jax
            >>> engine = L2OEngine(L2OEngineConfig(learning_rate=0.1))
            >>> problem = OptimizationProblem("quadratic", 4, {"condition_number": 10.0})
            >>> result = engine.solve_gradient_problem(problem, jax.random.key(0), 300)
            >>> optimum = problem.family().optimum(result.aux.task)
            >>> result.status_name, bool(jax.numpy.allclose(result.params, optimum, atol=1e-4))
            ('SUCCESS', True)
        """
        if isinstance(problem, tuple):
            if len(problem) != 2:
                raise ValueError("a problem tuple must be (objective_fn, initial_params)")
            return self.optimize(problem[1], problem[0], num_steps)
        if not isinstance(problem, OptimizationProblem):
            check_family(problem)
        check_int_at_least(num_steps, 1, "num_steps")
        return self._solve("learned", problem, key, num_steps)

    def _solve(
        self, algorithm: str, problem: Any, key: jax.Array | None, num_steps: int
    ) -> SolveResult:
        if algorithm == "learned":
            self._warn_if_untrained()
        return solve_with(
            algorithm,
            problem,
            self._key(key),
            num_steps,
            self.config,
            self.make_optimizer,
            self.phi,
        )

    def solve_physics_informed(
        self,
        problem: PoissonFamily | BurgersFamily | OptimizationProblem,
        key: jax.Array | None = None,
        num_steps: int = 1000,
    ) -> SolveResult:
        """Train a physics-informed network with the learned optimiser (and the fallback).

        Args:
            problem: a ``PoissonFamily`` / ``BurgersFamily`` or an ``OptimizationProblem`` of
                type ``"poisson_pinn"`` / ``"burgers_pinn"``; a task (forcing or viscosity) and
                the network's initial weights are drawn with ``key``.
            key: the task's key (default: the engine's next draw).
            num_steps: the step budget (>= 1). Each step's loss draws new collocation points.

        Returns:
            A ``SolveResult``; ``result.aux.task`` is the task, ``result.params`` the network.

        Example:
            >>> import jax
            >>> from opifex.core.families import PoissonFamily
            >>> family = PoissonFamily(num_modes=1, num_collocation=16, hidden_sizes=(8,))
            >>> result = L2OEngine().solve_physics_informed(family, jax.random.key(0), 50)
            >>> bool(result.trace["value"][50] < result.trace["value"][0])
            True
        """
        family = _pinn_family(problem)
        check_int_at_least(num_steps, 1, "num_steps")
        return self._solve("learned", family, key, num_steps)

    def solve_with_meta_learning(
        self,
        initial_params: Any,
        objective_fn: Callable,
        problem_features: Any,
        num_steps: int = 1000,
    ) -> SolveResult:
        """``optimize``, warm-started from the stored solution of the most similar problem.

        ``problem_features`` (a 1-d vector you choose: the problem's data or coefficients)
        describes the problem. If a stored solution of the same parameter structure has a
        descriptor within ``similarity_threshold`` (Euclidean), the solve starts there instead
        of at ``initial_params``. A solve that did not diverge is stored (at most
        ``warm_start_size`` are kept, the oldest dropped first).

        Returns:
            A ``SolveResult`` whose ``aux.warm_start_distance`` is the distance of the stored
            solution used, or ``None`` for a cold start.

        Example:
            >>> import jax.numpy as jnp
            >>> engine = L2OEngine(L2OEngineConfig(learning_rate=0.1))
            >>> fun = lambda x: jnp.sum((x - 1.0) ** 2)
            >>> first = engine.solve_with_meta_learning(jnp.zeros(2), fun, [1.0], 100)
            >>> second = engine.solve_with_meta_learning(jnp.zeros(2), fun, [1.1], 100)
            >>> first.aux.warm_start_distance, round(second.aux.warm_start_distance, 6)
            (None, 0.1)
        """
        check_float_pytree(initial_params, "initial_params")
        warm = self.warm_starts.nearest(problem_features, initial_params)  # checks the features
        start = initial_params if warm is None else warm.params
        result = self.optimize(start, objective_fn, num_steps)
        if int(result.status) not in (SolveStatus.DIVERGED, SolveStatus.NONFINITE):
            self.warm_starts.add(problem_features, result.params)
        distance = None if warm is None else warm.distance
        return result._replace(aux=result.aux._replace(warm_start_distance=distance))

    # ------------------------------------------------------------------ choosing a solver

    def recommend_algorithm(self, problem: OptimizationProblem) -> Recommendation:
        """The algorithm ``opifex.l2o._recommend``'s rule gives (first match wins).

        1. ``"lasso"`` -> ``"fista"``;
        2. a stochastic loss (PINN, minibatches) -> ``"learned"`` if this engine was
           meta-trained on that very family, else ``"adam"``;
        3. ``"quadratic"`` / ``"rosenbrock"`` with at most 1000 unknowns -> ``"gauss_newton"``;
        4. otherwise -> ``"lbfgs"``.

        Example:
            >>> L2OEngine().recommend_algorithm(OptimizationProblem("logistic_regression", 5))
            Recommendation(algorithm='lbfgs', reason='smooth deterministic loss')
        """
        return recommend_algorithm(problem, self.meta_trained_family)

    def solve_automatically(
        self, problem: OptimizationProblem, key: jax.Array | None = None, num_steps: int = 1000
    ) -> SolveResult:
        """Solve a task of ``problem`` with ``recommend_algorithm``'s choice.

        ``num_steps`` counts steps of Adam and the learned optimiser, iterations of L-BFGS,
        Gauss-Newton and FISTA. ``result.aux.method`` names what ran.

        Example:
            >>> import jax
            >>> problem = OptimizationProblem("lasso", 20, {"num_rows": 10})
            >>> result = L2OEngine().solve_automatically(problem, jax.random.key(0), 100)
            >>> result.aux.method, int(result.num_steps)
            ('fista', 100)
        """
        recommendation = self.recommend_algorithm(problem)
        check_int_at_least(num_steps, 1, "num_steps")
        return self._solve(recommendation.algorithm, problem, key, num_steps)

    def compare_all_solvers(
        self,
        problem: OptimizationProblem,
        key: jax.Array | None = None,
        num_steps: int = 100,
        *,
        num_tasks: int = 4,
        num_train_tasks: int = 4,
        target: float | None = None,
        learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
        progress: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """The learned optimiser, tuned Adam and SGD, L-BFGS (and FISTA) on the same tasks.

        One ``L2OBenchmark`` run (the one comparison path of ``opifex.l2o``) summarised by
        ``solver_table``: per solver, the median ``final_loss`` and ``steps_to_target`` over
        ``num_tasks`` held-out tasks, ``wall_time_s``, ``fraction_diverged`` and the tuned
        ``learning_rate``. The learned optimiser runs without the fallback. ``target``
        defaults to the tuned Adam's final loss per task.

        Raises:
            TypeError: ``problem`` is not an ``OptimizationProblem``.
        """
        if not isinstance(problem, OptimizationProblem):
            raise TypeError(f"problem must be an OptimizationProblem, got {type(problem).__name__}")
        return solver_table(
            problem,
            self.optimizer,
            num_steps,
            self._key(key),
            num_tasks=num_tasks,
            num_train_tasks=num_train_tasks,
            target=target,
            learning_rates=learning_rates,
            progress=progress,
        )
