"""The service's Prometheus metrics, in a registry of their own (never the process-global one).

| metric | type | labels |
|---|---|---|
| ``opifex_request_latency_seconds`` | histogram | solver, version, status |
| ``opifex_errors_total`` (answers with a status >= 400) | counter | solver, version, status |
| ``opifex_batch_size`` (examples per solver call) | histogram | solver, version |
| ``opifex_padded_batch_size`` (the bucket padded to) | histogram | solver, version |
| ``opifex_cache_hits_total``, ``opifex_cache_misses_total`` | counters | solver |

A request for a solver that is not served is counted under ``solver="unknown"``, so that a
client cannot create label values at will.

Example:
    >>> metrics = ServiceMetrics()
    >>> metrics.observe_request("double", "v1", 200, seconds=0.004)
    >>> metrics.observe_request("double", "v1", 422, seconds=0.001)
    >>> text = metrics.render().decode()
    >>> 'opifex_errors_total{solver="double",status="422",version="v1"} 1.0' in text
    True
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = tuple(float(2**k) for k in range(11))


class ServiceMetrics:
    """Request latency, errors, batch sizes and cache hits of one service (see the module doc).

    Args:
        registry: where the metrics are registered; ``None``: a new registry.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        request_labels = ("solver", "version", "status")
        self.request_latency = Histogram(
            "opifex_request_latency_seconds",
            "Time from receiving a predict request to its answer.",
            request_labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "opifex_errors",
            "Predict requests answered with a status of 400 or more.",
            request_labels,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "opifex_batch_size",
            "Examples per solver call, before padding.",
            ("solver", "version"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.padded_batch_size = Histogram(
            "opifex_padded_batch_size",
            "Batch size of each solver call after padding to a bucket.",
            ("solver", "version"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "opifex_cache_hits",
            "Requests answered from the result cache.",
            ("solver",),
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "opifex_cache_misses",
            "Requests not found in the result cache.",
            ("solver",),
            registry=self.registry,
        )
        # the metrics of each label set, looked up once (``labels()`` costs microseconds a call;
        # the sets are few: served names and versions, and "unknown" for any other name)
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._calls: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._lookups: dict[tuple[str, bool], Any] = {}

    def observe_request(self, solver: str, version: str, status: int, seconds: float) -> None:
        """Record one answered predict request (and an error if ``status >= 400``)."""
        key = (solver, version, status)
        children = self._requests.get(key)
        if children is None:
            labels = {"solver": solver, "version": version, "status": str(status)}
            errors = self.errors.labels(**labels) if status >= 400 else None
            children = self._requests[key] = (self.request_latency.labels(**labels), errors)
        children[0].observe(seconds)
        if children[1] is not None:
            children[1].inc()

    def observe_call(self, solver: str, version: str, size: int, padded_size: int) -> None:
        """Record one solver call on ``size`` examples padded to ``padded_size``."""
        children = self._calls.get((solver, version))
        if children is None:
            children = self._calls[solver, version] = (
                self.batch_size.labels(solver=solver, version=version),
                self.padded_batch_size.labels(solver=solver, version=version),
            )
        children[0].observe(size)
        children[1].observe(padded_size)

    def observe_cache(self, solver: str, *, hit: bool) -> None:
        """Record a cache lookup."""
        child = self._lookups.get((solver, hit))
        if child is None:
            counter = self.cache_hits if hit else self.cache_misses
            child = self._lookups[solver, hit] = counter.labels(solver=solver)
        child.inc()

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)
