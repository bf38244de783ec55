"""Fuzzing the predict endpoint: no request, however malformed, gets a 5xx.

Hypothesis generates JSON of any structure, near-miss payloads (wrong names, shapes, dtypes,
NaN, huge numbers), raw bytes, ``.npz`` archives of any dtype and shape, odd headers and solver
names. A request either gets a 200 with one output row per example, or a 4xx with a JSON error
and the solver is not called.

Schemathesis generates requests from the service's own OpenAPI document (``/openapi.json``),
valid ones and ones that violate it, for every operation, and runs its default checks on the
answers: no 5xx, every status, content type and body as the document says, the valid requests
accepted and the invalid ones rejected.
"""

import asyncio
import io
import json
import string
import urllib.parse
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opifex.deploy._service import (
    _JSON_TYPE_NAMES,
    _JSON_TYPES,
    _check_json_types,
    create_app,
)
from opifex.deploy._signature import Signature, TensorSpec, coerce_inputs

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message=".*starlette.testclient")
    from starlette.testclient import TestClient

FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PREDICT = "/v1/solvers/mix/predict"
NAMES = ["x", "a", "b", "y", "", "inputs"]


class MixServable:
    """``y = where(b, a * x, x)``: a float, an integer and a boolean input, in numpy."""

    signature = Signature(
        inputs=(
            TensorSpec("x", (2,), "float32"),
            TensorSpec("a", (), "int32"),
            TensorSpec("b", (2,), "bool"),
        ),
        outputs=(TensorSpec("y", (2,), "float32"),),
    )
    sha256 = "mix-1"

    def __init__(self):
        self.calls = 0

    def __call__(self, inputs):
        self.calls += 1
        a = inputs["a"].astype(np.float32)[:, None]
        with np.errstate(over="ignore"):
            return {"y": np.where(inputs["b"], a * inputs["x"], inputs["x"])}


def _app(servable):
    return create_app(
        {"mix": ("v1", servable)}, max_batch_size=4, max_delay_ms=0.0, max_body_bytes=20_000
    )


@pytest.fixture(scope="module")
def served():
    servable = MixServable()
    with TestClient(_app(servable)) as client:
        yield client, servable


def _check(served, path, body, headers):
    client, servable = served
    calls = servable.calls
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code < 500, answer.text
    if answer.status_code == 200:
        return answer
    assert answer.status_code in (400, 404, 405, 413, 415, 422), answer.text
    assert answer.json()["error"]
    assert servable.calls == calls, "a rejected request reached the solver"
    return answer


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES), children, max_size=3)
    ),
    max_leaves=16,
)
arrays_as_lists = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.int64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
    elements={"allow_nan": True, "allow_infinity": True},
).map(lambda array: array.tolist())


@st.composite
def near_misses(draw, values):
    """Inputs of the right names and shapes (n examples), one of them perhaps replaced."""
    n = draw(st.integers(1, 3))
    payload = {
        "x": draw(hnp.arrays(np.float64, (n, 2))).tolist(),
        "a": draw(st.lists(st.integers(-(2**40), 2**40) | st.floats(), min_size=n, max_size=n)),
        "b": draw(hnp.arrays(np.bool_, (n, 2))).tolist(),
    }
    replaced = draw(st.sampled_from([None, *NAMES]))
    if replaced is not None:
        payload[replaced] = draw(values)
    return payload


payloads = near_misses(json_values | arrays_as_lists) | st.dictionaries(
    st.sampled_from(NAMES), json_values | arrays_as_lists, max_size=4
)
bodies = (
    json_values
    | st.fixed_dictionaries({"inputs": payloads})
    | st.fixed_dictionaries({"instance": payloads})
    | st.fixed_dictionaries({}, optional={"inputs": payloads, "instance": payloads, "x": scalars})
)


@FUZZ
@given(body=bodies)
def test_fuzzed_json_never_gets_a_5xx(served, body):
    content = json.dumps(body, allow_nan=True)
    answer = _check(served, PREDICT, content, {"content-type": "application/json"})
    if answer.status_code == 200:
        payload = body.get("inputs") or body["instance"]
        rows = len(payload["x"]) if "inputs" in body else 2
        assert np.shape(answer.json()["outputs"]["y"]) == (rows, 2)


@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(["application/json", "application/x-npz"])
    | st.text(alphabet=string.ascii_letters + "/;=-+ ", max_size=30),
    accept=st.sampled_from(["*/*", "application/x-npz", "text/html", ""]),
)
def test_fuzzed_bytes_and_headers_never_get_a_5xx(served, body, content_type, accept):
    _check(served, PREDICT, body, {"content-type": content_type, "accept": accept})


any_dtype = hnp.scalar_dtypes() | hnp.unicode_string_dtypes(max_len=3)
npz_arrays = hnp.arrays(
    dtype=any_dtype, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
)


@st.composite
def npz_near_misses(draw):
    """Arrays of the right names and shapes in any dtype, one of them perhaps replaced."""
    n = draw(st.integers(1, 3))
    shapes = {"x": (n, 2), "a": (n,), "b": (n, 2)}
    dtypes = {"x": np.float32, "a": np.int32, "b": np.bool_}
    arrays = {
        name: draw(hnp.arrays(st.just(dtypes[name]) | any_dtype, shape))
        for name, shape in shapes.items()
    }
    replaced = draw(st.sampled_from([None, *NAMES[:4]]))
    if replaced is not None:
        arrays[replaced] = draw(npz_arrays)
    return arrays


@FUZZ
@given(
    arrays=npz_near_misses()
    | st.dictionaries(st.sampled_from(NAMES[:4]), npz_arrays, min_size=1, max_size=4)
)
def test_fuzzed_npz_never_gets_a_5xx(served, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    headers = {"content-type": "application/x-npz", "accept": "application/x-npz"}
    answer = _check(served, PREDICT, buffer.getvalue(), headers)
    if answer.status_code == 200:
        outputs = np.load(io.BytesIO(answer.content))
        assert outputs["y"].shape == (len(arrays["x"]), 2)


@FUZZ
@given(name=st.text(max_size=12))
def test_fuzzed_solver_names_never_get_a_5xx(served, name):
    path = f"/v1/solvers/{urllib.parse.quote(name, safe='')}/predict"
    body = json.dumps({"instance": {"x": [1.0, 2.0], "a": 3, "b": [True, False]}})
    answer = _check(served, path, body, {"content-type": "application/json"})
    assert answer.status_code == (200 if name == "mix" else 404)


def _json_type_error_by_numpy(signature, payload):
    """The type check's first version (numpy flattens the values): its error, or None."""
    for spec in signature.inputs:
        kind = np.dtype(spec.dtype).kind
        allowed = _JSON_TYPES[kind]
        values = np.asarray(payload[spec.name], dtype=object).ravel().tolist()
        if set(map(type, values)) - set(allowed):
            wrong = next(value for value in values if type(value) not in allowed)
            return (
                f"input {spec.name!r} ({spec.dtype}) must hold JSON {_JSON_TYPE_NAMES[kind]}, "
                f"got {json.dumps(wrong)[:40]}"
            )
    return None


@FUZZ
@given(payload=payloads)
def test_the_json_type_check_agrees_with_numpys_flattening(payload):
    signature = MixServable.signature
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            arrays = coerce_inputs(signature, payload)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return  # a 422 before the type check
    expected = _json_type_error_by_numpy(signature, payload)
    try:
        _check_json_types(signature, payload, arrays)
    except ValueError as error:
        assert str(error) == expected
    else:
        assert expected is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1.5, [True, False]),  # a fraction for an integer (numpy would truncate it)
        (True, [True, False]),  # a boolean for an integer
        (3, [1, 0]),  # integers for booleans
        (3, [{}, "yes"]),  # an object and a string for booleans (numpy: both true)
    ],
)
def test_json_values_of_another_type_than_the_input_are_rejected(served, a, b):
    body = json.dumps({"instance": {"x": [1.0, 2.0], "a": a, "b": b}})
    answer = _check(served, PREDICT, body, {"content-type": "application/json"})
    assert answer.status_code == 422 and "must hold JSON" in answer.json()["error"]


# --------------------------------------------------------------------------------- schemathesis

SCHEMATHESIS = {
    # what a request that violates the document gets: 413 where it is over the app's limits
    "checks": {"negative_data_rejection": {"expected-statuses": [400, 404, 413, 415, 422]}},
}


def _same_batch_size(case):
    """Cut a batch's inputs to the shortest: the document cannot say that their lengths agree."""
    batch = case.body.get("inputs") if isinstance(case.body, dict) else None
    if batch:
        size = min(len(values) for values in batch.values())
        case.body = {"inputs": {name: values[:size] for name, values in batch.items()}}
    return case


@pytest.fixture(scope="module")
def openapi_cases():
    """Requests generated from ``/openapi.json``: valid (positive) and invalid (negative)."""
    app = _app(MixServable())
    asyncio.run(app.state.service.warm_up())  # ready: /readyz says 503 only while compiling
    config = schemathesis.Config.from_dict(SCHEMATHESIS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    positive = schema.as_strategy(schemathesis.GenerationMode.POSITIVE).map(_same_batch_size)
    return positive | schema.as_strategy(schemathesis.GenerationMode.NEGATIVE)


@pytest.mark.slow  # about 2.5 s: loading the document (1 s) and 100 requests
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(openapi_cases, data):
    case = data.draw(openapi_cases)
    case.call_and_validate()
