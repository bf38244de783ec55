"""Live optimisation runs for the dashboard: an in-memory log of per-step values.

A :class:`RunLog` keeps, for each run (an id such as ``"lbfgs-rosenbrock"``), the last
``max_points`` ``(step, value)`` pairs; the dashboard (``opifex.deploy._dashboard``) serves
them at ``/dashboard/api/runs/{run_id}/points`` and plots them live. :func:`report_point`
feeds a run from the training or solving process, either in the same process (a ``RunLog``)
or through HTTP (the base URL of a service that mounts the dashboard).

Values may be non-finite (a diverged run): they are kept, answered in JSON as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (as the service's predict answers), and left out
of the plot.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is 1-128 letters, digits, ``.``, ``_`` or ``-`` (starting with neither).

    Raises:
        ValueError: any other ``run_id``.
    """
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
            f"run id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit, got {run_id!r}"
        )
    return run_id


def _number(value: Any, what: str, *, finite: bool) -> float | int:
    """``value`` as a Python number: ints stay ints, the strings "NaN", ... become floats."""
    if isinstance(value, str) and not finite and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:  # numpy and JAX scalars
            value = value.item() if hasattr(value, "item") else value
        except (TypeError, ValueError):
            pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} must be a number, got {value!r}")
    if finite and not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


def json_number(value: float | int) -> float | int | str:
    """``value`` for JSON: non-finite floats as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


class _Run:
    """One run's points (a bounded deque) and how many were ever added."""

    def __init__(self, max_points: int) -> None:
        self.points: deque[tuple[float | int, float | int]] = deque(maxlen=max_points)
        self.total = 0
        self.updated = time.time()


class RunLog:
    """Per-step values of live runs, kept in memory for the dashboard's plots.

    Thread-safe: a training loop may add points while the service answers. Each run keeps
    its last ``max_points`` points (older ones are dropped); past ``max_runs`` runs, the run
    updated longest ago is dropped.

    Args:
        max_runs: the most runs kept.
        max_points: the most points kept per run.

    Example:
        >>> log = RunLog(max_points=3)
        >>> for step, loss in enumerate([4.0, 2.0, 1.0, 0.5]):
        ...     log.add("adam", step, loss)
        >>> answer = log.points("adam")  # the first point was dropped
        >>> answer["start"], answer["next"], answer["reset"], answer["points"]
        (1, 4, True, [[1, 2.0], [2, 1.0], [3, 0.5]])
        >>> log.points("adam", since=3)["points"]
        [[3, 0.5]]
        >>> [(run["run"], run["num_points"], run["last_value"]) for run in log.runs()]
        [('adam', 4, 0.5)]
    """

    def __init__(self, *, max_runs: int = 64, max_points: int = 10_000) -> None:
        if not isinstance(max_runs, int) or max_runs < 1:
            raise ValueError(f"max_runs must be an int >= 1, got {max_runs!r}")
        if not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an int >= 2, got {max_points!r}")
        self.max_runs = max_runs
        self.max_points = max_points
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}

    def add(self, run_id: str, step: Any, value: Any) -> None:
        """Append one point to ``run_id`` (created on its first point).

        Args:
            run_id: the run (1-128 letters, digits, ``._-``).
            step: a finite number (the step count, or any x coordinate).
            value: a number (the loss, the objective, ...); NaN and infinities are kept.

        Raises:
            ValueError: a bad run id, step or value.
        """
        self.extend(run_id, [(step, value)])

    def extend(self, run_id: str, points: Iterable[Sequence[Any]]) -> int:
        """Append ``(step, value)`` pairs to ``run_id``; all are checked before any is added.

        Returns:
            The number of points added.

        Raises:
            ValueError: a bad run id, or a point that is not a pair of numbers (as in
                :meth:`add`).
        """
        check_run_id(run_id)
        checked = []
        for index, point in enumerate(points):
            if isinstance(point, str | bytes) or not isinstance(point, Sequence) or len(point) != 2:
                raise ValueError(f"point {index} must be a (step, value) pair, got {point!r}")
            checked.append(
                (
                    _number(point[0], f"step of point {index}", finite=True),
                    _number(point[1], f"value of point {index}", finite=False),
                )
            )
        with self._lock:
            run = self._runs.pop(run_id, None) or _Run(self.max_points)
            self._runs[run_id] = run  # the most recently updated run is last
            run.points.extend(checked)
            run.total += len(checked)
            run.updated = time.time()
            while len(self._runs) > self.max_runs:
                del self._runs[next(iter(self._runs))]
        return len(checked)

    def points(self, run_id: str, since: int = 0) -> dict[str, Any]:
        """The points of ``run_id`` from the ``since``-th one added (``since=0``: all kept).

        Args:
            run_id: the run.
            since: how many points of this run the caller has already (the ``next`` of its
                last answer).

        Returns:
            ``{"run", "start", "next", "reset", "points"}``: ``points`` are ``[step, value]``
            pairs (values JSON-ready), the first of them the ``start``-th added; ``next`` is
            the number added so far (pass it as ``since`` next time); ``reset`` is true when
            the caller must drop what it has (points it has not seen were dropped, or the run
            started over).

        Raises:
            KeyError: no run ``run_id``.
            ValueError: ``since`` is not an int >= 0.
        """
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise ValueError(f"since must be an int >= 0, got {since!r}")
        with self._lock:
            run = self._runs[run_id]
            first = run.total - len(run.points)  # the index of the oldest point kept
            reset = since < first or since > run.total
            start = first if reset else since
            kept = list(run.points)[start - first :]
            total = run.total
        pairs = [[step, json_number(value)] for step, value in kept]
        return {"run": run_id, "start": start, "next": total, "reset": reset, "points": pairs}

    def runs(self) -> list[dict[str, Any]]:
        """A summary per run, sorted by id.

        Each: ``run``, ``num_points`` (added so far), ``last_step``, ``last_value`` and
        ``updated`` (seconds since the epoch).
        """
        with self._lock:
            snapshot = [
                (run_id, run.total, run.points[-1] if run.points else (None, None), run.updated)
                for run_id, run in self._runs.items()
            ]
        return [
            {
                "run": run_id,
                "num_points": total,
                "last_step": last[0],
                "last_value": None if last[1] is None else json_number(last[1]),
                "updated": updated,
            }
            for run_id, total, last, updated in sorted(snapshot)
        ]

    def clear(self, run_id: str | None = None) -> None:
        """Forget ``run_id`` (no error if unknown), or every run with ``None``."""
        with self._lock:
            if run_id is None:
                self._runs.clear()
            else:
                self._runs.pop(run_id, None)


def report_point(
    target: RunLog | str, run_id: str, step: Any, value: Any, *, timeout: float = 2.0
) -> bool:
    """Send one point of a live run to the dashboard; never raises for a failed delivery.

    Args:
        target: a :class:`RunLog` (the dashboard runs in this process), or the base URL of a
            service that mounts the dashboard (``"http://127.0.0.1:8000"``): the point is
            POSTed to ``{target}/dashboard/api/runs/{run_id}/points``.
        run_id: the run (1-128 letters, digits, ``._-``).
        step: the step (a finite number; numpy and JAX scalars work).
        value: the value at that step (NaN and infinities are kept, and not plotted).
        timeout: seconds to wait for the service.

    Returns:
        True if the point was recorded; False if the service could not be reached or refused
        it (logged as a warning, so a training loop goes on without its dashboard).

    Raises:
        ValueError: a bad ``run_id``, ``step`` or ``value`` (checked before sending).

    Example:
        >>> log = RunLog()
        >>> report_point(log, "lbfgs", 0, 10.0), report_point(log, "lbfgs", 1, float("nan"))
        (True, True)
        >>> log.points("lbfgs")["points"]
        [[0, 10.0], [1, 'NaN']]

        From inside a jitted loop, through JAX's host callback::

            jax.debug.callback(
                lambda s, v: report_point(url, "lbfgs", int(s), float(v)), step, loss
            )
    """
    check_run_id(run_id)
    step = _number(step, "step", finite=True)
    value = _number(value, "value", finite=False)
    if isinstance(target, RunLog):
        target.add(run_id, step, value)
        return True
    if not isinstance(target, str) or not target.startswith(("http://", "https://")):
        raise TypeError(f"target must be a RunLog or an http(s) URL, got {target!r}")
    url = f"{target.rstrip('/')}/dashboard/api/runs/{urllib.parse.quote(run_id)}/points"
    body = json.dumps({"step": step, "value": json_number(value)}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError, ValueError) as error:
        logger.warning("could not report a point of run %r to %s: %s", run_id, url, error)
        return False
