"""The service's HTTP stack: a response's head and body in one write, and predict's short way.

``HeadHoldingTransport`` against a recording transport (what is written, when, in what order);
the protocol under a real uvicorn server on 127.0.0.1 (keep-alive, pipelining, errors, large
answers); and ``create_app``'s predict endpoint outside Starlette's middleware: the same
answers through added middleware or a mount, and a JSON 500 for a bug of the service.
"""

import asyncio
import json
import socket
import warnings

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.routing import Mount

from opifex.deploy._http import HeadHoldingTransport, HttpToolsProtocol, http_protocol
from opifex.deploy._service import SolverTable, create_app
from opifex.deploy._signature import Signature, TensorSpec

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message=".*starlette.testclient")
    from starlette.testclient import TestClient

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    """A transport that records its writes and the other calls, in order."""

    def __init__(self):
        self.events = []
        self.closing = False

    def write(self, data):
        self.events.append(("write", bytes(data)))

    def is_closing(self):
        return self.closing

    def close(self):
        self.closing = True
        self.events.append(("close",))

    def write_eof(self):
        self.events.append(("write_eof",))

    def abort(self):
        self.closing = True
        self.events.append(("abort",))

    def get_write_buffer_size(self):
        return 7

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _run(steps):
    """Run ``steps(held, recorder)`` in an event loop, then one more turn; return the events."""
    recorder = Recorder()

    async def main():
        held = HeadHoldingTransport(recorder, asyncio.get_running_loop())
        steps(held, recorder)
        await asyncio.sleep(0)  # the loop's next turn
        await asyncio.sleep(0)

    asyncio.run(main())
    return recorder.events


def test_head_and_body_are_one_write():
    def steps(held, recorder):
        held.write(HEAD)
        assert recorder.events == []  # held ...
        held.write(b"{}")
        assert recorder.events == [("write", HEAD + b"{}")]  # ... and sent with the body at once

    assert _run(steps) == [("write", HEAD + b"{}")]


def test_a_head_with_no_body_is_sent_at_the_next_turn_of_the_loop():
    assert _run(lambda held, _: held.write(HEAD)) == [("write", HEAD)]


def test_other_writes_pass_straight_through_in_order():
    def steps(held, recorder):
        held.write(b"chunk 1")
        held.write(memoryview(b"chunk 2"))
        held.write(HEAD)
        held.write(bytearray(b"body"))
        held.write(b"trailer")

    assert _run(steps) == [
        ("write", b"chunk 1"), ("write", b"chunk 2"), ("write", HEAD + b"body"),
        ("write", b"trailer"),
    ]  # fmt: skip


def test_a_large_head_is_not_held():
    large = b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * 70_000 + b"\r\n\r\n"
    assert _run(lambda held, _: held.write(large)) == [("write", large)]


def test_close_and_write_eof_send_the_held_head_first_and_abort_drops_it():
    def close(held, _):
        held.write(HEAD)
        held.close()

    def write_eof(held, _):
        held.write(HEAD)
        held.write_eof()

    def abort(held, _):
        held.write(HEAD)
        held.abort()

    assert _run(close) == [("write", HEAD), ("close",)]
    assert _run(write_eof) == [("write", HEAD), ("write_eof",)]
    assert _run(abort) == [("abort",)]


def test_a_head_held_on_a_connection_closed_meanwhile_is_dropped():
    def steps(held, recorder):
        held.write(HEAD)
        recorder.closing = True  # the peer went away before the loop's next turn

    assert _run(steps) == []


def test_the_rest_is_the_wrapped_transports():
    def steps(held, _):
        held.write(HEAD)
        assert held.get_write_buffer_size() == 7 + len(HEAD)
        assert held.get_extra_info("peername") == ("127.0.0.1", 1)
        assert held.is_closing() is False

    _run(steps)


def test_http_protocol_is_the_httptools_one():
    pytest.importorskip("httptools")  # a dependency of opifex-deploy
    assert http_protocol() is HttpToolsProtocol


# --------------------------------------------------------------------------- under uvicorn


class Affine:
    signature = Signature((TensorSpec("x", (2,), "float32"),), (TensorSpec("y", (2,), "float32"),))
    sha256 = "affine-1"

    def __call__(self, inputs):
        return {"y": 3 * inputs["x"] + 1}


class Wide:
    """A large answer: 20 000 numbers per example (over the 64 KiB a head is held under)."""

    signature = Signature(
        (TensorSpec("x", (), "float32"),), (TensorSpec("y", (20_000,), "float64"),)
    )
    sha256 = "wide-1"

    def __call__(self, inputs):
        return {"y": np.repeat(inputs["x"].astype(np.float64)[:, None], 20_000, axis=1)}


def _exchange(port, raw):
    """Send ``raw`` on one connection, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _post(path, body, close=False):
    head = f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else "")
    return head.encode() + b"\r\n" + body


@pytest.fixture(scope="module")
def port(serve_in_thread):
    app = create_app(
        {"affine": ("v1", Affine()), "wide": ("v1", Wide())}, max_batch_size=4, warm_up=False
    )
    with serve_in_thread(app) as port:
        yield port


def test_uvicorn_answers_pipelined_requests_on_one_connection(port):
    bodies = [json.dumps({"instance": {"x": [i, 0]}}).encode() for i in range(3)]
    raw = b"".join(_post("/v1/solvers/affine/predict", b) for b in bodies[:-1])
    raw += b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n"
    raw += _post("/v1/solvers/affine/predict", b"{not json", close=True)
    answers = _exchange(port, raw).split(b"HTTP/1.1 ")[1:]
    assert [a.split(b" ", 1)[0] for a in answers] == [b"200", b"200", b"200", b"400"]
    for i, answer in enumerate(answers[:2]):
        head, body = answer.split(b"\r\n\r\n", 1)
        assert b"content-length: %d" % len(body) in head
        assert json.loads(body)["outputs"]["y"] == [3.0 * i + 1, 1.0]
    assert json.loads(answers[2].split(b"\r\n\r\n", 1)[1]) == {"status": "ok"}
    assert "not valid JSON" in json.loads(answers[3].split(b"\r\n\r\n", 1)[1])["error"]


def test_uvicorn_sends_each_answer_in_one_write(port, monkeypatch):
    writes = []

    class Counting:
        def __init__(self, transport):
            self.transport = transport

        def write(self, data):
            writes.append(bytes(data))
            self.transport.write(data)

        def __getattr__(self, name):
            return getattr(self.transport, name)

    wrap = HeadHoldingTransport.__init__
    monkeypatch.setattr(
        HeadHoldingTransport, "__init__", lambda self, t, loop: wrap(self, Counting(t), loop)
    )
    bodies = [json.dumps({"instance": {"x": [i, 0]}}).encode() for i in range(2)]
    raw = _post("/v1/solvers/affine/predict", bodies[0])
    raw += _post("/v1/solvers/affine/predict", bodies[1], close=True)
    answers = _exchange(port, raw)
    assert len(writes) == 2 and b"".join(writes) == answers
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"}") for w in writes)


def test_uvicorn_answers_keep_alive_clients_errors_and_large_answers(port):
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(5):  # one keep-alive connection
            answer = client.post("/v1/solvers/affine/predict", json={"inputs": {"x": [[i, 1]]}})
            assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[3 * i + 1, 4]]
        assert client.post("/v1/solvers/nope/predict", json={}).status_code == 404
        assert client.get("/v1/solvers/affine/predict").status_code == 405
        assert client.post("/v1/solvers/affine/predict", json={"inputs": {}}).status_code == 422
        wide = client.post("/v1/solvers/wide/predict", json={"inputs": {"x": [1.5, 2.5]}})
        assert wide.status_code == 200 and len(wide.content) > 64 * 1024
        assert np.array_equal(wide.json()["outputs"]["y"], np.repeat([[1.5], [2.5]], 20_000, 1))
        assert "opifex_request_latency_seconds" in client.get("/metrics").text


# --------------------------------------------------------------------------- predict's way


def test_predict_takes_starlettes_way_through_added_middleware():
    seen = []

    async def record(request, call_next):
        seen.append(request.url.path)
        return await call_next(request)

    app = create_app({"affine": ("v1", Affine())}, max_batch_size=2, warm_up=False)
    app.add_middleware(BaseHTTPMiddleware, dispatch=record)
    with TestClient(app) as client:
        answer = client.post("/v1/solvers/affine/predict", json={"instance": {"x": [1, 2]}})
        bad = client.post("/v1/solvers/affine/predict", content=b"[")
    assert answer.json() == {"outputs": {"y": [4.0, 7.0]}, "version": "v1", "cached": False}
    assert bad.status_code == 400 and bad.json()["error"]
    assert seen == ["/v1/solvers/affine/predict"] * 2


def test_predict_under_a_mount():
    app = create_app({"affine": ("v1", Affine())}, max_batch_size=2, warm_up=False)
    with TestClient(Starlette(routes=[Mount("/api", app=app)])) as client:
        answer = client.post("/api/v1/solvers/affine/predict", json={"inputs": {"x": [[0, 1]]}})
        assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[1.0, 4.0]]
        assert client.post("/api/v1/solvers/nope/predict", json={}).status_code == 404


def test_a_bug_of_the_service_is_a_json_500_counted_and_raised_for_the_server():
    class Broken(SolverTable):
        def route(self, name, request_key):
            raise RuntimeError("a bug")

    app = create_app(Broken({"affine": ("v1", Affine())}), max_batch_size=2, warm_up=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/v1/solvers/affine/predict", json={"instance": {"x": [1, 2]}})
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"error": "internal error: RuntimeError"}
        metrics = client.get("/metrics").text
    assert 'opifex_errors_total{solver="affine",status="500",version=""} 1.0' in metrics
    with TestClient(app) as client, pytest.raises(RuntimeError, match="a bug"):
        client.post("/v1/solvers/affine/predict", json={"instance": {"x": [1, 2]}})
    app = create_app(Broken({"affine": ("v1", Affine())}), max_batch_size=2, warm_up=False)
    app.add_middleware(BaseHTTPMiddleware, dispatch=lambda request, call_next: call_next(request))
    with TestClient(app, raise_server_exceptions=False) as client:  # Starlette's way
        answer = client.post("/v1/solvers/affine/predict", json={"instance": {"x": [1, 2]}})
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error: RuntimeError"}


def test_npz_answers_keep_their_headers():
    import io

    app = create_app({"affine": ("v1", Affine())}, max_batch_size=2, warm_up=False)
    with TestClient(app) as client:
        answer = client.post(
            "/v1/solvers/affine/predict",
            json={"inputs": {"x": [[1, 2]]}},
            headers={"accept": "application/x-npz"},
        )
    assert answer.headers["content-type"] == "application/x-npz"
    assert answer.headers["x-opifex-version"] == "v1"
    assert answer.headers["x-opifex-cached"] == "false"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert np.load(io.BytesIO(answer.content))["y"].tolist() == [[4.0, 7.0]]
