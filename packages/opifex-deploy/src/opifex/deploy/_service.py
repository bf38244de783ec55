"""The HTTP service: registered solvers behind validation, micro-batching and a result cache.

``create_app`` returns a Starlette (ASGI) application; serve it with uvicorn. Endpoints:

| method and path | answer |
|---|---|
| ``POST /v1/solvers/{name}/predict`` | ``{"outputs": ..., "version": ..., "cached": ...}`` |
| ``GET /v1/solvers`` | every solver: name, version, content hash, signature, readiness |
| ``GET /healthz`` | 200 while the process serves |
| ``GET /readyz`` | 200 once every solver is compiled for every batch size, else 503 |
| ``GET /metrics`` | Prometheus text (``opifex.deploy._metrics``) |
| ``GET /openapi.json`` | OpenAPI 3; each solver's request schema from its signature |

A predict request is JSON, ``{"inputs": {name: batch, ...}}`` (a leading batch axis) or
``{"instance": {name: example, ...}}`` (one example, answered without the batch axis), or
binary: ``Content-Type: application/x-npz`` with a numpy ``.npz`` of the batched inputs.
``Accept: application/x-npz`` answers an ``.npz`` of the outputs (the version and the cache
flag in the ``X-Opifex-Version`` and ``X-Opifex-Cached`` headers). In JSON, a non-finite
output is the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (as in protobuf's JSON).

Everything is checked before the solver sees it. A malformed request gets a 4xx with
``{"error": "..."}``: 404 (no such solver or path), 413 (body over ``max_body_bytes``, or more
than ``max_request_examples`` examples), 415 (another content type), 400 (not JSON, not an
``.npz``), 422 (JSON of the wrong structure; inputs that are missing, unknown, of the wrong
shape or type, NaN or infinite). A solver that raises fails its batch with a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._batching import MicroBatcher, batch_size, bucket_sizes
from ._cache import ResultCache, cache_key, request_digest
from ._metrics import ServiceMetrics
from ._signature import Signature, TensorSpec, coerce_inputs

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_PREDICT_PATH = re.compile(r"/v1/solvers/([^/]+)/predict\Z")
_NPZ = "application/x-npz"
_JSON = "application/json"
_JSON_HEADERS = [(b"content-type", _JSON.encode())]
# what a JSONResponse renders with (compact, UTF-8, no NaN), made once rather than per answer
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class Servable(Protocol):
    """A solver the service can answer with: a typed, batched function and its content hash."""

    @property
    def signature(self) -> Signature:
        """The inputs it takes and the outputs it returns, per example."""
        ...

    @property
    def sha256(self) -> str:
        """A hash of its content: two servables with the same hash compute the same thing."""
        ...

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        """Outputs for a batch: every input and output has a leading batch axis."""
        ...


class RequestOutcome(NamedTuple):
    """How one routed, valid predict request went (:meth:`SolverTable.observe` is told).

    Attributes:
        status: the HTTP status answered (200, or 500 when the solver failed).
        seconds: the time from receiving the request to its answer.
        inputs: the validated input arrays (with the batch axis).
        outputs: the output arrays (with the batch axis); ``None`` when the solver failed.
        cached: whether the answer came from the result cache.
    """

    status: int
    seconds: float
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray] | None
    cached: bool


class SolverTable:
    """The solvers a service answers for: a version and a servable per name.

    Entries may be replaced from any thread while the service runs (``set``); a request in
    flight finishes on the servable it was routed to. ``route`` picks the servable of each
    request: override it to split traffic between versions (a canary), and ``observe`` to be
    told how each request went (``opifex.deploy._provider.RegistryTable`` does both).

    Args:
        solvers: ``name -> (version, servable)``. A name is 1-128 letters, digits, ``.``,
            ``_`` or ``-``, starting with a letter or digit.

    Example:
        >>> import numpy as np
        >>> from opifex.deploy._signature import Signature, TensorSpec
        >>> class Double:
        ...     signature = Signature(
        ...         (TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),)
        ...     )
        ...     sha256 = "d0"
        ...     def __call__(self, inputs):
        ...         return {"y": 2 * inputs["x"]}
        >>> table = SolverTable({"double": ("v1", Double())})
        >>> table.set("double", "v2", Double())
        >>> table.route("double", request_key="ab")[0], table.names()
        ('v2', ['double'])
    """

    def __init__(self, solvers: Mapping[str, tuple[str, Servable]] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, Servable]] = {}
        for name, (version, servable) in (solvers or {}).items():
            self.set(name, version, servable)

    def set(self, name: str, version: str, servable: Servable) -> None:
        """Serve ``servable`` as ``version`` of ``name`` (added, or replacing the entry)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"solver name must be 1-128 letters, digits, '.', '_' or '-', got {name!r}"
            )
        if not isinstance(version, str) or not version:
            raise ValueError(f"version of {name!r} must be a non-empty string, got {version!r}")
        if not isinstance(servable.signature, Signature):
            raise TypeError(f"servable of {name!r} has no Signature: {servable.signature!r}")
        with self._lock:
            self._entries[name] = (version, servable)

    def remove(self, name: str) -> None:
        """Stop serving ``name``; raises ``KeyError`` if it is not served."""
        with self._lock:
            del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """The served names, sorted."""
        with self._lock:
            return sorted(self._entries)

    def get(self, name: str) -> tuple[str, Servable]:
        """``(version, servable)`` of ``name``; raises ``KeyError`` if it is not served."""
        with self._lock:
            return self._entries[name]

    def entries(self) -> list[tuple[str, str, Servable]]:
        """A snapshot of ``(name, version, servable)``, sorted by name."""
        with self._lock:
            return [(name, *self._entries[name]) for name in sorted(self._entries)]

    def route(self, name: str, request_key: str) -> tuple[str, Servable]:
        """``(version, servable)`` that answers a request; by default the entry of ``name``.

        Args:
            name: the solver asked for (served: the service checked).
            request_key: the SHA-256 of the request's body; the same body gets the same key,
                so a split on it sends the same request to the same version.

        Raises:
            KeyError: ``name`` is not served (any more); the request gets a 404.
        """
        del request_key  # the default serves every request with the current entry
        return self.get(name)

    def observe(self, name: str, version: str, outcome: RequestOutcome) -> None:
        """Told how each request routed to ``version`` of ``name`` went; by default nothing.

        Called on the event loop after the answer is ready, for every request whose inputs
        were valid (a malformed request is not the version's doing). Override it to watch
        versions (a canary's error rate, latency and solution quality); it must be quick.
        """
        del name, version, outcome


class _StatusError(Exception):
    """A request answered with an error status: a 4xx before the solver, a 500 from it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _error_body(message: str) -> bytes:
    return _ENCODER.encode({"error": message}).encode()


class _Answer(NamedTuple):
    """A predict response: status, body and headers (``content-length`` added when sent)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


async def _respond(send: Send, answer: _Answer) -> None:
    headers = [(b"content-length", str(len(answer.body)).encode()), *answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


_WANTED_HEADERS = (b"content-type", b"content-length", b"accept")


def _request_headers(scope: Scope) -> dict[bytes, str]:
    """The first value of each header predict reads, by its (lower-case) name."""
    found: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        if key in _WANTED_HEADERS and key not in found:
            found[key] = value.decode("latin-1")
    return found


def _checked_call(servable: Servable) -> Callable[[Mapping[str, np.ndarray]], dict]:
    """``servable`` on a batch, its outputs checked against and cast to its signature."""
    outputs_spec = servable.signature.outputs

    def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = servable(inputs)
        size = batch_size(inputs)
        checked = {}
        for spec in outputs_spec:
            if spec.name not in outputs:
                raise RuntimeError(f"the solver returned no output {spec.name!r}")
            array = np.asarray(outputs[spec.name], dtype=spec.dtype)
            if array.shape != (size, *spec.shape):
                raise RuntimeError(
                    f"the solver returned output {spec.name!r} of shape {array.shape}, "
                    f"expected {(size, *spec.shape)}"
                )
            checked[spec.name] = array
        return checked

    return call


def _json_array(array: np.ndarray) -> Any:
    """``array`` as nested lists; non-finite floats as "NaN", "Infinity", "-Infinity"."""
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return array.tolist()
    values = array.astype(object)
    values[np.isnan(array)] = "NaN"
    values[np.isposinf(array)] = "Infinity"
    values[np.isneginf(array)] = "-Infinity"
    return values.tolist()


# the JSON values an input of each dtype kind takes (bool is not an int here: type() is exact)
_JSON_TYPES = {"b": (bool,), "i": (int,), "u": (int,), "f": (int, float)}
_JSON_TYPE_NAMES = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}


def _check_json_types(
    signature: Signature, payload: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Raise ``ValueError`` unless every value of each input is of its dtype's JSON type.

    numpy converts too much: a string or a boolean to a float, a fraction to an integer
    (truncated), any object to a boolean. A JSON request gets exactly its schema's types
    (``coerce_inputs`` has made ``arrays`` of them: the nested lists of ``payload`` are as
    deep as its arrays have axes, and their leaves are the values).
    """
    for spec in signature.inputs:
        kind = np.dtype(spec.dtype).kind
        allowed = _JSON_TYPES[kind]
        values = payload[spec.name]
        for _ in range(arrays[spec.name].ndim - 1):  # flattened in C order, as ravel() does
            values = [value for row in values for value in row]
        if not all(type(value) in allowed for value in values):
            wrong = next(value for value in values if type(value) not in allowed)
            raise ValueError(
                f"input {spec.name!r} ({spec.dtype}) must hold JSON {_JSON_TYPE_NAMES[kind]}, "
                f"got {json.dumps(wrong)[:40]}"
            )


class SolverService:
    """The state and the handlers behind :func:`create_app` (``app.state.service``).

    Attributes:
        table: the :class:`SolverTable` served.
        metrics: the :class:`~opifex.deploy._metrics.ServiceMetrics` of ``GET /metrics``.
        cache: the :class:`~opifex.deploy._cache.ResultCache` of the results.
    """

    def __init__(
        self,
        table: SolverTable,
        *,
        max_batch_size: int,
        max_delay_ms: float,
        batching: bool,
        cache_size: int,
        max_body_bytes: int,
        max_request_examples: int,
        title: str,
    ) -> None:
        if max_body_bytes < 1 or max_request_examples < 1:
            raise ValueError(
                "max_body_bytes and max_request_examples must be >= 1, got "
                f"{max_body_bytes} and {max_request_examples}"
            )
        self.table = table
        self.metrics = ServiceMetrics()
        self.cache = ResultCache(cache_size)
        self.buckets = bucket_sizes(max_batch_size)
        self.max_batch_size = max_batch_size
        self.max_delay_ms = max_delay_ms
        self.batching = batching
        self.max_body_bytes = max_body_bytes
        self.max_request_examples = max_request_examples
        self.title = title
        self._batchers: dict[tuple[str, str], tuple[Servable, MicroBatcher]] = {}
        self._warm: dict[tuple[str, str, str], str] = {}  # "" if compiled, else the error
        self._warming: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------- warm-up

    def _compile(self, servable: Servable) -> None:
        call = _checked_call(servable)
        for size in self.buckets:
            call({s.name: np.zeros((size, *s.shape), s.dtype) for s in servable.signature.inputs})

    async def warm_up(self) -> None:
        """Compile every served solver for every bucket size, in a worker thread.

        A solver that fails keeps ``/readyz`` at 503 with its error; each version is compiled
        once (identified by name, version and content hash).
        """
        loop = asyncio.get_running_loop()
        for name, version, servable in self.table.entries():
            key = (name, version, servable.sha256)
            if key in self._warm:
                continue
            try:
                await loop.run_in_executor(None, self._compile, servable)
            except Exception as error:
                logger.exception("warm-up of solver %r version %r failed", name, version)
                self._warm[key] = f"{type(error).__name__}: {error}"
            else:
                self._warm[key] = ""

    def start_warm_up(self) -> asyncio.Task[None]:
        """:meth:`warm_up` in the background, unless it runs already; returns its task."""
        if self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(self.warm_up())
        return self._warming

    def _readiness(self) -> dict[str, dict[str, Any]]:
        status = {}
        for name, version, servable in self.table.entries():
            error = self._warm.get((name, version, servable.sha256))
            status[name] = {"version": version, "ready": error == "", "error": error or None}
        return status

    # ----------------------------------------------------------------------------- handlers

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the process serves."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: 200 once every solver is compiled; otherwise 503 and a warm-up."""
        solvers = self._readiness()
        ready = all(entry["ready"] for entry in solvers.values())
        if not ready:
            self.start_warm_up()
        return JSONResponse({"ready": ready, "solvers": solvers}, status_code=200 if ready else 503)

    async def list_solvers(self, request: Request) -> Response:
        """``GET /v1/solvers``: name, version, content hash, signature and readiness."""
        readiness = self._readiness()
        solvers = [
            {
                "name": name,
                "version": version,
                "sha256": servable.sha256,
                "signature": servable.signature.to_json(),
                "ready": readiness[name]["ready"],
            }
            for name, version, servable in self.table.entries()
        ]
        return JSONResponse({"solvers": solvers})

    async def metrics_text(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus' text format."""
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the OpenAPI 3 document of the solvers served now."""
        return JSONResponse(openapi_document(self))

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/solvers/{name}/predict`` (see the module doc), an ASGI application.

        The hot path of the service, so it reads the ASGI messages and writes its answer
        itself, without a Starlette ``Request`` and ``Response`` (``create_app``'s application
        also calls it before its middleware and router, see ``_ServiceApp``). A 4xx or a
        solver's 500 is answered here; any other exception gets a JSON 500 and is raised
        again for the server to log, as Starlette's error middleware does.
        """
        start = time.perf_counter()
        name = scope["path_params"]["name"]
        label, version = "unknown", ""
        inputs: dict[str, np.ndarray] | None = None
        outputs, cached = None, False
        try:
            try:
                if name not in self.table:
                    raise _StatusError(
                        404, f"no solver named {name!r}; served: {self.table.names()}"
                    )
                label = name
                headers = _request_headers(scope)
                binary = self._content_type(headers) == _NPZ
                body = await self._read_body(headers, receive)
                try:
                    version, servable = self.table.route(name, hashlib.sha256(body).hexdigest())
                except KeyError:
                    raise _StatusError(404, f"solver {name!r} is no longer served") from None
                inputs, single = self._parse(body, binary, servable.signature)
                answer, outputs, cached = await self._answer(
                    name, version, servable, inputs, single, headers.get(b"accept", "")
                )
            except _StatusError as error:
                answer = _Answer(error.status, _error_body(str(error)), _JSON_HEADERS)
        except Exception as error:  # a bug of the service: a 500, then raised for the server
            self.metrics.observe_request(label, version, 500, time.perf_counter() - start)
            body = _error_body(f"internal error: {type(error).__name__}")
            await _respond(send, _Answer(500, body, _JSON_HEADERS))
            raise
        elapsed = time.perf_counter() - start
        self.metrics.observe_request(label, version, answer.status, elapsed)
        if inputs is not None:  # routed and valid: tell the table how its version did
            outcome = RequestOutcome(answer.status, elapsed, inputs, outputs, cached)
            try:
                self.table.observe(name, version, outcome)
            except Exception:
                logger.exception("observing a request to %r version %r failed", name, version)
        await _respond(send, answer)

    # ----------------------------------------------------------------------------- predict steps

    @staticmethod
    def _content_type(headers: Mapping[bytes, str]) -> str:
        content_type = headers.get(b"content-type", _JSON).split(";")[0].strip().lower()
        if content_type not in (_JSON, _NPZ):
            raise _StatusError(415, f"Content-Type must be {_JSON} or {_NPZ}, got {content_type!r}")
        return content_type

    async def _read_body(self, headers: Mapping[bytes, str], receive: Receive) -> bytes:
        limit = self.max_body_bytes
        declared = headers.get(b"content-length", "0")
        if not declared.isdigit():
            raise _StatusError(400, f"malformed Content-Length {declared!r}")
        if int(declared) > limit:
            raise _StatusError(413, f"body of {declared} bytes is over the limit of {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _StatusError(400, "the client disconnected before sending the body")
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _StatusError(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _parse(
        self, body: bytes, binary: bool, signature: Signature
    ) -> tuple[dict[str, np.ndarray], bool]:
        """Validated input arrays, and whether the request was a single ``instance``."""
        single = False
        if binary:
            payload = self._parse_npz(body, signature)
        else:
            payload, single = self._parse_json(body)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as inf
                inputs = coerce_inputs(signature, payload)
            if not binary:
                _check_json_types(signature, payload, inputs)
        except (ValueError, TypeError, OverflowError, RecursionError) as error:
            raise _StatusError(422, str(error)) from None
        examples = batch_size(inputs)
        if examples > self.max_request_examples:
            raise _StatusError(
                413, f"{examples} examples are over the limit of {self.max_request_examples}"
            )
        return inputs, single

    @staticmethod
    def _parse_json(body: bytes) -> tuple[dict[str, Any], bool]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise _StatusError(400, f"body is not valid JSON: {error}") from None
        keys = sorted(document) if isinstance(document, dict) else None
        if keys not in (["inputs"], ["instance"]):
            raise _StatusError(
                422,
                'body must be a JSON object with one key, "inputs" (a batch per input) or '
                f'"instance" (one example per input); got keys {keys}',
            )
        payload = document[keys[0]]
        if not isinstance(payload, dict):
            raise _StatusError(422, f'"{keys[0]}" must be an object mapping input names to arrays')
        if keys == ["instance"]:
            return {name: [value] for name, value in payload.items()}, True
        return payload, False

    def _parse_npz(self, body: bytes, signature: Signature) -> dict[str, np.ndarray]:
        try:
            loaded = np.load(io.BytesIO(body), allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise _StatusError(422, "body must be an .npz archive, got a single .npy array")
            with loaded as npz:
                unpacked = sum(info.file_size for info in npz.zip.infolist())
                if unpacked > self.max_body_bytes:
                    raise _StatusError(413, f"the .npz unpacks to over {self.max_body_bytes} bytes")
                payload = {name: npz[name] for name in npz.files}
        except _StatusError:
            raise
        except Exception as error:  # any failure to read untrusted bytes is the request's
            raise _StatusError(
                400, f"body is not a readable .npz: {type(error).__name__}"
            ) from None
        dtypes = {spec.name: spec.dtype for spec in signature.inputs}
        for name, array in payload.items():
            if name in dtypes and not (
                array.dtype.kind in "biuf" and np.can_cast(array.dtype, dtypes[name], "same_kind")
            ):
                raise _StatusError(
                    422, f"input {name!r} of dtype {array.dtype} is not {dtypes[name]}"
                )
        return payload

    async def _answer(
        self,
        name: str,
        version: str,
        servable: Servable,
        inputs: dict[str, np.ndarray],
        single: bool,
        accept: str,
    ) -> tuple[_Answer, dict[str, np.ndarray], bool]:
        """The answer, the outputs and whether they came from the cache."""
        key = outputs = None
        if self.cache.max_entries:  # no cache: no key to compute
            key = cache_key(request_digest(name, inputs), servable.sha256)
            outputs = self.cache.get(key)
        cached = outputs is not None
        self.metrics.observe_cache(name, hit=cached)
        if outputs is None:
            try:
                outputs = await self._batcher(name, version, servable).submit(inputs)
            except Exception as error:  # the solver failed: its batch gets a 500
                logger.exception("solver %r version %r failed", name, version)
                message = f"solver {name!r} version {version!r} failed: {type(error).__name__}"
                raise _StatusError(500, f"{message}: {error}") from None
            if key is not None:
                self.cache.put(key, outputs)
        if _NPZ in accept:
            buffer = io.BytesIO()
            np.savez(buffer, **outputs)
            headers = [
                (b"content-type", _NPZ.encode()),
                (b"x-opifex-version", version.encode("latin-1")),
                (b"x-opifex-cached", str(cached).lower().encode()),
            ]
            return _Answer(200, buffer.getvalue(), headers), outputs, cached
        encoded = {k: _json_array(v[0] if single else v) for k, v in outputs.items()}
        body = _ENCODER.encode({"outputs": encoded, "version": version, "cached": cached})
        return _Answer(200, body.encode(), _JSON_HEADERS), outputs, cached

    def _batcher(self, name: str, version: str, servable: Servable) -> MicroBatcher:
        key = (name, version)
        entry = self._batchers.get(key)
        if entry is not None and entry[0] is servable:
            return entry[1]
        for other, (_, batcher) in list(self._batchers.items()):
            if other[0] == name and other != key and batcher.idle:
                del self._batchers[other]  # another version, not in use: let it go
        batcher = MicroBatcher(
            _checked_call(servable),
            max_batch_size=self.max_batch_size,
            max_delay_ms=self.max_delay_ms,
            batching=self.batching,
            on_call=functools.partial(self.metrics.observe_call, name, version),
        )
        self._batchers[key] = (servable, batcher)
        return batcher


# --------------------------------------------------------------------------------- OpenAPI

_NON_FINITE = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}


def _largest_finite(dtype: str) -> float:
    """The largest JSON number (a float64) that ``dtype`` rounds to a finite value.

    Rounding to nearest takes a float64 up to half a unit in the last place beyond the
    dtype's largest value down to that value, so the bound is just below the midpoint (which
    rounds to infinity, ties to even), not the largest value itself.

    Example:
        >>> _largest_finite("float16"), _largest_finite("float32")
        (65519.99999999999, 3.4028235677973362e+38)
        >>> float(np.float32(_largest_finite("float32"))) == float(np.finfo(np.float32).max)
        True
    """
    info = np.finfo(dtype)
    top = float(info.max)
    if info.bits == 64:
        return top
    unit = top - float(np.nextafter(info.max, info.dtype.type(0)))
    return float(np.nextafter(top + unit / 2, 0.0))


def _scalar_schema(dtype: str, *, output: bool) -> dict[str, Any]:
    if dtype == "bool":
        return {"type": "boolean"}
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if output:
        return {"anyOf": [{"type": "number"}, _NON_FINITE]}
    bound = _largest_finite(dtype)
    return {"type": "number", "minimum": -bound, "maximum": bound}


def _example_schema(spec: TensorSpec, *, output: bool = False) -> dict[str, Any]:
    """JSON schema of one example of ``spec``: nested arrays of the spec's shape."""
    schema = _scalar_schema(spec.dtype, output=output)
    for size in reversed(spec.shape):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    return schema


def _batch_schema(spec: TensorSpec, max_examples: int, *, output: bool = False) -> dict[str, Any]:
    return {
        "type": "array",
        "items": _example_schema(spec, output=output),
        "minItems": 1,
        "maxItems": max_examples,
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _predict_operation(name: str, version: str, servable: Servable, limit: int) -> dict:
    signature = servable.signature
    batch = _object({s.name: _batch_schema(s, limit) for s in signature.inputs})
    instance = _object({s.name: _example_schema(s) for s in signature.inputs})
    outputs = {
        s.name: {"anyOf": [_batch_schema(s, limit, output=True), _example_schema(s, output=True)]}
        for s in signature.outputs
    }
    answer = _object(
        {"outputs": _object(outputs), "version": {"type": "string"}, "cached": {"type": "boolean"}}
    )
    error_schema = {"schema": {"$ref": "#/components/schemas/Error"}}
    error = {"description": "a request error", "content": {_JSON: error_schema}}
    binary = {"schema": {"type": "string", "format": "binary"}}
    request_schema = {"oneOf": [_object({"inputs": batch}), _object({"instance": instance})]}
    return {
        "operationId": f"predict_{name}",
        "summary": f"Run solver {name} (version {version})",
        "description": (
            "Every input of a batch has the same number of examples along its first axis. "
            f"Content hash {servable.sha256}."
        ),
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": request_schema}, _NPZ: binary},
        },
        "responses": {
            "200": {
                "description": "the outputs",
                "content": {_JSON: {"schema": answer}, _NPZ: binary},
            },
            **{str(code): error for code in (400, 404, 413, 415, 422, 500)},
        },
    }


def openapi_document(service: SolverService) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``service``, with one predict path per solver served.

    Example:
        >>> app = create_app({})
        >>> document = openapi_document(app.state.service)
        >>> document["openapi"], sorted(document["paths"])[:2]
        ('3.0.3', ['/healthz', '/metrics'])
    """

    def get(summary: str, media_type: str = _JSON) -> dict[str, Any]:
        schema = {"type": "object" if media_type == _JSON else "string"}
        answer = {"description": summary, "content": {media_type: {"schema": schema}}}
        return {"get": {"summary": summary, "responses": {"200": answer}}}

    paths = {
        "/healthz": get("The process is alive"),
        "/readyz": get("Every solver is compiled (503 while not)"),
        "/metrics": get("Prometheus metrics", "text/plain"),
        "/openapi.json": get("This document"),
        "/v1/solvers": get("The solvers served, with their versions and signatures"),
    }
    paths["/readyz"]["get"]["responses"]["503"] = {"description": "not ready yet"}
    for name, version, servable in service.table.entries():
        operation = _predict_operation(name, version, servable, service.max_request_examples)
        paths[f"/v1/solvers/{name}/predict"] = {"post": operation}
    return {
        "openapi": "3.0.3",
        "info": {"title": service.title, "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Error": _object({"error": {"type": "string"}})}},
    }


# --------------------------------------------------------------------------------- the app


class _Endpoint:
    """An ASGI application as a route's endpoint.

    Starlette would wrap a function or a method as a ``Request -> Response`` handler.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _ServiceApp(Starlette):
    """The service's Starlette application, with a short way to its predict endpoint.

    ``POST /v1/solvers/{name}/predict`` goes to ``SolverService.predict`` directly, not through
    Starlette's error and exception middleware and its router: they cost about a tenth of the
    event loop's time per request, and the endpoint answers every error itself. Only while no
    middleware has been added (``add_middleware``) and the application is not mounted under a
    root path; otherwise every request takes Starlette's way, to the same endpoint.
    """

    def __init__(self, service: SolverService, **options: Any) -> None:
        super().__init__(**options)
        self._predict = service.predict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.user_middleware
        ):
            match = _PREDICT_PATH.match(scope["path"])
            if match is not None:
                scope["app"] = self
                scope["path_params"] = {"name": match[1]}
                await self._predict(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    solvers: Mapping[str, tuple[str, Servable]] | SolverTable,
    *,
    max_batch_size: int = 32,
    max_delay_ms: float = 2.0,
    batching: bool = True,
    cache_size: int = 1024,
    max_body_bytes: int = 4 * 2**20,
    max_request_examples: int = 1024,
    warm_up: bool = True,
    title: str = "opifex solvers",
    dashboard: Any = None,
) -> Starlette:
    """A Starlette application serving ``solvers`` (the endpoints: see the module doc).

    Args:
        solvers: ``name -> (version, servable)``, or a :class:`SolverTable` to change what is
            served while the application runs.
        max_batch_size: the most examples per solver call; the solver is compiled for the
            powers of two up to it.
        max_delay_ms: the longest a request waits for its batch to fill.
        batching: ``False`` calls the solver once per request (the baseline).
        cache_size: results kept in the LRU result cache (0: no cache).
        max_body_bytes: the largest request body (also bounds an ``.npz`` unpacked).
        max_request_examples: the most examples in one request.
        warm_up: compile every solver when the application starts (its lifespan), in the
            background; ``/readyz`` answers 503 until done.
        title: the title of the OpenAPI document.
        dashboard: a :class:`~opifex.deploy.Dashboard` to serve at ``/dashboard/`` (``True``:
            one with no registry, results or canary, for live runs only); ``None``: none.

    Returns:
        The application; ``app.state.service`` is its :class:`SolverService`.

    Example:
        >>> import asyncio
        >>> import httpx
        >>> from opifex.deploy._signature import Signature, TensorSpec
        >>> class Double:
        ...     signature = Signature(
        ...         (TensorSpec("x", (2,), "float32"),), (TensorSpec("y", (2,), "float32"),)
        ...     )
        ...     sha256 = "d0"
        ...     def __call__(self, inputs):
        ...         return {"y": 2 * inputs["x"]}
        >>> app = create_app({"double": ("v1", Double())}, max_batch_size=4)
        >>> async def predict(body):
        ...     transport = httpx.ASGITransport(app=app)
        ...     async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        ...         return await client.post("/v1/solvers/double/predict", json=body)
        >>> asyncio.run(predict({"inputs": {"x": [[1, 2]]}})).json()
        {'outputs': {'y': [[2.0, 4.0]]}, 'version': 'v1', 'cached': False}
        >>> bad = asyncio.run(predict({"inputs": {"x": [1, 2]}}))
        >>> bad.status_code, bad.json()["error"]
        (422, "input 'x' must have shape (batch, 2), got (2,)")
    """
    table = solvers if isinstance(solvers, SolverTable) else SolverTable(solvers)
    service = SolverService(
        table,
        max_batch_size=max_batch_size,
        max_delay_ms=max_delay_ms,
        batching=batching,
        cache_size=cache_size,
        max_body_bytes=max_body_bytes,
        max_request_examples=max_request_examples,
        title=title,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = service.start_warm_up() if warm_up else None
        yield
        if task is not None:
            task.cancel()

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error(error.status_code, str(error.detail))

    async def server_error(request: Request, error: Exception) -> Response:
        return _error(500, f"internal error: {type(error).__name__}")

    routes = [
        Route("/v1/solvers/{name}/predict", _Endpoint(service.predict), methods=["POST"]),
        Route("/v1/solvers", service.list_solvers, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_text, methods=["GET"]),
        Route("/openapi.json", service.openapi, methods=["GET"]),
    ]
    if dashboard is not None and dashboard is not False:
        from ._dashboard import Dashboard  # the page and its endpoints (opifex.deploy._dashboard)

        dashboard = Dashboard() if dashboard is True else dashboard
        routes += dashboard.routes()
    app = _ServiceApp(
        service,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.service = service
    app.state.dashboard = dashboard or None
    return app
