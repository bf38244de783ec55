"""Canary roll-out with automatic rollback: :class:`AdaptiveDeploymentSystem`.

One system watches one registered name. It serves the version of the registry's ``stable``
channel and, while the ``canary`` channel points at another version, sends
``canary_percentage`` percent of the requests to it. The split is by the request's key (the
SHA-256 of its body): the same request always goes to the same version, so a retried request
is answered by the version that answered it first.

For each version it keeps a window of the last ``window`` requests: whether each failed (an
answer of 500 or more), its latency (successful answers not taken from the result cache), and,
with a ``quality_check(inputs, outputs) -> float`` (lower is better: an objective gap, a
constraint violation, a residual norm; :func:`output_quality` reads one of the outputs), its
solution quality. Once both versions have answered ``min_requests`` requests, after every
request the canary is compared with the stable version, and **rolled back** as soon as one of
these holds:

| check | rolls back when |
|---|---|
| error rate | ``canary > stable + rollback_threshold`` |
| p99 latency | ``canary > stable * (1 + latency_threshold) + latency_atol`` |
| quality (mean) | ``canary > stable + quality_threshold * abs(stable) + quality_atol`` |

A rollback switches the routing off the canary under the same lock that routes requests, so
no request is routed to the rolled-back version after the decision (requests routed before
it, and already waiting in its batch, finish on it), then ends the canary in the registry
(``Registry.end_canary``): other processes serving the same registry follow it when they
next read the channels. The registry is written after the switch, outside the lock: a decision
taken on a running event loop (the service's, where ``observe`` is called) is written in a
worker thread (``run_in_executor``), so that the loop does not wait for the file system or
the object store, and :meth:`~AdaptiveDeploymentSystem.sync` ignores the channels until the
write is done (they still name the old canary); elsewhere the registry is written before
``observe``, ``rollback`` or ``promote`` returns.

With ``auto_promote=True`` a canary that has answered ``window`` requests, has run
``promote_after_s`` seconds and passes every check is **promoted**: the registry's ``stable``
channel is pointed at it and the canary ends. Every decision is logged (``logging``, warning
for a rollback) and written to the registry's event log with its evidence: both versions'
request counts, error rates, p50 / p99 latencies and mean quality, the thresholds, and which
checks failed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import importlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ._registry import NotInRegistryError, Registry
from ._service import RequestOutcome, Servable

logger = logging.getLogger(__name__)

QualityCheck = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], float]
"""``quality_check(inputs, outputs) -> float`` on one request's batch; lower is better."""

_HEX = re.compile(r"[0-9a-fA-F]{8}")
_SHARES = 10_000  # the split's resolution: 0.01 %


def output_quality(output: str) -> QualityCheck:
    """A quality check that is the mean of one output of the solver (lower is better).

    For solvers that report their own residual, loss, objective gap or constraint violation.

    Args:
        output: the name of the output, as in the solver's signature.

    Returns:
        ``check(inputs, outputs) -> float``.

    Example:
        >>> import numpy as np
        >>> check = output_quality("residual")
        >>> check({"x": np.ones(2)}, {"y": np.ones(2), "residual": np.array([0.0, 0.5])})
        0.25
    """
    if not isinstance(output, str) or not output:
        raise ValueError(f"output must be the name of a solver output, got {output!r}")

    def check(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> float:
        del inputs
        return float(np.mean(outputs[output]))

    check.__qualname__ = f"output_quality({output!r})"
    return check


def import_quality_check(spec: str) -> QualityCheck:
    """The quality check named by ``"package.module:function"`` (imported).

    Example:
        >>> import_quality_check("opifex.deploy._canary:output_quality")("y").__qualname__
        "output_quality('y')"
    """
    module, _, attribute = spec.partition(":")
    if not module or not attribute:
        raise ValueError(f"a quality check must be named 'package.module:function', got {spec!r}")
    found = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{spec!r} is not callable")
    return found


class VersionStats(NamedTuple):
    """One version's window of requests.

    Attributes:
        version: the version.
        total: requests observed since it became stable or canary.
        count: requests in the window (the last ``window``).
        error_rate: the fraction of them answered with a status of 500 or more.
        p50_s, p99_s: latency percentiles (seconds) of the uncached ones (NaN: none).
        quality: the mean quality (NaN: no quality check or no value yet; inf: a check failed).
        quality_count: the quality values in the window.
        latency_count: the latencies in the window.
    """

    version: str
    total: int
    count: int
    error_rate: float
    p50_s: float
    p99_s: float
    quality: float
    quality_count: int
    latency_count: int


class _Window:
    """The last ``size`` outcomes of one version."""

    def __init__(self, version: str, size: int) -> None:
        self.version = version
        self.total = 0
        self.errors: collections.deque[bool] = collections.deque(maxlen=size)
        self.latencies: collections.deque[float] = collections.deque(maxlen=size)
        self.quality: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, error: bool, seconds: float | None, quality: float | None) -> None:
        self.total += 1
        self.errors.append(error)
        if seconds is not None:
            self.latencies.append(seconds)
        if quality is not None:
            self.quality.append(quality)

    def stats(self) -> VersionStats:
        count = len(self.errors)
        nan = float("nan")
        p50, p99 = (
            (float(v) for v in np.percentile(self.latencies, [50, 99]))
            if self.latencies
            else (nan, nan)
        )
        return VersionStats(
            version=self.version,
            total=self.total,
            count=count,
            error_rate=sum(self.errors) / count if count else nan,
            p50_s=p50,
            p99_s=p99,
            quality=float(np.mean(self.quality)) if self.quality else nan,
            quality_count=len(self.quality),
            latency_count=len(self.latencies),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    """A rollback or a promotion, and why.

    Attributes:
        action: ``"rollback"`` or ``"promote"``.
        name: the registered name.
        version: the canary version decided on.
        stable: the stable version it was compared with (for a promotion: the one replaced).
        reasons: the checks that failed (rollback), ``["healthy"]`` (promotion) or
            ``["manual"]``, ``[...]`` as given to :meth:`AdaptiveDeploymentSystem.rollback`.
        evidence: the numbers: both versions' :class:`VersionStats` as dicts, the thresholds,
            the canary's age (seconds of ``clock``).
        time: ``clock()`` at the decision.
    """

    action: str
    name: str
    version: str
    stable: str
    reasons: tuple[str, ...]
    evidence: dict[str, Any]
    time: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers as strings)."""
        return _finite(dataclasses.asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _share(request_key: str) -> int:
    """The request's place in ``[0, 10000)``: from the hex key, or a hash of any other key."""
    head = request_key[:8]
    if not _HEX.fullmatch(head):
        head = hashlib.sha256(request_key.encode()).hexdigest()[:8]
    return int(head, 16) % _SHARES


def _record_event(registry: Registry, name: str, action: str, **fields: Any) -> None:
    """Append a decision to the registry's event log (under its lock, as the registry does)."""
    store = registry._store  # the registry's own event log; no public writer for it yet
    with store.lock(store.join(name)):
        registry._log(name, action, **fields)


class AdaptiveDeploymentSystem:
    """Canary roll-out of one registered name with automatic rollback (see the module doc).

    Args:
        registry: the :class:`Registry` (or its root) whose ``stable`` / ``canary`` channels
            say what to serve; decisions are written to it.
        name: the registered name.
        canary_percentage: the share of requests sent to the canary, in ``[0, 100]`` (the
            checks need both versions to get ``min_requests`` requests).
        rollback_threshold: how much higher the canary's error rate may be (absolute).
        latency_threshold: how much higher its p99 latency may be (relative: 0.5 is 50 %).
        latency_atol: an absolute slack (seconds) added to the latency bound: over a few
            dozen requests the p99 is nearly the maximum, which one pause of the machine sets.
        quality_threshold: how much worse its mean quality may be (relative to the stable
            one's; default ``rollback_threshold``).
        quality_atol: an absolute slack added to the quality bound (a stable quality of 0).
        window: requests kept per version; also what a canary must answer to be promoted.
        min_requests: requests both versions must have answered before any check.
        quality_check: ``quality_check(inputs, outputs) -> float`` on each answered
            request (lower is better); one that raises or returns NaN counts as ``inf``.
        auto_promote: promote a canary that has answered ``window`` requests healthily.
        promote_after_s: and that has run at least this long (seconds of ``clock``).
        clock: monotonic seconds (a fake one in tests).
        load: ``load(name, version) -> Servable`` (default ``registry.load``).
        warm: called on each newly loaded servable before any request is routed to it
            (compile it for the batch sizes it will see).

    Raises:
        NotInRegistryError: ``name`` has no stable version.
        ValueError: an option out of range.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from opifex.deploy import Registry, Signature, TensorSpec, export_function
        >>> from opifex.deploy._service import RequestOutcome
        >>> sig = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
        >>> registry = Registry(tempfile.mkdtemp())
        >>> for scale in (2.0, 3.0):  # v1 right, v2 wrong
        ...     fn = export_function(lambda x, s=scale: {"y": s * x}, sig, name="double")
        ...     _ = registry.publish("double", fn)
        >>> registry.promote("double", "v1"); registry.promote("double", "v2", "canary")
        >>> def gap(inputs, outputs):  # the error of y = 2 x
        ...     return float(np.abs(outputs["y"] - 2 * inputs["x"]).max())
        >>> system = AdaptiveDeploymentSystem(
        ...     registry, "double", canary_percentage=50, min_requests=5, quality_check=gap
        ... )
        >>> for i in range(40):
        ...     version, servable = system.route(f"request-{i}")
        ...     inputs = {"x": np.array([float(i)], np.float32)}
        ...     outcome = RequestOutcome(200, 0.001, inputs, servable(inputs), False)
        ...     _ = system.observe(version, outcome)
        >>> system.canary_version, registry.channels("double")
        (None, {'stable': 'v1', 'canary': None})
        >>> decision = system.decisions[0]
        >>> decision.action, decision.version, decision.reasons
        ('rollback', 'v2', ('quality',))
    """

    def __init__(
        self,
        registry: Registry | str,
        name: str,
        *,
        canary_percentage: float = 10.0,
        rollback_threshold: float = 0.05,
        latency_threshold: float = 0.5,
        latency_atol: float = 0.005,
        quality_threshold: float | None = None,
        quality_atol: float = 1e-6,
        window: int = 200,
        min_requests: int = 20,
        quality_check: QualityCheck | None = None,
        auto_promote: bool = False,
        promote_after_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        load: Callable[[str, str], Servable] | None = None,
        warm: Callable[[Servable], None] | None = None,
    ) -> None:
        quality_threshold = rollback_threshold if quality_threshold is None else quality_threshold
        self.check_options(
            canary_percentage=canary_percentage,
            rollback_threshold=rollback_threshold,
            latency_threshold=latency_threshold,
            latency_atol=latency_atol,
            quality_threshold=quality_threshold,
            quality_atol=quality_atol,
            window=window,
            min_requests=min_requests,
            promote_after_s=promote_after_s,
            auto_promote=auto_promote,
        )
        if quality_check is not None and not callable(quality_check):
            raise TypeError(f"quality_check must be callable or None, got {quality_check!r}")
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self.name = name
        self.canary_percentage = float(canary_percentage)
        self.rollback_threshold = float(rollback_threshold)
        self.latency_threshold = float(latency_threshold)
        self.latency_atol = float(latency_atol)
        self.quality_threshold = float(quality_threshold)
        self.quality_atol = float(quality_atol)
        self.window = window
        self.min_requests = min_requests
        self.quality_check = quality_check
        self.auto_promote = auto_promote
        self.promote_after_s = float(promote_after_s)
        self.clock = clock
        self._load = load if load is not None else self.registry.load
        self._warm = warm
        self._lock = threading.RLock()
        self._generation = 0  # +1 on every change of what is served
        self._writing = 0  # decisions being written to the registry
        self._stable: tuple[str, Servable] | None = None
        self._canary: tuple[str, Servable] | None = None
        self._windows: dict[str, _Window] = {}
        self._canary_since = clock()
        self._decisions: list[Decision] = []
        self._quality_failures = 0
        if self.registry.channels(name)["stable"] is None:
            raise NotInRegistryError(
                f"{name!r} has no stable version in {self.registry.root!r}; promote one first"
            )
        self.sync()

    @staticmethod
    def check_options(
        *,
        canary_percentage: float = 10.0,
        rollback_threshold: float = 0.05,
        latency_threshold: float = 0.5,
        latency_atol: float = 0.005,
        quality_threshold: float | None = None,
        quality_atol: float = 1e-6,
        window: int = 200,
        min_requests: int = 20,
        promote_after_s: float = 0.0,
        auto_promote: bool = False,
    ) -> None:
        """Raise ``ValueError`` naming the first option out of range (the defaults pass).

        Example:
            >>> AdaptiveDeploymentSystem.check_options(canary_percentage=150)
            Traceback (most recent call last):
            ...
            ValueError: canary_percentage must be in [0, 100], got 150
        """
        if not (_is_number(canary_percentage) and 0.0 <= canary_percentage <= 100.0):
            raise ValueError(f"canary_percentage must be in [0, 100], got {canary_percentage}")
        if quality_threshold is None:
            quality_threshold = rollback_threshold
        for label, value in (
            ("rollback_threshold", rollback_threshold),
            ("latency_threshold", latency_threshold),
            ("latency_atol", latency_atol),
            ("quality_threshold", quality_threshold),
            ("quality_atol", quality_atol),
            ("promote_after_s", promote_after_s),
        ):
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        if not isinstance(min_requests, int) or isinstance(min_requests, bool) or min_requests < 1:
            raise ValueError(f"min_requests must be an integer >= 1, got {min_requests!r}")
        if not isinstance(window, int) or isinstance(window, bool) or window < min_requests:
            raise ValueError(
                f"window must be an integer >= min_requests ({min_requests}), got {window!r}"
            )
        if not isinstance(auto_promote, bool):
            raise ValueError(f"auto_promote must be True or False, got {auto_promote!r}")

    def __repr__(self) -> str:
        return (
            f"AdaptiveDeploymentSystem({self.name!r}, stable={self.stable_version!r}, "
            f"canary={self.canary_version!r}, canary_percentage={self.canary_percentage})"
        )

    # ------------------------------------------------------------------------ what is served

    @property
    def stable_version(self) -> str:
        """The version answering the requests not sent to the canary."""
        with self._lock:
            assert self._stable is not None
            return self._stable[0]

    @property
    def stable_servable(self) -> Servable:
        """The stable version's servable."""
        with self._lock:
            assert self._stable is not None
            return self._stable[1]

    @property
    def canary_version(self) -> str | None:
        """The canary version, or ``None`` when there is no canary."""
        with self._lock:
            return self._canary[0] if self._canary is not None else None

    @property
    def decisions(self) -> list[Decision]:
        """The decisions taken by this system, oldest first."""
        with self._lock:
            return list(self._decisions)

    def sync(self) -> bool:
        """Follow the registry's channels: load and warm new versions, then switch to them.

        A version is loaded and warmed before any request is routed to it; the switch is
        atomic. A read of the channels that a decision of this system overtook, or that
        started while a decision was being written to the registry, is discarded (the next
        call reads them again).

        Returns:
            Whether the stable or canary version served changed.

        Raises:
            Exception: what loading or warming a new version raised (nothing is switched).
        """
        with self._lock:
            generation = self._generation
            stale = self._writing > 0  # the channels do not show a decision yet
            loaded = dict(entry for entry in (self._stable, self._canary) if entry is not None)
        if stale:
            return False
        channels = self.registry.channels(self.name)
        stable, canary = channels["stable"], channels["canary"]
        if stable is None:  # never unset by the registry's API: keep serving what we have
            logger.warning("%r has no stable version any more; still serving the last", self.name)
            stable = self.stable_version
        if canary == stable:
            canary = None
        fresh = {}
        for version in (stable, canary):
            if version is not None and version not in loaded and version not in fresh:
                servable = self._load(self.name, version)
                if self._warm is not None:
                    self._warm(servable)
                fresh[version] = servable
        with self._lock:
            if self._generation != generation:
                return False
            servables = {**loaded, **fresh}
            changed = False
            if self._stable is None or self._stable[0] != stable:
                self._stable = (stable, servables[stable])
                self._windows[stable] = _Window(stable, self.window)
                changed = True
            if self.canary_version != canary:
                self._canary = None if canary is None else (canary, servables[canary])
                if canary is not None:
                    self._windows[canary] = _Window(canary, self.window)
                self._canary_since = self.clock()
                changed = True
            if changed:
                self._generation += 1
                self._windows = {v: w for v, w in self._windows.items() if v in (stable, canary)}
        if changed:
            logger.info(
                "%s: serving stable %s, canary %s (%.4g %%)",
                self.name,
                stable,
                canary,
                self.canary_percentage,
            )
        return changed

    def route(self, request_key: str) -> tuple[str, Servable]:
        """``(version, servable)`` for a request: the canary for its share of keys.

        Args:
            request_key: identifies the request (the service passes the SHA-256 of its
                body); the same key always gets the same version while the canary runs.
        """
        with self._lock:
            if self._canary is not None and _share(request_key) < round(
                self.canary_percentage * _SHARES / 100
            ):
                return self._canary
            assert self._stable is not None
            return self._stable

    # ------------------------------------------------------------------------ watching

    def observe(self, version: str, outcome: RequestOutcome) -> Decision | None:
        """Record how a request answered by ``version`` went, and decide if it is time.

        Args:
            version: the version :meth:`route` gave the request.
            outcome: its status, latency, inputs, outputs and cache flag.

        Returns:
            The decision taken on this request, if any.
        """
        error = outcome.status >= 500
        quality = None
        if self.quality_check is not None and not error and outcome.outputs is not None:
            quality = self._quality(outcome)
        seconds = None if outcome.cached or error else float(outcome.seconds)
        with self._lock:
            window = self._windows.get(version)
            if window is None:  # routed before a switch: not a version watched any more
                return None
            window.add(error, seconds, quality)
            if self._canary is None:
                return None
            failed = self._failed_checks()
            if failed:
                decision = self._decide("rollback", tuple(failed))
            elif self.auto_promote and self._healthy_long_enough():
                decision = self._decide("promote", ("healthy",))
            else:
                return None
        self._write(decision)
        return decision

    def _quality(self, outcome: RequestOutcome) -> float:
        assert self.quality_check is not None and outcome.outputs is not None
        try:
            value = float(self.quality_check(outcome.inputs, outcome.outputs))
        except Exception:
            self._quality_failures += 1
            if self._quality_failures == 1:
                logger.exception("%s: the quality check failed (counted as inf)", self.name)
            return math.inf
        return value if not math.isnan(value) else math.inf

    def stats(self) -> dict[str, VersionStats]:
        """The window of the stable version and of the canary, by version."""
        with self._lock:
            return {version: window.stats() for version, window in self._windows.items()}

    def _failed_checks(self) -> list[str]:
        """The checks the canary fails against stable now (``[]``: none, or too few requests)."""
        assert self._stable is not None and self._canary is not None
        stable = self._windows[self._stable[0]].stats()
        canary = self._windows[self._canary[0]].stats()
        enough = self.min_requests
        if min(stable.count, canary.count) < enough:
            return []
        failed = []
        if canary.error_rate > stable.error_rate + self.rollback_threshold:
            failed.append("error_rate")
        if min(stable.latency_count, canary.latency_count) >= enough and canary.p99_s > (
            stable.p99_s * (1 + self.latency_threshold) + self.latency_atol
        ):
            failed.append("p99_latency")
        if min(stable.quality_count, canary.quality_count) >= enough and math.isfinite(
            stable.quality
        ):
            bound = stable.quality + self.quality_threshold * abs(stable.quality)
            if canary.quality > bound + self.quality_atol:
                failed.append("quality")
        return failed

    def _healthy_long_enough(self) -> bool:
        assert self._canary is not None
        canary = self._windows[self._canary[0]]
        return (
            canary.total >= self.window
            and self.clock() - self._canary_since >= self.promote_after_s
        )

    def _evidence(self) -> dict[str, Any]:
        return {
            "stats": {v: w.stats()._asdict() for v, w in self._windows.items()},
            "canary_percentage": self.canary_percentage,
            "rollback_threshold": self.rollback_threshold,
            "latency_threshold": self.latency_threshold,
            "latency_atol": self.latency_atol,
            "quality_threshold": self.quality_threshold,
            "quality_atol": self.quality_atol,
            "min_requests": self.min_requests,
            "window": self.window,
            "canary_age_s": self.clock() - self._canary_since,
        }

    # ------------------------------------------------------------------------ deciding

    def rollback(self, reasons: tuple[str, ...] = ("manual",)) -> Decision | None:
        """Stop the canary now: no request is routed to it after this; the registry follows.

        Returns:
            The decision, or ``None`` without a canary.
        """
        return self._decide_now("rollback", tuple(reasons))

    def promote(self, reasons: tuple[str, ...] = ("manual",)) -> Decision | None:
        """Make the canary the stable version now (registry included).

        Returns:
            The decision, or ``None`` without a canary.
        """
        return self._decide_now("promote", tuple(reasons))

    def _decide_now(self, action: str, reasons: tuple[str, ...]) -> Decision | None:
        with self._lock:
            if self._canary is None:
                return None
            decision = self._decide(action, reasons)
        self._write(decision)
        return decision

    def _decide(self, action: str, reasons: tuple[str, ...]) -> Decision:
        """Switch the routing (the caller holds the routing lock); :meth:`_write` follows."""
        assert self._stable is not None and self._canary is not None
        stable, canary = self._stable[0], self._canary[0]
        decision = Decision(
            action, self.name, canary, stable, reasons, _finite(self._evidence()), self.clock()
        )
        self._generation += 1  # a channel read that started before this is stale
        if action == "promote":
            self._stable = self._canary
            self._windows = {canary: _Window(canary, self.window)}
        else:
            self._windows = {stable: self._windows[stable]}
        self._canary = None
        self._decisions.append(decision)
        self._writing += 1
        stats = decision.evidence["stats"]
        log = logger.warning if action == "rollback" else logger.info
        log(
            "%s: canary %s %s (%s) against stable %s; canary %s, stable %s",
            self.name,
            canary,
            "rolled back" if action == "rollback" else "promoted",
            ", ".join(reasons),
            stable,
            stats.get(canary),
            stats.get(stable),
        )
        return decision

    def _write(self, decision: Decision) -> None:
        """Write ``decision`` to the registry: in a worker thread on an event loop, else now."""
        try:
            asyncio.get_running_loop().run_in_executor(None, self._record, decision)
        except RuntimeError:  # no event loop in this thread (or it is closing): write now
            self._record(decision)

    def _record(self, decision: Decision) -> None:
        """The decision's event, and the channels changed (blocking: file system, store)."""
        try:
            _record_event(
                self.registry,
                self.name,
                f"canary_{decision.action}",
                version=decision.version,
                stable=decision.stable,
                reasons=list(decision.reasons),
                evidence=decision.evidence,
            )
            if decision.action == "promote":
                self.registry.promote(self.name, decision.version, "stable")
            if self.registry.channels(self.name)["canary"] == decision.version:
                self.registry.end_canary(self.name)
        except Exception:  # the routing has switched here; other processes will not follow
            logger.exception("%s: could not write the %s of %s to the registry", self.name,
                             decision.action, decision.version)  # fmt: skip
        finally:
            with self._lock:
                self._writing -= 1

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary: versions, split, windows and the decisions taken.

        Example:
            ``system.status()["canary"]`` is the canary version or ``None``.
        """
        with self._lock:
            return _finite(
                {
                    "name": self.name,
                    "stable": self.stable_version,
                    "canary": self.canary_version,
                    "canary_percentage": self.canary_percentage,
                    "stats": {v: w.stats()._asdict() for v, w in self._windows.items()},
                    "decisions": [d.to_json() for d in self._decisions],
                }
            )
