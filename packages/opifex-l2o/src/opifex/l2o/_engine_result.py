"""What the ``L2OEngine`` solvers return: an ``EngineStatus`` and an ``L2OResult``."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import numpy as np

from opifex.core import SolveResult, steps_to_target


class EngineStatus(enum.IntEnum):
    """Why a run stopped; numbered as ``opifex.core.SolveStatus`` where the meanings agree.

    ``DIVERGED`` (2, ``SolveStatus.NONFINITE``'s number) covers a non-finite loss or gradient
    and a loss that blew up past the engine's ``divergence_factor``. Only ``CONVERGED`` is a
    success.

    Example:
        >>> EngineStatus(2).name
        'DIVERGED'
    """

    CONVERGED = 0
    MAX_STEPS_REACHED = 1
    DIVERGED = 2
    STALLED = 3
    LINE_SEARCH_FAILED = 4


_MESSAGES = {
    EngineStatus.CONVERGED: "converged: the gradient norm met the tolerance",
    EngineStatus.MAX_STEPS_REACHED: "stopped at the step budget before meeting the tolerance",
    EngineStatus.DIVERGED: "diverged: the loss or gradient became non-finite or blew up",
    EngineStatus.STALLED: "stalled: the loss stopped improving",
    EngineStatus.LINE_SEARCH_FAILED: "stopped because the line search found no acceptable step",
}


class L2OResult(NamedTuple):
    """The outcome of one engine solve (a record made outside ``jit``).

    Attributes:
        params: the final parameters; after a divergence, the best parameters seen (the
            diverged iterate is useless).
        value: the loss at ``params``.
        grad_norm: the gradient norm at ``params`` (NaN where undefined, e.g. FISTA).
        num_steps: steps taken in all (learned steps plus fallback steps or iterations).
        status: the final ``EngineStatus`` code (of the fallback when there was one).
        method: what produced ``params``: ``"learned"``, ``"adam"``, ``"lbfgs"``,
            ``"gauss_newton"`` or ``"fista"``.
        learned_status: the ``EngineStatus`` the learned optimiser stopped with (``None``
            when it did not run).
        fallback_step: the step at which the learned optimiser was replaced (-1: never).
        trace: ``{"loss", "grad_norm", "learning_rate"}``, NumPy arrays of length
            ``num_steps_budget + 1``: entry ``k`` at the iterate after ``k`` steps, NaN after
            the last. ``learning_rate[k]`` is the effective step size ``||u|| / ||g||`` of the
            step that produced iterate ``k`` (NaN at 0 and for L-BFGS / Gauss-Newton / FISTA
            iterations). After a fallback at step ``k``, entry ``k`` is the iterate at which the
            failure was detected and entries ``k + 1 ...`` continue from the best parameters.
        task: the task solved, for problems drawn from a family (``None`` otherwise).
        warm_start_distance: ``solve_with_meta_learning``: the descriptor distance of the stored
            solution it started from (``None``: cold start).
    """

    params: Any
    value: float
    grad_norm: float
    num_steps: int
    status: int
    method: str
    learned_status: int | None
    fallback_step: int
    trace: dict[str, np.ndarray]
    task: Any = None
    warm_start_distance: float | None = None

    @property
    def converged(self) -> bool:
        """``status == EngineStatus.CONVERGED``."""
        return self.status == EngineStatus.CONVERGED

    @property
    def fell_back(self) -> bool:
        """Whether the learned optimiser was replaced by the fallback."""
        return self.fallback_step >= 0

    @property
    def status_name(self) -> str:
        """The ``EngineStatus`` name of ``status``."""
        return EngineStatus(self.status).name

    @property
    def message(self) -> str:
        """A sentence explaining ``status``, and the fallback if there was one."""
        text = _MESSAGES[EngineStatus(self.status)]
        if self.fell_back:
            learned = EngineStatus(self.learned_status).name.lower()
            text += f" (after {self.method} replaced the learned optimiser, {learned} at step "
            text += f"{self.fallback_step})"
        return text

    @property
    def history(self) -> dict[str, np.ndarray]:
        """``trace`` cut to the steps taken (length ``num_steps + 1``)."""
        return {name: values[: self.num_steps + 1] for name, values in self.trace.items()}

    def steps_to_target(self, target: float) -> float:
        """The first step whose loss is at most ``target`` (``inf``: never; censored).

        Example:
            >>> import numpy as np
            >>> trace = {"loss": np.array([4.0, 1.0, 0.5]), "grad_norm": np.ones(3),
            ...          "learning_rate": np.full(3, np.nan)}
            >>> L2OResult(None, 0.5, 1.0, 2, 1, "learned", 1, -1, trace).steps_to_target(1.0)
            1.0
        """
        return float(steps_to_target(self.trace["loss"], target))


def nan_trace(length: int) -> dict[str, np.ndarray]:
    """A trace of ``length`` NaN entries per field."""
    return {name: np.full(length, np.nan) for name in ("loss", "grad_norm", "learning_rate")}


def from_solve_result(result: SolveResult, method: str, task: Any = None) -> L2OResult:
    """An ``L2OResult`` of an ``opifex.second_order`` solve (L-BFGS, Gauss-Newton).

    Its trace's ``loss`` is the solver's ``value`` trace, ``learning_rate`` is NaN; the status
    codes are the same numbers (``SolveStatus.NONFINITE`` is ``DIVERGED``).
    """
    trace = nan_trace(len(result.trace["value"]))
    trace["loss"] = np.asarray(result.trace["value"], dtype=float)
    trace["grad_norm"] = np.asarray(result.trace["grad_norm"], dtype=float)
    return L2OResult(
        params=result.params,
        value=float(result.value),
        grad_norm=float(result.grad_norm),
        num_steps=int(result.num_steps),
        status=int(result.status),
        method=method,
        learned_status=None,
        fallback_step=-1,
        trace=trace,
        task=task,
    )
