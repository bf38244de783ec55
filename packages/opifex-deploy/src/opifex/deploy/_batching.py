"""Micro-batching: concurrent requests to one solver run as one padded batch.

A request joins the open batch of its solver version. The batch is closed when it holds
``max_batch_size`` examples, or when ``max_delay_ms`` have passed since its first request and
the solver is free; it is then concatenated, padded up to the next *bucket* size (the powers of
two up to ``max_batch_size``) so that the solver only ever sees a few batch sizes and the
compiled programs are reused, run in a worker thread (the event loop keeps serving), and split
back to its requests. No request waits more than ``max_delay_ms`` for its batch to fill; while
the solver is busy the open batch keeps filling, since its requests wait for the solver anyway.
An exception in the solver fails the requests of that batch only.

Example:
    >>> import asyncio
    >>> import numpy as np
    >>> calls = []
    >>> def double(inputs):
    ...     calls.append(len(inputs["x"]))
    ...     return {"y": 2 * inputs["x"]}
    >>> async def main():
    ...     batcher = MicroBatcher(double, max_batch_size=4, max_delay_ms=5.0)
    ...     xs = [np.full((1, 2), i, np.float32) for i in range(3)]
    ...     return await asyncio.gather(*(batcher.submit({"x": x}) for x in xs))
    >>> [out["y"].tolist() for out in asyncio.run(main())]
    [[[0.0, 0.0]], [[2.0, 2.0]], [[4.0, 4.0]]]
    >>> calls  # one call, three examples padded to the bucket of four
    [4]
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np

BatchFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
"""A solver on a batch: input arrays with a leading batch axis in, output arrays out."""

OnCall = Callable[[int, int], None]
"""Told ``(num_examples, padded_size)`` for every solver call, from the worker thread."""


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a solver is called with: powers of two below ``max_batch_size``, and it.

    Example:
        >>> bucket_sizes(8), bucket_sizes(12)
        ((1, 2, 4, 8), (1, 2, 4, 8, 12))
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


def batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    """The length of the leading axis shared by ``inputs``."""
    return len(next(iter(inputs.values())))


def run_padded(
    fn: BatchFn,
    inputs: Mapping[str, np.ndarray],
    buckets: tuple[int, ...],
    on_call: OnCall | None = None,
) -> dict[str, np.ndarray]:
    """Call ``fn`` on ``inputs`` padded up to bucket sizes; return the unpadded outputs.

    A batch larger than the largest bucket is run in chunks of that size. Padding repeats the
    last example, so the padded rows are valid inputs; their outputs are dropped.

    Args:
        fn: the solver, on a batch.
        inputs: input arrays with a common leading batch axis.
        buckets: increasing batch sizes, from :func:`bucket_sizes`.
        on_call: told ``(num_examples, padded_size)`` before each call of ``fn``.

    Returns:
        ``fn``'s outputs for exactly the examples of ``inputs``, as numpy arrays.

    Raises:
        RuntimeError: ``fn`` returned an output without the padded batch as its leading axis.

    Example:
        >>> import numpy as np
        >>> seen = []
        >>> def square(inputs):
        ...     seen.append(inputs["x"].shape)
        ...     return {"y": inputs["x"] ** 2}
        >>> out = run_padded(square, {"x": np.arange(3.0)}, buckets=(1, 2, 4))
        >>> out["y"].tolist(), seen
        ([0.0, 1.0, 4.0], [(4,)])
    """
    total = batch_size(inputs)
    chunks = []
    for start in range(0, total, buckets[-1]):
        chunk = {name: array[start : start + buckets[-1]] for name, array in inputs.items()}
        size = batch_size(chunk)
        padded_size = next(b for b in buckets if b >= size)
        padded = {name: _pad(array, padded_size) for name, array in chunk.items()}
        if on_call is not None:
            on_call(size, padded_size)
        outputs = {name: np.asarray(array) for name, array in fn(padded).items()}
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != padded_size:
                raise RuntimeError(
                    f"the solver returned output {name!r} of shape {array.shape} for a batch "
                    f"of {padded_size}"
                )
        chunks.append({name: array[:size] for name, array in outputs.items()})
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) == size:
        return array
    filler = np.repeat(array[-1:], size - len(array), axis=0)
    return np.concatenate([array, filler])


class _Request(NamedTuple):
    inputs: Mapping[str, np.ndarray]
    size: int
    future: asyncio.Future[dict[str, np.ndarray]]


class MicroBatcher:
    """Gathers concurrent requests to one solver into padded batches (see the module doc).

    Args:
        fn: the solver, on a batch; called in ``executor``'s threads.
        max_batch_size: the most examples in one call; a request with at least this many
            examples runs on its own, in chunks of this size.
        max_delay_ms: the longest a request waits for its batch to fill.
        batching: ``False`` runs every request on its own (padded to a bucket all the same),
            the baseline micro-batching is measured against.
        executor: where ``fn`` runs; ``None``: the event loop's default thread pool.
        on_call: told ``(num_examples, padded_size)`` for every call of ``fn``.

    Example:
        >>> import asyncio
        >>> import numpy as np
        >>> batcher = MicroBatcher(lambda inputs: {"y": inputs["x"] + 1}, max_batch_size=2)
        >>> asyncio.run(batcher.submit({"x": np.zeros(3)}))["y"].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        fn: BatchFn,
        *,
        max_batch_size: int = 32,
        max_delay_ms: float = 2.0,
        batching: bool = True,
        executor: Executor | None = None,
        on_call: OnCall | None = None,
    ) -> None:
        if max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        self.fn = fn
        self.buckets = bucket_sizes(max_batch_size)
        self.max_batch_size = max_batch_size
        self.max_delay_ms = max_delay_ms
        self.batching = batching
        self._executor = executor
        self._on_call = on_call
        self._open: list[_Request] = []
        self._open_size = 0
        self._due = False  # the open batch has waited max_delay_ms
        self._timer: asyncio.TimerHandle | None = None
        self._closed: collections.deque[list[_Request]] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Whether no request is waiting or running."""
        return not (self._open or self._closed or self._running)

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The solver's outputs for ``inputs`` (a batch of one or more examples).

        Raises:
            Exception: whatever the solver raised on the batch this request was part of.
        """
        size = batch_size(inputs)
        if not self.batching or size >= self.max_batch_size:
            return await self._run(inputs)
        loop = asyncio.get_running_loop()
        if self._open_size + size > self.max_batch_size:
            self._close()
        request = _Request(inputs, size, loop.create_future())
        self._open.append(request)
        self._open_size += size
        if self._open_size == self.max_batch_size:
            self._close()
        elif len(self._open) == 1:
            self._timer = loop.call_later(self.max_delay_ms / 1000, self._on_due)
        self._dispatch()
        return await request.future

    def _on_due(self) -> None:
        self._timer = None
        self._due = True
        self._dispatch()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open:
            self._closed.append(self._open)
        self._open, self._open_size, self._due = [], 0, False

    def _dispatch(self) -> None:
        # one batch of this solver at a time: while it runs, the next one keeps filling
        if self._running:
            return
        if not self._closed and self._due:
            self._close()
        if self._closed:
            task = asyncio.get_running_loop().create_task(self._run_batch(self._closed.popleft()))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._dispatch()

    async def _run_batch(self, requests: list[_Request]) -> None:
        names = list(requests[0].inputs)
        batch = {name: np.concatenate([r.inputs[name] for r in requests]) for name in names}
        try:
            outputs = await self._run(batch)
        except asyncio.CancelledError:
            for request in requests:
                request.future.cancel()
            raise
        except Exception as error:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        start = 0
        for request in requests:
            if not request.future.done():  # not cancelled by its caller
                end = start + request.size
                request.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start += request.size

    async def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, run_padded, self.fn, inputs, self.buckets, self._on_call
        )
