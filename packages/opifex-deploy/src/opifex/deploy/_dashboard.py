"""The web dashboard: benchmark results, registered solvers, canary state and live runs.

A :class:`Dashboard` is a page (plain HTML, CSS and JavaScript shipped in
``opifex/deploy/dashboard/``, no build step and nothing fetched from elsewhere) and the small
JSON endpoints it polls. Mount it on the service with ``create_app(..., dashboard=...)``, or
serve it alone with :meth:`Dashboard.app`.

| method and path | answer |
|---|---|
| ``GET /dashboard/`` | the page (``/dashboard`` redirects here) |
| ``GET /dashboard/static/{file}`` | its script and style sheet |
| ``GET /dashboard/api/results`` | ``{"results": [...]}``: a summary per results file |
| ``GET /dashboard/api/solvers`` | ``{"served", "registry", "canary"}`` |
| ``GET /dashboard/api/runs`` | ``{"runs": [...]}``: a summary per live run |
| ``GET /dashboard/api/runs/{id}/points?since=N`` | the run's points from the N-th |
| ``POST /dashboard/api/runs/{id}/points`` | add ``{"step", "value"}`` or ``{"points": [...]}`` |

Errors are ``{"error": "..."}`` with a 4xx status, as in the service.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import importlib.resources
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ._registry import Registry
from ._results import ResultsReader
from ._runlog import RunLog, check_run_id

logger = logging.getLogger(__name__)

_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_CANARY_METHODS = ("dashboard_state", "status", "stats", "snapshot", "state")
_MAX_POINTS_PER_REQUEST = 10_000
_MAX_BODY_BYTES = 2**20


def _asset(name: str) -> bytes:
    return importlib.resources.files("opifex.deploy").joinpath("dashboard", name).read_bytes()


def jsonable(value: Any, depth: int = 8) -> Any:
    """``value`` as plain JSON data, whatever Python and numpy types it holds.

    numpy / JAX scalars and arrays become numbers and lists, dataclasses and named tuples
    objects, enums their names, non-finite floats the strings ``"NaN"``, ``"Infinity"`` and
    ``"-Infinity"``; anything else its (shortened) ``repr``.

    Example:
        >>> import numpy as np
        >>> jsonable({"rate": np.float32(0.5), "gap": float("inf"), "seen": (1, 2)})
        {'rate': 0.5, 'gap': 'Infinity', 'seen': [1, 2]}
    """
    if depth < 0:
        return repr(value)[:80]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif isinstance(value, tuple) and hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth - 1) for v in list(value)[:1000]]
    if hasattr(value, "tolist"):  # numpy / JAX arrays and scalars
        try:
            return jsonable(value.tolist(), depth - 1)
        except (TypeError, ValueError):
            pass
    return repr(value)[:200]


def canary_state(canary: Any) -> Any:
    """The live state of a canary roll-out, as JSON data (``None`` without one).

    ``canary`` is an object with one of the methods (or attributes) ``dashboard_state``,
    ``status`` (as :class:`~opifex.deploy.AdaptiveDeploymentSystem`), ``stats``, ``snapshot``
    or ``state``, tried in this order, or a callable returning a mapping, or a list or tuple
    of these (one system per registered name): a list of states. An exception becomes
    ``{"error": "..."}``: the dashboard keeps working.

    Example:
        >>> class Canary:
        ...     def stats(self):
        ...         return {"version": "v2", "share": 0.1, "error_rate": 0.0}
        >>> canary_state(Canary())
        {'version': 'v2', 'share': 0.1, 'error_rate': 0.0}
    """
    if canary is None:
        return None
    if isinstance(canary, list | tuple):
        return [canary_state(system) for system in canary]
    try:
        for name in _CANARY_METHODS:
            if hasattr(canary, name):
                attribute = getattr(canary, name)
                return jsonable(attribute() if callable(attribute) else attribute)
        if callable(canary):
            return jsonable(canary())
        return jsonable(canary)
    except Exception as error:
        logger.exception("reading the canary's state failed")
        return {"error": f"{type(error).__name__}: {error}"}


class Dashboard:
    """The dashboard's page and JSON endpoints (see the module doc for the paths).

    Args:
        registry: a :class:`~opifex.deploy.Registry` (or its root: a path or an fsspec URL)
            whose names, versions, channels and recent events are shown; ``None``: none.
        results_dir: the directory of benchmark results (``benchmarks/results``); ``None``:
            none.
        canary: the canary system whose live statistics are shown (see :func:`canary_state`).
        run_log: the :class:`~opifex.deploy.RunLog` of live runs; a new one by default.
        accept_points: serve ``POST .../points`` (turn it off where clients must not write).
        poll_ms: how often the page asks for news, in milliseconds.
        max_versions: the latest versions shown per registered name.
        max_events: the latest registry events shown per name.
        title: the page's title.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     from starlette.testclient import TestClient
        >>> dashboard = Dashboard(poll_ms=500)
        >>> with TestClient(dashboard.app()) as client:
        ...     page = client.get("/dashboard/")
        ...     _ = client.post("/dashboard/api/runs/adam/points", json={"step": 0, "value": 1.5})
        ...     points = client.get("/dashboard/api/runs/adam/points").json()["points"]
        >>> page.status_code, 'data-poll-ms="500"' in page.text, points
        (200, True, [[0, 1.5]])
    """

    def __init__(
        self,
        *,
        registry: Registry | str | os.PathLike | None = None,
        results_dir: str | os.PathLike | None = None,
        canary: Any = None,
        run_log: RunLog | None = None,
        accept_points: bool = True,
        poll_ms: int = 2000,
        max_versions: int = 10,
        max_events: int = 10,
        title: str = "opifex dashboard",
    ) -> None:
        if not isinstance(poll_ms, int) or isinstance(poll_ms, bool) or poll_ms < 50:
            raise ValueError(f"poll_ms must be an int >= 50, got {poll_ms!r}")
        for option, value in (("max_versions", max_versions), ("max_events", max_events)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{option} must be an int >= 1, got {value!r}")
        if run_log is not None and not isinstance(run_log, RunLog):
            raise TypeError(f"run_log must be a RunLog or None, got {type(run_log).__name__}")
        self.registry = Registry(registry) if isinstance(registry, str | os.PathLike) else registry
        self.results = None if results_dir is None else ResultsReader(results_dir)
        self.canary = canary
        self.run_log = run_log if run_log is not None else RunLog()
        self.accept_points = bool(accept_points)
        self.poll_ms = poll_ms
        self.max_versions = max_versions
        self.max_events = max_events
        self.title = title
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}  # versions never change
        page = _asset("index.html").decode()
        page = page.replace("__POLL_MS__", str(poll_ms)).replace("__TITLE__", html.escape(title))
        self._page = page.encode()
        self._assets = {name: _asset(name) for name in _ASSETS}

    # ---------------------------------------------------------------------- the data

    def results_state(self) -> list[dict[str, Any]]:
        """A summary per results file (``opifex.deploy._results.summarise``)."""
        return [] if self.results is None else self.results.read()

    def registry_state(self) -> dict[str, Any] | None:
        """``{"root", "solvers": [...], "error"}`` of the registry (``None`` without one).

        Each solver: ``name``, ``channels`` (``stable`` / ``canary`` version or ``None``),
        ``num_versions``, ``versions`` (the latest ``max_versions``, newest first, with
        ``published``, ``sha256`` and ``platforms``), ``events`` (the latest ``max_events``,
        newest first) and ``error`` (a name that cannot be read is listed with it).
        """
        if self.registry is None:
            return None
        state: dict[str, Any] = {"root": str(self.registry.root), "solvers": [], "error": None}
        try:
            names = self.registry.names()
        except Exception as error:
            state["error"] = f"{type(error).__name__}: {error}"
            return state
        for name in names:
            entry: dict[str, Any] = {"name": name, "channels": {}, "versions": [], "events": []}
            entry["error"] = None
            try:
                versions = self.registry.versions(name)
                entry["num_versions"] = len(versions)
                entry["channels"] = self.registry.channels(name)
                for version in reversed(versions[-self.max_versions :]):
                    entry["versions"].append(self._version(name, version))
                events = self.registry.events(name)[-self.max_events :]
                entry["events"] = jsonable(events[::-1])
            except Exception as error:
                entry["error"] = f"{type(error).__name__}: {error}"
            state["solvers"].append(entry)
        return state

    def _version(self, name: str, version: str) -> dict[str, Any]:
        cached = self._metadata.get((name, version))
        if cached is None:
            metadata = self.registry.metadata(name, version)
            cached = {
                "version": version,
                "published": metadata.get("published"),
                "sha256": metadata.get("sha256"),
                "platforms": jsonable(metadata.get("platforms")),
            }
            self._metadata[(name, version)] = cached
        return cached

    @staticmethod
    def served_state(service: Any) -> list[dict[str, Any]]:
        """What ``service`` (the application's ``SolverService``) serves, a row per solver.

        Each row: ``name``, ``version``, ``sha256``, ``ready`` (compiled) and ``error`` (of a
        failed warm-up). ``[]`` without a service (a dashboard served alone).
        """
        if service is None:
            return []
        readiness = service._readiness()
        return [
            {
                "name": name,
                "version": version,
                "sha256": servable.sha256,
                "ready": readiness.get(name, {}).get("ready", False),
                "error": readiness.get(name, {}).get("error"),
            }
            for name, version, servable in service.table.entries()
        ]

    # ---------------------------------------------------------------------- the handlers

    async def page(self, request: Request) -> Response:
        """``GET /dashboard/``: the page."""
        return Response(self._page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def redirect(self, request: Request) -> Response:
        """``GET /dashboard``: to ``/dashboard/`` (the page's links are relative)."""
        return RedirectResponse(request.url.path + "/", status_code=307)

    async def static(self, request: Request) -> Response:
        """``GET /dashboard/static/{file}``: the script and the style sheet."""
        name = request.path_params["file"]
        if name not in self._assets:
            return _error(404, f"no dashboard file {name!r}")
        return Response(self._assets[name], media_type=_ASSETS[name], headers=_PAGE_HEADERS)

    async def api_results(self, request: Request) -> Response:
        """``GET /dashboard/api/results``."""
        results = await run_in_threadpool(self.results_state)
        return JSONResponse({"results": results}, headers=_API_HEADERS)

    async def api_solvers(self, request: Request) -> Response:
        """``GET /dashboard/api/solvers``: served solvers, the registry, the canary."""
        service = getattr(request.app.state, "service", None)
        answer = {
            "served": self.served_state(service),
            "registry": await run_in_threadpool(self.registry_state),
            "canary": await run_in_threadpool(canary_state, self.canary),
        }
        return JSONResponse(answer, headers=_API_HEADERS)

    async def api_runs(self, request: Request) -> Response:
        """``GET /dashboard/api/runs``: a summary per run."""
        return JSONResponse({"runs": self.run_log.runs()}, headers=_API_HEADERS)

    async def api_points(self, request: Request) -> Response:
        """``GET /dashboard/api/runs/{id}/points?since=N``: points from the N-th added."""
        run_id = request.path_params["run_id"]
        since = request.query_params.get("since", "0")
        if not since.isdigit() or len(since) > 18:
            return _error(422, f"since must be an integer >= 0, got {since!r}")
        try:
            answer = self.run_log.points(run_id, int(since))
        except KeyError:
            return _error(404, f"no run {run_id!r}")
        return JSONResponse(answer, headers=_API_HEADERS)

    async def api_add_points(self, request: Request) -> Response:
        """``POST /dashboard/api/runs/{id}/points``: add points to a run.

        The body is ``{"step": s, "value": v}`` or ``{"points": [[s, v], ...]}`` (or
        ``{"step", "value"}`` objects); values may be ``"NaN"``, ``"Infinity"`` or
        ``"-Infinity"``.
        """
        run_id = request.path_params["run_id"]
        try:
            check_run_id(run_id)
        except ValueError as error:
            return _error(422, str(error))
        try:
            body = await _read_body(request, _MAX_BODY_BYTES)
        except _BodyError as error:
            return _error(error.status, str(error))
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            return _error(400, f"body is not JSON: {type(error).__name__}")
        try:
            points = _points(document)
            added = self.run_log.extend(run_id, points)
        except ValueError as error:
            return _error(422, str(error))
        return JSONResponse({"run": run_id, "added": added}, headers=_API_HEADERS)

    # ---------------------------------------------------------------------- mounting

    def routes(self, prefix: str = "/dashboard") -> list[Route]:
        """The dashboard's routes under ``prefix`` (add them to any Starlette application)."""
        prefix = "/" + prefix.strip("/")
        points = ["GET", "POST"] if self.accept_points else ["GET"]
        handlers: list[tuple[str, Callable[..., Any], list[str]]] = [
            ("", self.redirect, ["GET"]),
            ("/", self.page, ["GET"]),
            ("/static/{file}", self.static, ["GET"]),
            ("/api/results", self.api_results, ["GET"]),
            ("/api/solvers", self.api_solvers, ["GET"]),
            ("/api/runs", self.api_runs, ["GET"]),
            ("/api/runs/{run_id}/points", self._points_endpoint, points),
        ]
        return [
            Route(prefix + path, handler, methods=methods) for path, handler, methods in handlers
        ]

    async def _points_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.api_add_points(request)
        return await self.api_points(request)

    def app(self) -> Starlette:
        """A Starlette application serving only the dashboard (no solvers)."""
        return Starlette(routes=self.routes())


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_API_HEADERS)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _BodyError(413, f"body over the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BodyError(413, f"body over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _BodyError(400, "the client disconnected before sending the body") from None
    return b"".join(chunks)


def _point(item: Any, index: int) -> Any:
    if isinstance(item, Mapping):
        if set(item) != {"step", "value"}:
            raise ValueError(f'point {index} must have the keys "step" and "value"')
        return (item["step"], item["value"])
    return item


def _points(document: Any) -> list[Any]:
    """The ``(step, value)`` pairs of a POST body (checked by ``RunLog.extend``)."""
    if isinstance(document, Mapping) and set(document) == {"step", "value"}:
        return [_point(document, 0)]
    if isinstance(document, Mapping) and set(document) == {"points"}:
        items = document["points"]
        if not isinstance(items, list):
            raise ValueError('"points" must be a list of [step, value] pairs')
        if len(items) > _MAX_POINTS_PER_REQUEST:
            raise ValueError(
                f"{len(items)} points are over the limit of {_MAX_POINTS_PER_REQUEST} a request"
            )
        return [_point(item, i) for i, item in enumerate(items)]
    shown = json.dumps(document)[:80] if isinstance(document, dict | list) else document
    raise ValueError(
        f'body must be {{"step": s, "value": v}} or {{"points": [[s, v], ...]}}, got {shown!r}'
    )
