"""Status codes that solvers return instead of raising inside ``jit``."""

from __future__ import annotations

import enum


class SolveStatus(enum.IntEnum):
    """Why a solver stopped.

    A solver run under ``jit`` cannot raise, so it reports one of these codes in
    ``SolveResult.status`` (a 0-d ``int32`` array). ``SUCCESS`` is the only code for which
    ``SolveResult.converged`` is true, and it means the answer is as accurate as the stated
    tolerance and the dtype allow; a stop short of that is one of the other codes:

    * ``MAX_STEPS_REACHED``: the step budget ran out first;
    * ``NONFINITE``: the value or the gradient became NaN or inf;
    * ``STALLED``: the iterates stopped making progress before the tolerance was met;
    * ``LINE_SEARCH_FAILED``: no step along the search direction decreased the objective;
    * ``DIVERGED``: the objective grew past the solver's divergence limit (finite, but far
      above where the run started).

    Example:
        >>> SolveStatus(0).name
        'SUCCESS'
    """

    SUCCESS = 0
    MAX_STEPS_REACHED = 1
    NONFINITE = 2
    STALLED = 3
    LINE_SEARCH_FAILED = 4
    DIVERGED = 5


def status_message(code: int) -> str:
    """Return a human-readable explanation of a status code.

    Args:
        code: an integer status code (a Python int or a concrete 0-d array).

    Returns:
        One sentence explaining the status.

    Example:
        >>> status_message(1)
        'stopped at the step budget before meeting the tolerance'
    """
    messages = {
        SolveStatus.SUCCESS: "converged: the tolerance was met",
        SolveStatus.MAX_STEPS_REACHED: "stopped at the step budget before meeting the tolerance",
        SolveStatus.NONFINITE: "stopped because the value or gradient became NaN or inf",
        SolveStatus.STALLED: "stopped because the iterates stopped making progress",
        SolveStatus.LINE_SEARCH_FAILED: "stopped because the line search found no acceptable step",
        SolveStatus.DIVERGED: "stopped because the objective grew past the divergence limit",
    }
    try:
        return messages[SolveStatus(int(code))]
    except ValueError as error:
        raise ValueError(f"unknown status code {int(code)}") from error
