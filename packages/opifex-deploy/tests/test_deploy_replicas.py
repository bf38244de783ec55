"""Replicas of the service on loopback: shared canary state, and a replica killed under load.

The end-to-end tests start real uvicorn processes on 127.0.0.1 (``ReplicaSet``) serving a
registry in ``tmp_path`` with a tiny exported solver: ``y`` solves ``2 y = x``, and the solver
reports its own ``residual = |2 y - x|``. The bad version answers ``y = x / 3``; the canary's
quality check is the mean residual. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import signal
import threading
import time

import jax.numpy as jnp
import pytest

from opifex.deploy._artifact import export_function
from opifex.deploy._provider import serve_config
from opifex.deploy._registry import Registry
from opifex.deploy._replicas import ReplicaSet, free_port, ready
from opifex.deploy._signature import Signature, TensorSpec

SIGNATURE = Signature(
    (TensorSpec("x", (), "float32"),),
    (TensorSpec("y", (), "float32"), TensorSpec("residual", (), "float32")),
)
NAME = "halve"
PREDICT = f"/v1/solvers/{NAME}/predict"
HEADERS = {"content-type": "application/json"}


def solver(divisor):
    def solve(x):
        y = x / divisor
        return {"y": y, "residual": jnp.abs(2 * y - x)}

    return solve


def publish(root, *divisors):
    registry = Registry(root)
    for divisor in divisors:
        registry.publish(NAME, export_function(solver(divisor), SIGNATURE, name=NAME))
    registry.promote(NAME, "v1")
    return registry


def body(x):
    return json.dumps({"instance": {"x": x}}).encode()


def goes_to_canary(payload, percentage):
    share = int(hashlib.sha256(payload).hexdigest()[:8], 16) % 10_000
    return share < percentage * 100


class RoundRobin:
    """A small client over the replicas: the next replica per request, another on failure."""

    def __init__(self, urls, attempts=20, timeout_s=30.0):
        import httpx

        self.httpx = httpx
        self.clients = [httpx.Client(base_url=url, timeout=10.0) for url in urls]
        self.attempts, self.timeout_s = attempts, timeout_s
        self.next = 0
        self.lock = threading.Lock()
        self.retries = 0

    def post(self, path, content):
        deadline = time.monotonic() + self.timeout_s
        for _ in range(self.attempts):
            with self.lock:
                client = self.clients[self.next % len(self.clients)]
                self.next += 1
            try:
                return client.post(path, content=content, headers=HEADERS)
            except self.httpx.TransportError:  # refused, reset, closed: a predict is idempotent
                with self.lock:
                    self.retries += 1
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        raise AssertionError(f"no replica answered {content!r}")

    def close(self):
        for client in self.clients:
            client.close()


def test_replica_set_refuses_bad_arguments(monkeypatch):
    monkeypatch.delenv("OPIFEX_SERVE_CONFIG", raising=False)
    with pytest.raises(ValueError, match="replicas"):
        ReplicaSet(0, config="{}")
    with pytest.raises(ValueError, match="one port per replica"):
        ReplicaSet(2, config="{}", ports=[8000])
    with pytest.raises(ValueError, match="needs config"):
        ReplicaSet(1)
    with pytest.raises(ValueError, match="import string"):
        ReplicaSet(1, app="no_colon")
    assert not ready(f"http://127.0.0.1:{free_port()}")


@pytest.mark.e2e
def test_a_rollback_decided_by_one_replica_is_followed_by_the_other(tmp_path):
    import httpx

    registry = publish(tmp_path / "registry", 2.0, 3.0)  # v1 right, v2 wrong
    registry.promote(NAME, "v2", "canary")
    poll_s, percentage = 0.2, 50.0
    config = serve_config(
        str(tmp_path / "registry"),
        poll_interval_s=poll_s,
        canary={
            "canary_percentage": percentage,
            "min_requests": 5,
            "window": 20,
            "latency_threshold": 100.0,  # judged on quality here, not on latency noise
        },
        quality_output="residual",
        service={"max_batch_size": 2, "cache_size": 0},
    )
    payloads = [body(float(x)) for x in range(1, 400)]
    to_canary = [p for p in payloads if goes_to_canary(p, percentage)]
    to_stable = [p for p in payloads if not goes_to_canary(p, percentage)]
    with ReplicaSet(2, config=config) as replicas:
        first, second = (httpx.Client(base_url=url, timeout=30.0) for url in replicas.urls)
        with first, second:
            # the second replica serves the canary too (one request: too few to judge)
            seen = second.post(PREDICT, content=to_canary[0], headers=HEADERS).json()
            assert seen["version"] == "v2"
            # the first replica sees enough of both to roll the canary back
            deadline = time.monotonic() + 60
            pairs = zip(to_canary[1:], to_stable[: len(to_canary) - 1], strict=True)
            for sent, payload in enumerate(p for pair in pairs for p in pair):
                assert sent < 100 and time.monotonic() < deadline, "no rollback"
                assert first.post(PREDICT, content=payload, headers=HEADERS).status_code == 200
                if registry.channels(NAME)["canary"] is None:
                    break
            decided = time.monotonic()
            event = next(e for e in registry.events(NAME) if e["action"] == "canary_rollback")
            assert event["reasons"] == ["quality"] and event["version"] == "v2"
            assert event["evidence"]["stats"]["v2"]["count"] >= 5
            # the second replica follows within its poll period (plus slack for a busy machine)
            while (answer := second.post(PREDICT, content=to_canary[0], headers=HEADERS).json())[
                "version"
            ] != "v1":
                assert time.monotonic() - decided < poll_s + 3.0, answer
                time.sleep(0.01)
            followed = time.monotonic() - decided
            for payload in to_canary[1:21]:
                answer = second.post(PREDICT, content=payload, headers=HEADERS).json()
                assert answer["version"] == "v1" and answer["outputs"]["residual"] == 0.0
    assert followed < poll_s + 3.0


@pytest.mark.e2e
def test_a_replica_killed_under_load_loses_no_answer_and_is_restarted(tmp_path):
    publish(tmp_path / "registry", 2.0)
    config = serve_config(str(tmp_path / "registry"), service={"max_batch_size": 4})
    with ReplicaSet(2, config=config, check_interval_s=0.05) as replicas:
        victim = replicas.pids[0]
        client = RoundRobin(replicas.urls)
        answers, wrong, after_kill = [], [], []
        killed = threading.Event()
        deadline = time.monotonic() + 60

        def load(worker):
            for i in range(150):  # bounded in count and in time
                if time.monotonic() > deadline:
                    return
                x = float(worker * 1000 + i)
                if worker == 0 and i == 30:
                    os.kill(victim, signal.SIGKILL)
                    killed.set()
                answer = client.post(PREDICT, body(x))
                if answer.status_code == 200:
                    outputs = answer.json()["outputs"]
                    answers.append(x)
                    after_kill.append(killed.is_set())
                    if outputs != {"y": x / 2, "residual": 0.0}:
                        wrong.append((x, outputs))

        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(load, range(4)))
        finally:
            client.close()
        assert killed.is_set()
        assert wrong == []  # every answer the client was told succeeded is right
        assert len(answers) == 4 * 150  # and none was lost: failures were retried elsewhere
        assert client.retries >= 1 and sum(after_kill) >= 100  # the kill happened under load
        # the supervisor starts the killed replica again, on its port, with no help
        restarted = time.monotonic()
        while not (replicas.restarts[0] >= 1 and ready(replicas.urls[0])):
            assert time.monotonic() - restarted < 60, "the killed replica was not restarted"
            time.sleep(0.1)
        assert replicas.pids[0] not in (None, victim)
        import httpx

        answer = httpx.post(replicas.urls[0] + PREDICT, content=body(3.0), headers=HEADERS)
        assert answer.json()["outputs"] == {"y": 1.5, "residual": 0.0}
