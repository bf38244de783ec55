"""What the ``L2OEngine`` solvers return: an ``opifex.core.SolveResult`` with ``EngineInfo``.

Every engine solve (learned optimiser with its fallback, Adam, L-BFGS, Gauss-Newton, FISTA)
returns the workspace's one result type, with the workspace's one status enum
(``opifex.core.SolveStatus``). ``aux`` is an ``EngineInfo``: what produced the answer and how.
The trace has the keys ``ENGINE_TRACE`` for every method (NaN where a method has no such
quantity, e.g. the learning rate of an L-BFGS iteration), of length ``num_steps budget + 1``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from opifex.core import SolveResult

ENGINE_TRACE = ("value", "grad_norm", "learning_rate")


class EngineInfo(NamedTuple):
    """``SolveResult.aux`` of an ``L2OEngine`` solve.

    Attributes:
        method: what produced ``params``: ``"learned"``, ``"adam"``, ``"lbfgs"``,
            ``"gauss_newton"`` or ``"fista"``.
        learned_status: the ``SolveStatus`` code the learned optimiser stopped with (``None``
            when it did not run).
        fallback_step: the step at which the fallback replaced the learned optimiser (-1:
            never).
        task: the task solved, for problems drawn from a family (``None`` otherwise).
        warm_start_distance: ``solve_with_meta_learning``: the descriptor distance of the stored
            solution it started from (``None``: cold start).

    Example:
        >>> EngineInfo("adam", 2, 17).fell_back
        True
    """

    method: str
    learned_status: int | None
    fallback_step: int
    task: Any = None
    warm_start_distance: float | None = None

    @property
    def fell_back(self) -> bool:
        """Whether the learned optimiser was replaced by the fallback."""
        return self.fallback_step >= 0


def engine_trace(trace: dict[str, Any], length: int) -> dict[str, np.ndarray]:
    """``trace`` as NumPy arrays of ``length`` entries with exactly the keys ``ENGINE_TRACE``.

    Missing keys are NaN; longer arrays are cut, shorter ones NaN-padded.

    Example:
        >>> engine_trace({"value": [3.0, 1.0], "step_size": [0.5, 0.5]}, 3)["value"].tolist()
        [3.0, 1.0, nan]
    """
    out = {}
    for name in ENGINE_TRACE:
        values = np.full(length, np.nan)
        if name in trace:
            given = np.asarray(trace[name], dtype=float)[:length]
            values[: given.shape[0]] = given
        out[name] = values
    return out


def engine_result(result: SolveResult, info: EngineInfo, length: int) -> SolveResult:
    """An engine result of a solve: its trace as ``engine_trace(trace, length)``, ``aux=info``.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import GradientDescent, run_solver
        >>> solved = run_solver(GradientDescent(jnp.sum, learning_rate=0.1), jnp.ones(2),
        ...                     max_steps=3)
        >>> result = engine_result(solved, EngineInfo("gd", None, -1), 5)
        >>> sorted(result.trace), result.trace["value"].shape, result.aux.method
        (['grad_norm', 'learning_rate', 'value'], (5,), 'gd')
    """
    return result._replace(trace=engine_trace(result.trace, length), aux=info)
