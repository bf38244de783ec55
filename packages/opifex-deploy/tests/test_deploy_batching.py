"""Micro-batching: fewer solver calls than requests, bucket sizes only, the wait bound, failures.

The assertions are on call counts and batch sizes; the few on time have wide margins, so that
they hold on a loaded 2-core machine.
"""

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from opifex.deploy._batching import MicroBatcher, bucket_sizes, run_padded
from opifex.deploy._service import create_app
from opifex.deploy._signature import Signature, TensorSpec


class Recorder:
    """``y = 3 x + 1`` on a batch; records each call's batch size; fails on x == -1."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs):
        x = inputs["x"]
        self.calls.append(len(x))
        if np.any(x == -1):
            raise ValueError("bad example in the batch")
        return {"y": 3 * x + 1}


def _x(value, n=1):
    return {"x": np.full((n, 2), value, np.float32)}


def _gather(batcher, requests):
    async def main():
        return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("max_batch_size", "expected"),
    [(1, (1,)), (2, (1, 2)), (8, (1, 2, 4, 8)), (12, (1, 2, 4, 8, 12)), (32, (1, 2, 4, 8, 16, 32))],
)
def test_bucket_sizes(max_batch_size, expected):
    assert bucket_sizes(max_batch_size) == expected


@pytest.mark.parametrize("bad", [0, -3])
def test_bucket_sizes_refuse_non_positive(bad):
    with pytest.raises(ValueError, match="max_batch_size"):
        bucket_sizes(bad)


def test_run_padded_pads_to_buckets_and_chunks_large_batches():
    fn = Recorder()
    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    out = run_padded(fn, {"x": x}, buckets=(1, 2, 4))
    np.testing.assert_array_equal(out["y"], 3 * x + 1)
    assert fn.calls == [4, 4, 4]  # 4 + 4 + 3 (padded to 4)


def test_run_padded_refuses_outputs_without_the_batch_axis():
    with pytest.raises(RuntimeError, match="shape"):
        run_padded(lambda inputs: {"y": inputs["x"].sum()}, _x(1.0, 3), buckets=(1, 2, 4))


def test_concurrent_requests_share_calls_and_get_their_own_answers():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=8, max_delay_ms=50.0)
    requests = [_x(float(i), n=1 + i % 3) for i in range(12)]
    answers = _gather(batcher, requests)
    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer["y"], 3 * request["x"] + 1)
    assert len(fn.calls) < len(requests)
    assert set(fn.calls) <= set(bucket_sizes(8))
    assert batcher.idle


def test_a_full_batch_does_not_wait_for_the_delay():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=4, max_delay_ms=60_000.0)

    async def main():  # a minute of delay: only a full batch can answer in time
        return await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(_x(1.0)) for _ in range(4))), timeout=30
        )

    assert len(asyncio.run(main())) == 4
    assert fn.calls == [4]


def test_a_lone_request_waits_about_max_delay_and_no_more():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=8, max_delay_ms=30.0)

    async def main():
        start = time.perf_counter()
        await batcher.submit(_x(1.0))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    assert 0.02 <= elapsed < 2.0  # waited for company, then ran alone
    assert fn.calls == [1]


def test_the_open_batch_keeps_filling_while_the_solver_is_busy():
    entered, release = threading.Event(), threading.Event()
    calls = []

    def slow(inputs):
        calls.append(len(inputs["x"]))
        entered.set()
        assert release.wait(30)
        return {"y": inputs["x"]}

    batcher = MicroBatcher(slow, max_batch_size=8, max_delay_ms=1.0)

    async def main():
        first = asyncio.ensure_future(batcher.submit(_x(0.0)))
        await asyncio.to_thread(entered.wait, 30)  # the first batch is running
        rest = [asyncio.ensure_future(batcher.submit(_x(float(i)))) for i in range(1, 4)]
        await asyncio.sleep(0.05)  # well past max_delay_ms: the three are due, not yet run
        release.set()
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(main())
    assert [a["y"][0, 0] for a in answers] == [0.0, 1.0, 2.0, 3.0]
    assert calls == [1, 4]  # the three ran together, padded to 4


def test_a_failing_solver_fails_only_its_batch():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=2, max_delay_ms=50.0)
    answers = _gather(batcher, [_x(-1.0), _x(1.0), _x(2.0), _x(3.0)])
    assert all(isinstance(a, ValueError) for a in answers[:2])
    np.testing.assert_array_equal(answers[2]["y"], [[7.0, 7.0]])
    np.testing.assert_array_equal(answers[3]["y"], [[10.0, 10.0]])
    assert np.array_equal(_gather(batcher, [_x(0.0)])[0]["y"], [[1.0, 1.0]])
    assert fn.calls == [2, 2, 1]


def test_a_cancelled_request_leaves_its_batch_intact():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=4, max_delay_ms=20.0)

    async def main():
        cancelled = asyncio.ensure_future(batcher.submit(_x(5.0)))
        kept = asyncio.ensure_future(batcher.submit(_x(6.0)))
        await asyncio.sleep(0)
        cancelled.cancel()
        return await kept

    np.testing.assert_array_equal(asyncio.run(main())["y"], [[19.0, 19.0]])
    assert fn.calls == [2]


def test_without_batching_every_request_is_its_own_call():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=8, max_delay_ms=50.0, batching=False)
    answers = _gather(batcher, [_x(float(i), n=3) for i in range(5)])
    assert [a["y"][0, 0] for a in answers] == [1.0, 4.0, 7.0, 10.0, 13.0]
    assert fn.calls == [4] * 5  # one call each, padded to a bucket all the same


def test_requests_of_max_batch_size_or_more_run_on_their_own():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=4, max_delay_ms=60_000.0)
    assert len(_gather(batcher, [_x(1.0, n=10)])[0]["y"]) == 10
    assert fn.calls == [4, 4, 2]


def test_refuses_a_negative_delay():
    with pytest.raises(ValueError, match="max_delay_ms"):
        MicroBatcher(Recorder(), max_delay_ms=-1.0)


class AffineServable:
    signature = Signature((TensorSpec("x", (2,), "float32"),), (TensorSpec("y", (2,), "float32"),))
    sha256 = "affine-1"

    def __init__(self):
        self.recorder = Recorder()

    def __call__(self, inputs):
        return self.recorder(inputs)


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_http_requests_are_batched(batching):
    servable = AffineServable()
    app = create_app(
        {"affine": ("v1", servable)}, max_batch_size=8, max_delay_ms=50.0, batching=batching
    )
    count = 16

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://opifex") as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/solvers/affine/predict", json={"instance": {"x": [i, 2 * i]}})
                    for i in range(count)
                )
            )

    answers = asyncio.run(main())
    assert [a.json()["outputs"]["y"] for a in answers] == [
        [3.0 * i + 1, 6.0 * i + 1] for i in range(count)
    ]
    calls = servable.recorder.calls
    assert sum(calls) >= count and set(calls) <= {1, 2, 4, 8}
    if batching:
        assert len(calls) < count
    else:
        assert calls == [1] * count
