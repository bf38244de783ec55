"""The load generator of the serving benchmark: bounded, closed-loop, on loopback only.

``run_load(url, bodies, concurrency, max_seconds, client=...)`` posts each pre-encoded JSON
body once, ``concurrency`` requests in flight at a time (``concurrency`` workers, each with its
own keep-alive connection, each sending its next request when its previous answer arrives),
and stops early when ``max_seconds`` have passed (the bodies not sent are counted, not
dropped). The connections are opened before the clock starts. Responses are kept as bytes and
checked after the run, so that checking costs the client no time during it. The client's own
CPU time is measured (``time.process_time``) to show whether the client is the bottleneck.

Two clients, both one process with asyncio:

* ``"httpx"``: one ``httpx.AsyncClient`` (a pool of ``concurrency`` connections);
* ``"raw"``: a minimal HTTP/1.1 client on ``asyncio`` streams (a request line, three headers,
  the body; the answer read by its ``Content-Length``). It spends far less CPU per request than
  httpx, which matters when the server and the client share two cores.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import httpx

# httpx logs every request at INFO: a client-side cost per request that the load test must
# not pay (the benchmark logs at INFO)
logging.getLogger("httpx").setLevel(logging.WARNING)

LOOPBACK = "127.0.0.1"
HEADERS = {"content-type": "application/json"}
CLIENTS = ("raw", "httpx")

Send = Callable[[bytes], Awaitable[tuple[int, bytes]]]


@dataclasses.dataclass
class LoadRun:
    """What one load run saw; ``statuses[i]`` is ``None`` for a body not sent, -1 on failure."""

    client: str
    concurrency: int
    wall_s: float
    client_cpu_s: float
    statuses: list[int | None]
    latencies_s: list[float | None]
    bodies: list[bytes | None]
    failures: list[str]  # transport errors (timeouts, refused or reset connections)

    @property
    def sent(self) -> int:
        return sum(s is not None for s in self.statuses)


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host != LOOPBACK:
        raise ValueError(f"the load test runs on loopback only ({LOOPBACK}), got host {host!r}")


class _RawConnection:
    """One keep-alive HTTP/1.1 connection; ``send(body)`` posts and returns (status, body)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout_s = parts.hostname, parts.port, timeout_s
        self.head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def send(self, body: bytes) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(body), self.timeout_s)
        except BaseException:
            await self.close()  # a half-read answer leaves the stream unusable
            raise


async def _drive(
    senders: list[Send], bodies: Sequence[bytes], max_seconds: float, client: str,
    transport_errors: tuple[type[BaseException], ...],
) -> LoadRun:  # fmt: skip
    n = len(bodies)
    statuses: list[int | None] = [None] * n
    latencies: list[float | None] = [None] * n
    answers: list[bytes | None] = [None] * n
    failures: list[str] = []
    cursor: Iterator[int] = iter(range(n))
    start = time.perf_counter()
    deadline = start + max_seconds
    cpu_start = time.process_time()

    async def worker(send: Send) -> None:
        for i in cursor:  # shared: each index is taken by one worker
            if time.perf_counter() > deadline:
                return
            sent = time.perf_counter()
            try:
                status, content = await send(bodies[i])
            except transport_errors as error:
                statuses[i] = -1
                failures.append(f"{type(error).__name__}: {error}")
                continue
            latencies[i] = time.perf_counter() - sent
            statuses[i], answers[i] = status, content

    await asyncio.gather(*(worker(send) for send in senders))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return LoadRun(client, len(senders), wall, cpu, statuses, latencies, answers, failures)


async def _run_raw(
    url: str, bodies: Sequence[bytes], concurrency: int, max_seconds: float, timeout_s: float
) -> LoadRun:
    connections = [_RawConnection(url, timeout_s) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    try:
        errors = (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError)
        return await _drive([c.send for c in connections], bodies, max_seconds, "raw", errors)
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def _run_httpx(
    url: str, bodies: Sequence[bytes], concurrency: int, max_seconds: float, timeout_s: float
) -> LoadRun:
    parts = urlsplit(url)
    health = f"{parts.scheme}://{parts.netloc}/healthz"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        await asyncio.gather(*(client.get(health) for _ in range(concurrency)))

        async def send(body: bytes) -> tuple[int, bytes]:
            response = await client.post(url, content=body, headers=HEADERS)
            return response.status_code, response.content

        return await _drive([send] * concurrency, bodies, max_seconds, "httpx", (httpx.HTTPError,))


def run_load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    max_seconds: float,
    *,
    client: str = "raw",
    timeout_s: float = 30.0,
) -> LoadRun:
    """Post every body once, ``concurrency`` at a time, for at most ``max_seconds``.

    Raises:
        ValueError: ``url`` is not on 127.0.0.1, an unknown client, or ``concurrency < 1``.
    """
    _check_loopback(url)
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    runners = {"raw": _run_raw, "httpx": _run_httpx}
    if client not in runners:
        raise ValueError(f"client must be one of {CLIENTS}, got {client!r}")
    return asyncio.run(runners[client](url, bodies, concurrency, max_seconds, timeout_s))
