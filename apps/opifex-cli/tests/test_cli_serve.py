"""``opifex serve``: a real server on 127.0.0.1 over a registry in ``tmp_path``.

The end-to-end tests start the command as a subprocess, answer a request, and stop it with
SIGTERM; with ``--workers 2``, a worker killed with SIGKILL is started again by uvicorn's
supervisor. The registry holds a tiny exported function, ``y = 2 x``. Requests go through
``urllib`` (no proxy) so that the CLI's tests need nothing beyond the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opifex.cli._app import app
from opifex.deploy import Registry, Signature, TensorSpec, export_function

SIGNATURE = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
COMMAND = [sys.executable, "-c", "from opifex.cli._app import main; main()", "serve"]


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> int | None:
    try:
        with OPENER.open(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _predict(base: str, x: float) -> dict:
    request = urllib.request.Request(
        f"{base}/v1/solvers/double/predict",
        data=json.dumps({"instance": {"x": x}}).encode(),
        headers={"content-type": "application/json"},
    )
    with OPENER.open(request, timeout=30) as answer:
        return json.loads(answer.read())


def _registry(root: Path) -> Path:
    registry = Registry(root)
    registry.publish("double", export_function(lambda x: {"y": 2 * x}, SIGNATURE, name="double"))
    registry.promote("double", "v1")
    return root


def _wait_ready(server: subprocess.Popen, base: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _get(f"{base}/readyz") != 200:
        assert server.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server was not ready in time"
        time.sleep(0.1)


def _stop(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise


def test_serve_refuses_an_empty_registry_and_bad_options(tmp_path):
    empty = _invoke("serve", "--registry", str(tmp_path))
    assert empty.exit_code == 2 and "nothing to serve" in empty.output
    workers = _invoke("serve", "--registry", str(tmp_path), "--workers", "0")
    assert workers.exit_code == 2 and "--workers must be at least 1" in workers.output
    both = _invoke(
        "serve", "--registry", str(tmp_path), "--quality-output", "r", "--quality-check", "m:f"
    )
    assert both.exit_code == 2 and "not both" in both.output
    share = _invoke("serve", "--registry", str(tmp_path), "--canary-percentage", "120")
    assert share.exit_code == 2 and "canary_percentage must be in [0, 100]" in share.output


@pytest.mark.e2e
def test_serve_answers_on_loopback_and_stops_on_sigterm(tmp_path):
    root = _registry(tmp_path / "registry")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*COMMAND, "--registry", str(root), "--port", str(port), "--max-batch-size", "2",
         "--log-level", "warning"],
    )  # fmt: skip
    try:
        _wait_ready(server, base)
        assert _predict(base, 1.5) == {"outputs": {"y": 3.0}, "version": "v1", "cached": False}
    finally:
        code = _stop(server)
    assert code in (0, -signal.SIGTERM)  # uvicorn shuts down gracefully, then re-raises it


def _workers(parent: int) -> set[int]:
    """The worker processes of a uvicorn supervisor (its ``spawn`` children)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    found = set()
    for child in map(int, children):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
    return found


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_serve_workers_are_restarted_by_uvicorn_after_sigkill(tmp_path):
    root = _registry(tmp_path / "registry")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*COMMAND, "--registry", str(root), "--port", str(port), "--workers", "2",
         "--max-batch-size", "2", "--log-level", "warning"],
    )  # fmt: skip
    try:
        _wait_ready(server, base)
        deadline = time.monotonic() + 90
        while len(workers := _workers(server.pid)) < 2:
            assert time.monotonic() < deadline, "two workers did not start"
            time.sleep(0.1)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        for i in range(20):  # the other worker answers meanwhile (a refused try is retried)
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                assert _predict(base, float(i))["outputs"] == {"y": 2.0 * i}
        while victim in (now := _workers(server.pid)) or len(now) < 2:
            assert time.monotonic() < deadline, "uvicorn did not start the killed worker again"
            time.sleep(0.1)
        assert _predict(base, 4.0)["outputs"] == {"y": 8.0}
    finally:
        code = _stop(server)
    assert code in (0, -signal.SIGTERM)
