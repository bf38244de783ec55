"""The service's HTTP protocol: uvicorn's httptools protocol, each response in one write.

uvicorn writes a response's head (status line and headers) and its body to the socket as two
writes, so a small answer costs two ``send`` system calls and reaches the client as two TCP
segments (two wake-ups of the client). On loopback, with small JSON answers, those calls are
the largest single cost of a request in the server's event loop. :class:`HttpToolsProtocol`
holds the head until the body is written and sends both at once; a head that no body follows
in the same turn of the event loop (an empty body, a streamed answer waiting for its first
chunk) is sent at the loop's next turn, and before the connection is closed. Nothing else
changes: the same parser (httptools), the same flow control and keep-alive.

``http_protocol()`` is the ``http`` option of ``uvicorn.Config`` / ``uvicorn.run`` that
``opifex serve`` and the serving benchmark use: this protocol when httptools is installed (a
dependency of opifex-deploy), otherwise uvicorn's default (``"auto"``).

Example:
    >>> import asyncio
    >>> class Recorder:
    ...     def __init__(self):
    ...         self.writes = []
    ...     def write(self, data):
    ...         self.writes.append(bytes(data))
    ...     def is_closing(self):
    ...         return False
    >>> async def respond():
    ...     transport = Recorder()
    ...     held = HeadHoldingTransport(transport, asyncio.get_running_loop())
    ...     held.write(b"HTTP/1.1 200 OK (the head) ")
    ...     held.write(b"{} (the body)")
    ...     return transport.writes
    >>> asyncio.run(respond())  # one write
    [b'HTTP/1.1 200 OK (the head) {} (the body)']
"""

from __future__ import annotations

import asyncio
from typing import Any

_HEAD = b"HTTP/"
_MAX_HELD = 64 * 1024  # a larger write goes out as it comes


class HeadHoldingTransport:
    """A transport that holds a response's head until the next write (see the module doc).

    Every method but ``write``, ``close``, ``write_eof``, ``abort`` and
    ``get_write_buffer_size`` is the wrapped transport's.

    Args:
        transport: the connection's transport.
        loop: its event loop, which sends a held head at its next turn.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held + data)
        elif data[: len(_HEAD)] == _HEAD and len(data) < _MAX_HELD:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else len(self._held)
        return held + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol
except ImportError:  # no httptools: uvicorn's default protocol
    _HttpToolsProtocol = None
    HttpToolsProtocol = None
else:

    class HttpToolsProtocol(_HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol, each response's head and body in one write."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            held = HeadHoldingTransport(transport, self.loop)
            super().connection_made(held)  # type: ignore[arg-type]


def http_protocol() -> Any:
    """The ``http`` option of uvicorn: :class:`HttpToolsProtocol`, or ``"auto"`` without it.

    Example:
        >>> http_protocol() in (HttpToolsProtocol, "auto")
        True
    """
    return "auto" if HttpToolsProtocol is None else HttpToolsProtocol
