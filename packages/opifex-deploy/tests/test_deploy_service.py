"""The HTTP service: answers, validation before the solver, cache, metrics, OpenAPI, readiness.

The solver is a small jitted JAX function, ``y = a * x**2`` and ``s = sum(x)`` per example;
the reference is the same formula in numpy.
"""

import asyncio
import contextlib
import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
import warnings

import httpx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy._service import SolverTable, create_app, openapi_document
from opifex.deploy._signature import Signature, TensorSpec

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message=".*starlette.testclient")
    from starlette.testclient import TestClient

SIGNATURE = Signature(
    inputs=(TensorSpec("x", (3,), "float32"), TensorSpec("a", (), "float32")),
    outputs=(TensorSpec("y", (3,), "float32"), TensorSpec("s", (), "float32")),
)
MAX_BATCH = 8
BUCKETS = (1, 2, 4, 8)
PREDICT = "/v1/solvers/poly/predict"


def _poly(x, a):
    return {"y": a * x**2, "s": jnp.sum(x)}


class JaxServable:
    """A jitted, vmapped JAX function with the Servable interface; records its batch sizes."""

    def __init__(self, sha256="poly-1", scale=1.0):
        self.signature = SIGNATURE
        self.sha256 = sha256
        self.scale = scale
        self.jitted = jax.jit(jax.vmap(_poly))
        self.calls = []
        self.fail = False

    def __call__(self, inputs):
        self.calls.append(len(inputs["x"]))
        if self.fail:
            raise RuntimeError("injected failure")
        out = self.jitted(inputs["x"], inputs["a"] * self.scale)
        return {"y": out["y"], "s": out["s"]}


class NumpyServable:
    """``y = log(x)``, in numpy, for non-finite outputs."""

    signature = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
    sha256 = "log-1"

    def __call__(self, inputs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return {"y": np.log(inputs["x"])}


def _reference(x, a):
    x, a = np.asarray(x, np.float32), np.asarray(a, np.float32)
    return a[:, None] * x**2, x.sum(axis=1)


def _wait_ready(client, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while (answer := client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.01)
    return answer


@pytest.fixture(scope="module")
def served():
    """One app (and its warm-up) for the module; a test resets the servable's record."""
    servable = JaxServable()
    table = SolverTable({"poly": ("v1", servable), "log": ("v1", NumpyServable())})
    app = create_app(table, max_batch_size=MAX_BATCH, max_delay_ms=1.0, max_body_bytes=8192,
                     max_request_examples=16)  # fmt: skip
    with TestClient(app) as client:
        _wait_ready(client)
        yield client, servable, app


@pytest.fixture
def poly(served):
    client, servable, app = served
    servable.calls.clear()
    servable.fail = False
    app.state.service.cache._entries.clear()
    return client, servable, app


def test_batched_json_matches_the_function(poly):
    client, servable, _ = poly
    rng = np.random.default_rng(0)
    x, a = rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    answer = client.post(PREDICT, json={"inputs": {"x": x.tolist(), "a": a.tolist()}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    y, s = _reference(x, a)
    np.testing.assert_allclose(body["outputs"]["y"], y, rtol=1e-6)
    np.testing.assert_allclose(body["outputs"]["s"], s, rtol=1e-6, atol=1e-6)
    assert body["version"] == "v1" and body["cached"] is False
    assert servable.calls == [4]  # 3 examples padded to the bucket of 4


def test_instance_answers_one_example_without_batch_axis(poly):
    client, _, _ = poly
    answer = client.post(PREDICT, json={"instance": {"x": [1.0, 2.0, 3.0], "a": 2.0}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == {"y": [2.0, 8.0, 18.0], "s": 6.0}


def test_npz_in_and_out(poly):
    client, _, _ = poly
    x = np.arange(6, dtype=np.float64).reshape(2, 3)  # float64 is cast to the signature's float32
    a = np.array([1.0, -1.0], np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, a=a)
    headers = {"content-type": "application/x-npz", "accept": "application/x-npz"}
    answer = client.post(PREDICT, content=buffer.getvalue(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-npz"
    assert answer.headers["x-opifex-version"] == "v1"
    assert answer.headers["x-opifex-cached"] == "false"
    outputs = np.load(io.BytesIO(answer.content))
    y, s = _reference(x, a)
    assert outputs["y"].dtype == np.float32
    np.testing.assert_allclose(outputs["y"], y, rtol=1e-6)
    np.testing.assert_allclose(outputs["s"], s, rtol=1e-6)


def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npz_bomb():  # a small body that unpacks to far more than max_body_bytes
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((1, 3)), a=np.zeros(1), pad=np.zeros(10**5))
    assert len(buffer.getvalue()) < 8192
    return buffer.getvalue()


def _npy():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 3), np.float32))
    return buffer.getvalue()


GOOD = {"x": [[1.0, 2.0, 3.0]], "a": [1.0]}
NPZ = {"content-type": "application/x-npz"}
MALFORMED = {
    "unknown solver": ("/v1/solvers/nope/predict", json.dumps({"inputs": GOOD}), {}, 404),
    "unknown path": ("/v1/nothing", "{}", {}, 404),
    "not JSON": (PREDICT, "{inputs:", {}, 400),
    "deeply nested JSON": (PREDICT, "[" * 3000, {}, 400),
    "not UTF-8": (PREDICT, b"\xff\xfe\xfa", {}, 400),
    "huge integer": (PREDICT, '{"inputs": {"x": [[1, 2, ' + "9" * 5000 + "]]}}", {}, 400),
    "a JSON list": (PREDICT, json.dumps([GOOD]), {}, 422),
    "no inputs key": (PREDICT, json.dumps(GOOD), {}, 422),
    "both keys": (PREDICT, json.dumps({"inputs": GOOD, "instance": GOOD}), {}, 422),
    "extra top-level key": (PREDICT, json.dumps({"inputs": GOOD, "debug": 1}), {}, 422),
    "inputs not an object": (PREDICT, json.dumps({"inputs": [1, 2]}), {}, 422),
    "missing input": (PREDICT, json.dumps({"inputs": {"x": GOOD["x"]}}), {}, 422),
    "unknown input": (PREDICT, json.dumps({"inputs": {**GOOD, "b": [1.0]}}), {}, 422),
    "wrong shape": (PREDICT, json.dumps({"inputs": {**GOOD, "x": [[1.0, 2.0]]}}), {}, 422),
    "no batch axis": (PREDICT, json.dumps({"inputs": {**GOOD, "x": [1.0, 2.0, 3.0]}}), {}, 422),
    "ragged": (PREDICT, json.dumps({"inputs": {**GOOD, "x": [[1, 2, 3], [1]]}}), {}, 422),
    "strings": (PREDICT, json.dumps({"inputs": {**GOOD, "a": ["one"]}}), {}, 422),
    "null": (PREDICT, json.dumps({"inputs": {**GOOD, "a": [None]}}), {}, 422),
    "numeric string": (PREDICT, json.dumps({"inputs": {**GOOD, "a": ["1.5"]}}), {}, 422),
    "boolean for a number": (PREDICT, json.dumps({"inputs": {**GOOD, "a": [True]}}), {}, 422),
    "NaN": (PREDICT, '{"inputs": {"x": [[1, 2, NaN]], "a": [1]}}', {}, 422),
    "overflows float32": (PREDICT, json.dumps({"inputs": {**GOOD, "a": [1e300]}}), {}, 422),
    "unequal batches": (PREDICT, json.dumps({"inputs": {**GOOD, "a": [1.0, 2.0]}}), {}, 422),
    "empty batch": (PREDICT, json.dumps({"inputs": {"x": [], "a": []}}), {}, 422),
    "too many examples": (
        PREDICT, json.dumps({"inputs": {"x": [[0, 0, 0]] * 17, "a": [0] * 17}}), {}, 413
    ),
    "body too large": (PREDICT, " " * 9000, {}, 413),
    "form content type": (PREDICT, "x=1", {"content-type": "multipart/form-data"}, 415),
    "npz garbage": (PREDICT, b"PK\x03\x04garbage", NPZ, 400),
    "npy, not npz": (PREDICT, _npy(), NPZ, 422),
    "npz complex": (PREDICT, _npz(x=np.ones((1, 3), complex), a=np.ones(1)), NPZ, 422),
    "npz strings": (PREDICT, _npz(x=np.array([["a", "b", "c"]]), a=np.ones(1)), NPZ, 422),
    "npz bomb": (PREDICT, _npz_bomb(), NPZ, 413),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_4xx_and_never_reaches_the_solver(poly, case):
    client, servable, _ = poly
    path, body, headers, status = MALFORMED[case]
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    assert servable.calls == []


def test_wrong_method_is_a_json_405(poly):
    client, servable, _ = poly
    answer = client.get(PREDICT)
    assert answer.status_code == 405 and "error" in answer.json()
    assert servable.calls == []


def test_cache_hit_does_not_call_the_solver(poly):
    client, servable, _ = poly
    first = client.post(PREDICT, json={"inputs": GOOD})
    second = client.post(PREDICT, json={"inputs": GOOD})
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert first.json()["outputs"] == second.json()["outputs"]
    assert servable.calls == [1]
    other = client.post(PREDICT, json={"inputs": {**GOOD, "a": [2.0]}})
    assert other.json()["cached"] is False and servable.calls == [1, 1]


def test_solver_failure_is_a_500_and_the_next_request_succeeds(poly):
    client, servable, _ = poly
    servable.fail = True
    failed = client.post(PREDICT, json={"inputs": GOOD})
    assert failed.status_code == 500
    assert "injected failure" in failed.json()["error"]
    servable.fail = False
    assert client.post(PREDICT, json={"inputs": GOOD}).status_code == 200


def test_non_finite_outputs_are_json_strings(poly):
    client, _, _ = poly
    answer = client.post("/v1/solvers/log/predict", json={"inputs": {"x": [1.0, 0.0, -1.0]}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"]["y"] == [0.0, "-Infinity", "NaN"]


def test_metrics_count_requests_batches_errors_and_cache(poly):
    client, _, _ = poly
    client.post(PREDICT, json={"inputs": GOOD})
    client.post(PREDICT, json={"inputs": GOOD})
    client.post(PREDICT, json={"inputs": {"x": [[1.0]], "a": [1.0]}})
    client.post("/v1/solvers/nope/predict", json={"inputs": GOOD})
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for line in (
        'opifex_request_latency_seconds_count{solver="poly",status="200",version="v1"}',
        'opifex_errors_total{solver="poly",status="422",version="v1"}',
        'opifex_errors_total{solver="unknown",status="404",version=""}',
        'opifex_batch_size_count{solver="poly",version="v1"}',
        'opifex_cache_hits_total{solver="poly"}',
        'opifex_cache_misses_total{solver="poly"}',
    ):
        assert line in text, line


def test_ready_means_compiled_for_every_bucket_and_never_again(poly):
    client, servable, _ = poly
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["solvers"]["poly"] == {
        "version": "v1", "ready": True, "error": None
    }  # fmt: skip
    assert servable.jitted._cache_size() == len(BUCKETS)
    for n in (1, 3, 5, 8, 11):  # 11 runs as 8 + 3 (padded to 4)
        body = {"inputs": {"x": [[float(n), 0.0, 1.0]] * n, "a": [1.0] * n}}
        assert client.post(PREDICT, json=body).status_code == 200
    assert set(servable.calls) <= set(BUCKETS)
    assert servable.jitted._cache_size() == len(BUCKETS)


def test_list_solvers_shows_versions_and_signatures(poly):
    client, _, _ = poly
    solvers = {entry["name"]: entry for entry in client.get("/v1/solvers").json()["solvers"]}
    assert sorted(solvers) == ["log", "poly"]
    assert solvers["poly"]["version"] == "v1" and solvers["poly"]["sha256"] == "poly-1"
    assert Signature.from_json(solvers["poly"]["signature"]) == SIGNATURE


def _resolve(document, schema):
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def test_openapi_document_describes_each_solver(poly):
    client, _, _ = poly
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.") and document["info"]["title"]
    assert {"/v1/solvers/poly/predict", "/v1/solvers/log/predict", "/readyz"} <= set(
        document["paths"]
    )
    for item in document["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for content in response.get("content", {}).values():
                    assert _resolve(document, content["schema"])  # every $ref resolves
    operation = document["paths"][PREDICT]["post"]
    batch, instance = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    x = batch["properties"]["inputs"]["properties"]["x"]
    assert (x["minItems"], x["maxItems"]) == (1, 16)
    assert (x["items"]["minItems"], x["items"]["maxItems"], x["items"]["items"]["type"]) == (
        3, 3, "number"
    )  # fmt: skip
    assert instance["properties"]["instance"]["properties"]["a"]["type"] == "number"
    assert batch["properties"]["inputs"]["required"] == ["x", "a"]
    assert _resolve(
        document, operation["responses"]["422"]["content"]["application/json"]["schema"]
    )


def test_openapi_schema_accepts_what_the_service_accepts(poly):
    jsonschema = pytest.importorskip("jsonschema")
    _, _, app = poly
    document = openapi_document(app.state.service)
    schema = document["paths"][PREDICT]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft4Validator(schema["schema"])
    assert validator.is_valid({"inputs": GOOD})
    assert validator.is_valid({"instance": {"x": [1, 2, 3], "a": 1}})
    rejected = ("wrong shape", "extra top-level key", "strings", "unknown input",
                "numeric string", "boolean for a number")  # fmt: skip
    for case in rejected:
        assert not validator.is_valid(json.loads(MALFORMED[case][1])), case


def test_a_new_version_swapped_in_at_runtime_is_served_and_not_cached_across():
    first, second = JaxServable("poly-1"), JaxServable("poly-2", scale=10.0)
    table = SolverTable({"poly": ("v1", first)})
    with TestClient(create_app(table, max_batch_size=2, warm_up=False)) as client:
        body = {"inputs": {"x": [[1.0, 1.0, 1.0]], "a": [1.0]}}
        assert client.post(PREDICT, json=body).json()["outputs"]["s"] == [3.0]
        table.set("poly", "v2", second)
        answer = client.post(PREDICT, json=body).json()
        assert (answer["version"], answer["cached"], answer["outputs"]["y"]) == (
            "v2", False, [[10.0, 10.0, 10.0]]
        )  # fmt: skip
        assert client.get("/readyz").status_code == 503  # v2 is not warmed up yet ...
        _wait_ready(client)  # ... until the readiness probe has it compiled
        table.remove("poly")
        assert client.post(PREDICT, json=body).status_code == 404


def test_route_can_split_traffic_between_versions():
    canary = NumpyServable()

    class Canary(SolverTable):
        def route(self, name, request_key):
            return ("v2", canary) if int(request_key, 16) % 2 else self.get(name)

    table = Canary({"log": ("v1", NumpyServable())})
    with TestClient(create_app(table, warm_up=False)) as client:
        versions = {
            client.post("/v1/solvers/log/predict", json={"inputs": {"x": [float(i)]}}).json()[
                "version"
            ]
            for i in range(1, 9)
        }
    assert versions == {"v1", "v2"}


def test_a_solver_failing_its_warm_up_is_not_ready():
    servable = JaxServable()
    servable.fail = True
    with TestClient(create_app({"poly": ("v1", servable)}, max_batch_size=2)) as client:
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz").json())["solvers"]["poly"]["error"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.get("/readyz").status_code == 503
        assert "injected failure" in ready["solvers"]["poly"]["error"]


@pytest.mark.parametrize(
    ("name", "version"), [("", "v1"), ("a/b", "v1"), ("-x", "v1"), ("ok", ""), ("ok", 1)]
)
def test_table_refuses_bad_names_and_versions(name, version):
    with pytest.raises(ValueError, match=r"solver name|version"):
        SolverTable({name: (version, NumpyServable())})


SERVER = """
import sys

import numpy as np
import uvicorn

from opifex.deploy._service import create_app
from opifex.deploy._signature import Signature, TensorSpec


class Affine:
    signature = Signature((TensorSpec("x", (2,), "float32"),), (TensorSpec("y", (2,), "float32"),))
    sha256 = "affine-1"

    def __call__(self, inputs):
        return {"y": 3 * inputs["x"] + 1}


app = create_app({"affine": ("v1", Affine())}, max_batch_size=8, max_delay_ms=20.0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.e2e
def test_a_real_uvicorn_server_batches_concurrent_clients(tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(SERVER, encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not become ready"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            time.sleep(0.1)

        async def load():
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                return await asyncio.gather(
                    *(
                        client.post("/v1/solvers/affine/predict", json={"instance": {"x": [i, 0]}})
                        for i in range(32)
                    )
                )

        answers = asyncio.run(load())
        assert [a.json()["outputs"]["y"] for a in answers] == [
            [3.0 * i + 1, 1.0] for i in range(32)
        ]
        metrics = httpx.get(f"{base}/metrics").text
        calls = re.search(r'opifex_batch_size_count\{solver="affine",version="v1"\} (\S+)', metrics)
        assert calls is not None and float(calls.group(1)) < 32
        too_big = httpx.post(f"{base}/v1/solvers/affine/predict", content=b" " * (5 * 2**20))
        assert too_big.status_code == 413
    finally:
        server.send_signal(signal.SIGTERM)  # a graceful shutdown; uvicorn re-raises the signal
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
