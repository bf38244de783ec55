"""Shared fixtures of the opifex-deploy tests."""

import contextlib
import socket
import threading
import time

import pytest


@contextlib.contextmanager
def _serve_in_thread(app):
    """``app`` under uvicorn (``http_protocol()``) on 127.0.0.1 in a thread; yields its port."""
    import uvicorn

    from opifex.deploy._http import http_protocol

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=http_protocol(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the server thread exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="session")
def serve_in_thread():
    """``serve_in_thread(app)``: a context manager serving ``app`` on loopback; yields the port."""
    return _serve_in_thread
