"""``OptimizationProblem``: a small, hashable description of a problem the engine can draw.

Each ``problem_type`` names a family of ``opifex.core.families``; ``dimension`` sets its size
and ``options`` any other field of that family:

* ``"quadratic"``: ``QuadraticFamily``; ``dimension`` unknowns.
* ``"rosenbrock"``: ``RosenbrockFamily``; ``dimension`` unknowns (even).
* ``"lasso"``: ``LassoFamily``; ``dimension`` unknowns.
* ``"logistic_regression"``: ``LogisticRegressionFamily``; ``dimension`` features.
* ``"mlp_regression"``: ``TeacherStudentMLPFamily`` with ``layer_sizes = (dimension,
  *hidden_sizes, num_outputs)``; ``options`` may set ``hidden_sizes`` (default ``(16,)``) and
  ``num_outputs`` (default 1).
* ``"poisson_pinn"`` / ``"burgers_pinn"``: ``PoissonFamily`` / ``BurgersFamily``;
  ``dimension`` is the spatial dimension and must be 1.

A task is drawn as ``run_optimizer`` draws it (``sample``), so that the engine's solves and the
benchmarks see the same task, start and minibatches for the same key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import TaskFamily, check_int_at_least, check_unknown_options
from opifex.core.families import (
    BurgersFamily,
    LassoFamily,
    LogisticRegressionFamily,
    PoissonFamily,
    QuadraticFamily,
    RosenbrockFamily,
    TeacherStudentMLPFamily,
)
from opifex.l2o._evaluate import check_key, task_and_params

_FAMILIES = {
    "quadratic": QuadraticFamily,
    "rosenbrock": RosenbrockFamily,
    "lasso": LassoFamily,
    "logistic_regression": LogisticRegressionFamily,
    "mlp_regression": TeacherStudentMLPFamily,
    "poisson_pinn": PoissonFamily,
    "burgers_pinn": BurgersFamily,
}
PROBLEM_TYPES = tuple(_FAMILIES)
PINN_TYPES = ("poisson_pinn", "burgers_pinn")
LEAST_SQUARES_TYPES = ("quadratic", "rosenbrock")
_MLP_OPTIONS = {"hidden_sizes": (16,), "num_outputs": 1}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class FamilyLoss:
    """``loss(params, key, task) = family.loss(params, task, key)``: a hashable, key-first loss."""

    family: Any

    def __call__(self, params: Any, key: jax.Array, task: Any) -> jax.Array:
        """The family's loss of ``params`` on ``task`` with the minibatch key ``key``."""
        return self.family.loss(params, task, key)


@dataclasses.dataclass(frozen=True)
class QuadraticResidual:
    """``r = sqrt(2) (W theta - y)``: ``0.5 ||r||^2`` is ``QuadraticFamily.loss``."""

    def __call__(self, params: jax.Array, task: Any) -> jax.Array:
        """The residual vector."""
        return math.sqrt(2.0) * (task.matrix @ params - task.target)


@dataclasses.dataclass(frozen=True)
class RosenbrockResidual:
    """``r = sqrt(2) (sqrt(b) (x_even - x_odd^2), a - x_odd)``: ``0.5 ||r||^2`` is the loss."""

    curvature: float

    def __call__(self, params: jax.Array, task: Any) -> jax.Array:
        """The residual vector."""
        odd, even = params[0::2], params[1::2]
        stiff = math.sqrt(self.curvature) * (even - odd**2)
        return math.sqrt(2.0) * jnp.concatenate([stiff, task.coefficient - odd])


@dataclasses.dataclass(frozen=True)
class OptimizationProblem:
    """A problem type, its size and options: it makes the ``TaskFamily`` and draws tasks.

    Args:
        problem_type: one of ``PROBLEM_TYPES`` (see the module docstring for the families).
        dimension: the problem's size (>= 1; see the module docstring).
        options: other fields of the family, e.g. ``{"condition_number": 100.0}`` (a mapping;
            stored as sorted ``(name, value)`` pairs, lists as tuples, so the problem stays
            hashable).

    Raises:
        TypeError / ValueError: an unknown ``problem_type`` (the valid ones are listed), a bad
            ``dimension``, an unknown option, or options the family rejects.

    Example:
        >>> import jax
        >>> problem = OptimizationProblem("quadratic", 5, {"condition_number": 10.0})
        >>> problem.family()
        QuadraticFamily(dimension=5, num_rows=5, sampler='gaussian', condition_number=10.0)
        >>> task, params, _ = problem.sample(jax.random.key(0))
        >>> params.shape, problem.num_params, problem.is_stochastic, problem.is_least_squares
        ((5,), 5, False, True)
    """

    problem_type: str
    dimension: int
    options: Any = ()

    def __post_init__(self) -> None:
        if not isinstance(self.problem_type, str):
            raise TypeError(f"problem_type must be a str, got {type(self.problem_type).__name__}")
        if self.problem_type not in _FAMILIES:
            raise ValueError(
                f"unknown problem_type {self.problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}"
            )
        check_int_at_least(self.dimension, 1, "dimension")
        if self.problem_type in PINN_TYPES and self.dimension != 1:
            raise ValueError(
                f"{self.problem_type} is a 1-D problem: dimension must be 1, got {self.dimension}"
            )
        options = self.options
        if isinstance(options, tuple):
            options = dict(options)
        if not isinstance(options, Mapping):
            raise TypeError(f"options must be a mapping of field names, got {options!r}")
        items = tuple(sorted((str(k), _hashable(v)) for k, v in options.items()))
        object.__setattr__(self, "options", items)
        self.family()  # validates the options

    def family(self) -> TaskFamily:
        """The ``opifex.core.families`` family of this problem."""
        cls, options = _FAMILIES[self.problem_type], dict(self.options)
        valid = {field.name for field in dataclasses.fields(cls)}
        if self.problem_type == "mlp_regression":
            valid = (valid - {"layer_sizes"}) | set(_MLP_OPTIONS)
            check_unknown_options(options, valid, "options for mlp_regression")
            mlp = {name: options.pop(name, default) for name, default in _MLP_OPTIONS.items()}
            sizes = (self.dimension, *mlp["hidden_sizes"], mlp["num_outputs"])
            return cls(layer_sizes=sizes, **options)
        if self.problem_type in PINN_TYPES:
            check_unknown_options(options, valid, f"options for {self.problem_type}")
            return cls(**options)
        check_unknown_options(options, valid - {"dimension"}, f"options for {self.problem_type}")
        return cls(dimension=self.dimension, **options)

    def sample(self, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        """``(task, initial params, minibatch stream key)`` for ``key``, as ``run_optimizer``."""
        check_key(key)
        return task_and_params(self.family(), key)

    @property
    def is_stochastic(self) -> bool:
        """Whether each loss evaluation draws new points (PINNs, minibatch families)."""
        if self.problem_type in PINN_TYPES:
            return True
        return getattr(self.family(), "batch_size", None) is not None

    @property
    def is_least_squares(self) -> bool:
        """Whether the loss is ``0.5 ||r||^2`` of a residual ``residual_fn()`` (deterministic)."""
        return self.problem_type in LEAST_SQUARES_TYPES

    @property
    def num_params(self) -> int:
        """The number of scalar parameters (computed abstractly, without drawing a task)."""
        family = self.family()
        shapes = jax.eval_shape(lambda k: family.init(k, family.sample(k)), jax.random.key(0))
        return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))

    def residual_fn(self) -> QuadraticResidual | RosenbrockResidual:
        """``residual(params, task)`` with ``0.5 ||r||^2`` equal to the family's loss.

        Raises:
            ValueError: the problem has no least-squares form (``not is_least_squares``).
        """
        if self.problem_type == "quadratic":
            return QuadraticResidual()
        if self.problem_type == "rosenbrock":
            return RosenbrockResidual(float(self.family().curvature))
        raise ValueError(
            f"{self.problem_type} has no least-squares form; only {', '.join(LEAST_SQUARES_TYPES)}"
        )
