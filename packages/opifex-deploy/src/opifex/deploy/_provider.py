"""Serve what a registry's channels point to, and follow them while serving.

:class:`RegistryTable` is the :class:`~opifex.deploy._service.SolverTable` of a
:class:`~opifex.deploy.Registry`: for every name with a ``stable`` version (or the names
given), an :class:`~opifex.deploy._canary.AdaptiveDeploymentSystem` serves that version and,
while the ``canary`` channel points at another one, sends the canary its share of the
requests and watches it. :meth:`RegistryTable.refresh` reads the channels again (and finds
new names); :meth:`RegistryTable.start` does so every ``poll_interval_s`` seconds in a
background thread. A new version is loaded (its hash verified) and warmed, compiled for
every batch size the service will call it with, before a request is routed to it; a version
that fails to load is logged and the previous one keeps serving.

Several processes serving one registry (:class:`~opifex.deploy._replicas.ReplicaSet`, or
uvicorn's ``--workers``) stay consistent through it: a rollback or promotion decided in one
is written to the registry's ``channels.json``, and the others follow it within one poll.

:func:`create_registry_app` builds the whole service; :func:`app_from_environment` builds it
from the ``OPIFEX_SERVE_CONFIG`` environment variable (JSON), for uvicorn's
``--factory`` and for worker processes (``opifex serve``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import numpy as np
from starlette.applications import Starlette

from ._batching import bucket_sizes
from ._canary import (
    AdaptiveDeploymentSystem,
    QualityCheck,
    import_quality_check,
    output_quality,
)
from ._registry import Registry
from ._service import RequestOutcome, Servable, SolverTable, create_app

logger = logging.getLogger(__name__)

SERVE_CONFIG_ENV = "OPIFEX_SERVE_CONFIG"


def warm_servable(servable: Servable, buckets: Sequence[int]) -> None:
    """Call ``servable`` once on zeros for each batch size in ``buckets`` (compiles them).

    Example:
        >>> from opifex.deploy import Signature, TensorSpec
        >>> class Double:
        ...     signature = Signature(
        ...         (TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),)
        ...     )
        ...     sha256, sizes = "d0", []
        ...     def __call__(self, inputs):
        ...         self.sizes.append(len(inputs["x"]))
        ...         return {"y": 2 * inputs["x"]}
        >>> double = Double()
        >>> warm_servable(double, (1, 2, 4))
        >>> double.sizes
        [1, 2, 4]
    """
    for size in buckets:
        servable({s.name: np.zeros((size, *s.shape), s.dtype) for s in servable.signature.inputs})


class RegistryTable(SolverTable):
    """The solvers of a registry, with canaries, following its channels (see the module doc).

    Args:
        registry: a :class:`Registry` or its root (a directory or an fsspec URL).
        names: serve only these names (default: every name with a stable version, including
            names published later).
        poll_interval_s: how often :meth:`start`'s thread reads the channels.
        quality_check: a quality check for every name, or a mapping name -> check (see
            :class:`AdaptiveDeploymentSystem`).
        warm: called on every servable before it serves (:func:`warm_servable` with the
            service's batch sizes, in :func:`create_registry_app`).
        load: ``load(name, version) -> Servable`` (default ``registry.load``).
        **canary_options: the other keyword arguments of :class:`AdaptiveDeploymentSystem`
            (``canary_percentage``, ``rollback_threshold``, ``min_requests``, ...).

    Raises:
        Exception: what loading or warming a version raised at construction.

    Example:
        >>> import tempfile
        >>> import jax.numpy as jnp
        >>> from opifex.deploy import Registry, Signature, TensorSpec, export_function
        >>> sig = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
        >>> registry = Registry(tempfile.mkdtemp())
        >>> _ = registry.publish("double", export_function(lambda x: {"y": 2 * x}, sig, name="d"))
        >>> _ = registry.publish("double", export_function(lambda x: {"y": x + x}, sig, name="d"))
        >>> registry.promote("double", "v1")
        >>> table = RegistryTable(registry, canary_percentage=50)
        >>> table.get("double")[0], table.systems["double"].canary_version
        ('v1', None)
        >>> registry.promote("double", "v2", "canary")
        >>> table.refresh(), table.systems["double"].canary_version
        (['double'], 'v2')
    """

    def __init__(
        self,
        registry: Registry | str,
        names: Sequence[str] | None = None,
        *,
        poll_interval_s: float = 1.0,
        quality_check: QualityCheck | Mapping[str, QualityCheck] | None = None,
        warm: Callable[[Servable], None] | None = None,
        load: Callable[[str, str], Servable] | None = None,
        **canary_options: Any,
    ) -> None:
        super().__init__()
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self.poll_interval_s = float(poll_interval_s)
        self._names = None if names is None else list(names)
        self._quality_check = quality_check
        self._warm = warm
        self._load = load
        self._options = canary_options
        self._systems: dict[str, AdaptiveDeploymentSystem] = {}
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh(strict=True)

    @property
    def systems(self) -> dict[str, AdaptiveDeploymentSystem]:
        """The canary system of every name served."""
        return dict(self._systems)

    def refresh(self, *, strict: bool = False) -> list[str]:
        """Read the channels again; load, warm and switch to what changed.

        Args:
            strict: raise what loading a version raised (default: log it, keep serving the
                version before it, and try again at the next refresh).

        Returns:
            The names whose stable or canary version changed (or that are new).
        """
        changed = []
        with self._refreshing:
            names = self._names if self._names is not None else self.registry.names()
            for name in names:
                try:
                    if self._refresh_one(name):
                        changed.append(name)
                except Exception:
                    if strict:
                        raise
                    logger.exception("could not follow the registry's channels of %r", name)
        return changed

    def _refresh_one(self, name: str) -> bool:
        system = self._systems.get(name)
        if system is None:
            if self.registry.channels(name)["stable"] is None:
                logger.info("%r has no stable version yet: not served", name)
                return False
            system = AdaptiveDeploymentSystem(
                self.registry,
                name,
                quality_check=self._check_for(name),
                load=self._load,
                warm=self._warm,
                **self._options,
            )
            self._systems[name] = system  # before set(): route() finds it for a served name
        elif not system.sync():
            if name in self and self.get(name)[0] == system.stable_version:
                return False
        self.set(name, system.stable_version, system.stable_servable)
        return True

    def _check_for(self, name: str) -> QualityCheck | None:
        if isinstance(self._quality_check, Mapping):
            return self._quality_check.get(name)
        return self._quality_check

    def route(self, name: str, request_key: str) -> tuple[str, Servable]:
        """The canary for its share of request keys, else the stable version."""
        system = self._systems.get(name)
        if system is None:
            return super().route(name, request_key)
        return system.route(request_key)

    def observe(self, name: str, version: str, outcome: RequestOutcome) -> None:
        """Hand the outcome to the name's canary system, which may decide on the canary."""
        system = self._systems.get(name)
        if system is not None:
            system.observe(version, outcome)
            stable = system.stable_version
            if self.get(name)[0] != stable:  # a promotion: list the new stable version
                self.set(name, stable, system.stable_servable)

    def status(self) -> dict[str, dict[str, Any]]:
        """Every name's :meth:`AdaptiveDeploymentSystem.status` (JSON-ready)."""
        return {name: system.status() for name, system in sorted(self._systems.items())}

    # ------------------------------------------------------------------------ polling

    def start(self) -> None:
        """Refresh every ``poll_interval_s`` seconds in a daemon thread (until :meth:`stop`)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="opifex-registry-poll", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the polling thread (waits for a refresh in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()


def create_registry_app(
    registry: Registry | str,
    names: Sequence[str] | None = None,
    *,
    poll_interval_s: float = 1.0,
    canary: Mapping[str, Any] | None = None,
    **service_options: Any,
) -> Starlette:
    """The HTTP service of a registry: stable versions, canaries, following its channels.

    Args:
        registry: a :class:`Registry` or its root.
        names: serve only these names (default: all with a stable version).
        poll_interval_s: how often the channels are read again while the service runs.
        canary: keyword arguments of :class:`RegistryTable` / :class:`AdaptiveDeploymentSystem`
            (``canary_percentage``, ``rollback_threshold``, ``quality_check``, ...).
        **service_options: keyword arguments of ``create_app`` (``max_batch_size``, ...).

    Returns:
        The Starlette application; ``app.state.table`` is its :class:`RegistryTable`, polled
        while the application runs (its lifespan).

    Example:
        >>> import asyncio, tempfile
        >>> import httpx
        >>> from opifex.deploy import Registry, Signature, TensorSpec, export_function
        >>> sig = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
        >>> registry = Registry(tempfile.mkdtemp())
        >>> _ = registry.publish("double", export_function(lambda x: {"y": 2 * x}, sig, name="d"))
        >>> registry.promote("double", "v1")
        >>> app = create_registry_app(registry, max_batch_size=2)  # loaded and warmed here
        >>> async def predict(body):
        ...     transport = httpx.ASGITransport(app=app)
        ...     async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        ...         return await client.post("/v1/solvers/double/predict", json=body)
        >>> asyncio.run(predict({"instance": {"x": 1.5}})).json()
        {'outputs': {'y': 3.0}, 'version': 'v1', 'cached': False}
    """
    max_batch_size = service_options.get("max_batch_size", 32)
    table = RegistryTable(
        registry,
        names,
        poll_interval_s=poll_interval_s,
        warm=functools.partial(warm_servable, buckets=bucket_sizes(max_batch_size)),
        **dict(canary or {}),
    )
    app = create_app(table, **service_options)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Starlette) -> AsyncIterator[Any]:
        async with inner(application) as state:
            table.start()
            try:
                yield state
            finally:
                table.stop()

    app.router.lifespan_context = lifespan
    app.state.table = table
    return app


def serve_config(
    registry: str,
    names: Sequence[str] | None = None,
    *,
    poll_interval_s: float = 1.0,
    canary: Mapping[str, Any] | None = None,
    quality_output: str | None = None,
    quality_check: str | None = None,
    service: Mapping[str, Any] | None = None,
) -> str:
    """The JSON that :func:`app_from_environment` reads from ``OPIFEX_SERVE_CONFIG``.

    Args:
        registry: the registry's root (a directory or an fsspec URL).
        names: serve only these names.
        poll_interval_s: as in :func:`create_registry_app`.
        canary: JSON-ready canary options (``canary_percentage``, ``rollback_threshold``, ...).
        quality_output: the quality check is the mean of this output (:func:`output_quality`).
        quality_check: or ``"package.module:function"``, imported by each process.
        service: JSON-ready options of ``create_app`` (``max_batch_size``, ...).

    Example:
        >>> config = json.loads(serve_config("/srv/registry", canary={"canary_percentage": 5}))
        >>> config["registry"], config["canary"]
        ('/srv/registry', {'canary_percentage': 5})
    """
    if quality_output is not None and quality_check is not None:
        raise ValueError("give quality_output or quality_check, not both")
    config = {
        "registry": os.fspath(registry),
        "names": None if names is None else list(names),
        "poll_interval_s": poll_interval_s,
        "canary": dict(canary or {}),
        "quality_output": quality_output,
        "quality_check": quality_check,
        "service": dict(service or {}),
    }
    return json.dumps(config, sort_keys=True)


def app_from_environment() -> Starlette:
    """:func:`create_registry_app` configured by ``$OPIFEX_SERVE_CONFIG`` (:func:`serve_config`).

    For ``uvicorn --factory opifex.deploy._provider:app_from_environment`` and the worker
    processes of ``opifex serve --workers N``. Turns on the persistent compilation cache
    (``opifex.core.enable_compilation_cache``), as the ``opifex`` command does.

    Raises:
        RuntimeError: the variable is not set, or is not the JSON of :func:`serve_config`.

    Example:
        From a shell, two workers on one port, each following the registry::

            export OPIFEX_SERVE_CONFIG='{"registry": "./registry", "poll_interval_s": 0.5}'
            uvicorn --factory opifex.deploy._provider:app_from_environment --workers 2
    """
    from opifex.core import enable_compilation_cache

    raw = os.environ.get(SERVE_CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"${SERVE_CONFIG_ENV} is not set; see opifex.deploy serve_config()")
    try:
        config = json.loads(raw)
        registry = config["registry"]
    except (ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"${SERVE_CONFIG_ENV} is not a serve configuration: {error}") from None
    enable_compilation_cache()
    canary = dict(config.get("canary") or {})
    if config.get("quality_output"):
        canary["quality_check"] = output_quality(config["quality_output"])
    elif config.get("quality_check"):
        canary["quality_check"] = import_quality_check(config["quality_check"])
    return create_registry_app(
        registry,
        config.get("names"),
        poll_interval_s=config.get("poll_interval_s", 1.0),
        canary=canary,
        **dict(config.get("service") or {}),
    )
