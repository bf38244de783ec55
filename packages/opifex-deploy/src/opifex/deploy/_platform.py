"""Pick how to run a served function by measuring it: compiled or not, batch size, device.

``HybridPerformancePlatform(...).plan(target, inputs)`` times ``target`` on batches of each
*bucket* size the service uses (``bucket_sizes(max_batch_size)``: the powers of two up to it),
in each way it can run and on each device, and returns a :class:`PerformancePlan` and a
report dict. The plan is the candidate with the highest steady-state throughput (examples per
second) whose per-call p99 latency stays within ``max_latency_ms``; ``create_app(...,
max_batch_size=plan.max_batch_size)`` then serves with it.

What is compared depends on the target:

* an :class:`~opifex.deploy.ExportedFunction` (a ``jax.export`` artifact) is always compiled
  (mode ``"exported"``); only the batch size and the device are chosen;
* a per-example JAX function ``fn(**example) -> {output: array}`` with its ``signature=``
  is run as ``jax.jit(jax.vmap(fn))`` (``"jit"``) and as ``jax.vmap(fn)`` op by op
  (``"eager"``), and the faster is chosen;
* any other servable (``signature`` and ``__call__`` on a batch, e.g. a non-JAX solver) is run
  as given (``"servable"``).

Devices: by default one device of each kind that jax sees (``jax.devices()``, plus the CPU
when the default backend is an accelerator); several identical devices are measured once. On a
CPU-only machine the only placement is the CPU, and the report says so.

Timings are honest wall-clock times (``timer``, ``time.perf_counter`` by default) of a call
from numpy inputs to numpy outputs: the outputs are waited for (``block_until_ready``) and
copied to the host, as the service does. The first call of each batch size (compilation plus
one run, in this process; a persistent compilation cache can shorten it) is reported apart
from the steady state, which is the median and the p99 of up to ``repeats`` later calls
(fewer once ``max_seconds`` is spent; with 20 repeats the p99 is close to the slowest call).
Once a batch size's p99 is over the latency bound, the larger sizes of that mode and device are
not measured (a larger batch is assumed to take no less time) and are listed as skipped.

Example:
    >>> import jax.numpy as jnp
    >>> from opifex.deploy import Signature, TensorSpec, export_function
    >>> sig = Signature((TensorSpec("x", (3,), "float32"),), (TensorSpec("y", (), "float32"),))
    >>> exported = export_function(lambda x: {"y": jnp.sum(x**2)}, sig, name="squares")
    >>> platform = HybridPerformancePlatform(max_batch_size=4, repeats=3)
    >>> plan, report = platform.plan(exported)
    >>> plan.mode, plan.max_batch_size in (1, 2, 4)
    ('exported', True)
    >>> [m["batch_size"] for m in report["measurements"]]
    [1, 2, 4]
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from ._artifact import ExportedFunction, _needs_x64, _x64
from ._batching import bucket_sizes
from ._signature import Signature, coerce_inputs

MODES = ("exported", "jit", "eager", "servable")
"""The ways a target runs, in the order preferred on a tie (compiled first)."""

_EXPORT_PLATFORMS = {"cpu": ("cpu",), "gpu": ("cuda", "rocm"), "tpu": ("tpu",)}

BatchCall = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


class Measurement(NamedTuple):
    """The timings of one candidate: a mode, a device and a batch size.

    Attributes:
        mode: ``"exported"``, ``"jit"``, ``"eager"`` or ``"servable"`` (module doc).
        device: the device, as ``str(device)``.
        batch_size: examples per call.
        first_call_s: wall time of the first call of this batch size (compile + one run).
        steady_s: wall times of the calls after it.

    Example:
        >>> m = Measurement("jit", "TFRT_CPU_0", 8, 0.5, (0.002, 0.001, 0.003))
        >>> m.median_s, round(m.throughput), round(m.compile_s, 3)
        (0.002, 4000, 0.498)
    """

    mode: str
    device: str
    batch_size: int
    first_call_s: float
    steady_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        """Median steady-state time of one call."""
        return float(statistics.median(self.steady_s))

    @property
    def p99_s(self) -> float:
        """99th percentile of the steady-state calls (linear interpolation)."""
        return float(np.percentile(self.steady_s, 99))

    @property
    def compile_s(self) -> float:
        """The first call's time beyond a steady call: the compile time (at least 0)."""
        return max(0.0, self.first_call_s - self.median_s)

    @property
    def throughput(self) -> float:
        """Examples per second in the steady state (``batch_size / median_s``)."""
        return self.batch_size / self.median_s if self.median_s > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        """The measurement and its statistics as a JSON-ready dict."""
        return {
            "mode": self.mode,
            "device": self.device,
            "batch_size": self.batch_size,
            "first_call_s": self.first_call_s,
            "compile_s": self.compile_s,
            "median_s": self.median_s,
            "p99_s": self.p99_s,
            "repeats": len(self.steady_s),
            "throughput_per_s": self.throughput,
        }


class PerformancePlan(NamedTuple):
    """How to run a target: the mode, device and largest batch chosen by measurement.

    Attributes:
        mode: ``"exported"``, ``"jit"``, ``"eager"`` or ``"servable"``.
        device: the device to place it on (``str(device)``).
        max_batch_size: the batch size chosen; pass it to ``create_app(max_batch_size=...)``.
        throughput: steady-state examples per second at that batch size.
        latency_s: p99 of one call at that batch size (what a full batch adds to a request's
            latency; queueing and HTTP are on top).
        compile_s: the compile time of that batch size (first call minus a steady one).
        warm_up_s: the first calls of every bucket up to it added up: about what a service's
            warm-up takes for this target.
        meets_latency_bound: whether ``latency_s`` is within the bound; ``False`` means no
            candidate was, and the plan is the one with the lowest p99.
    """

    mode: str
    device: str
    max_batch_size: int
    throughput: float
    latency_s: float
    compile_s: float
    warm_up_s: float
    meets_latency_bound: bool


def choose_plan(
    measurements: Sequence[Measurement], max_latency_s: float, *, throughput_rtol: float = 0.05
) -> PerformancePlan:
    """The plan the measurements call for (deterministic: no timing happens here).

    The candidates whose p99 is within ``max_latency_s`` compete on throughput; among those
    within ``throughput_rtol`` of the best, the smallest batch size wins (lower latency for the
    same work), then the mode earlier in :data:`MODES` (compiled first), then the device
    measured first. When no candidate meets the bound, the one with the lowest p99 is chosen
    and the plan says ``meets_latency_bound=False``.

    Args:
        measurements: what :meth:`HybridPerformancePlatform.measure` returned.
        max_latency_s: the bound on the p99 of one call, in seconds.
        throughput_rtol: the relative throughput difference treated as a tie.

    Returns:
        The :class:`PerformancePlan`.

    Raises:
        ValueError: no measurements, or a non-positive bound or negative tolerance.

    Example:
        >>> ms = [Measurement("jit", "cpu", b, 1.0, (0.001 + 0.0002 * b,)) for b in (1, 2, 4, 8)]
        >>> plan = choose_plan(ms, max_latency_s=0.002)  # batch 8 takes 2.6 ms: too slow
        >>> plan.max_batch_size, plan.meets_latency_bound
        (4, True)
    """
    if not measurements:
        raise ValueError("measurements must not be empty: nothing was measured")
    if not max_latency_s > 0:
        raise ValueError(f"max_latency_s must be > 0, got {max_latency_s}")
    if not throughput_rtol >= 0:
        raise ValueError(f"throughput_rtol must be >= 0, got {throughput_rtol}")
    devices = list(dict.fromkeys(m.device for m in measurements))

    def order(m: Measurement) -> tuple[int, int, int]:
        return (m.batch_size, MODES.index(m.mode), devices.index(m.device))

    feasible = [m for m in measurements if m.p99_s <= max_latency_s]
    if feasible:
        best = max(m.throughput for m in feasible)
        near = [m for m in feasible if m.throughput >= (1.0 - throughput_rtol) * best]
        chosen = min(near, key=order)
    else:
        chosen = min(measurements, key=lambda m: (m.p99_s, *order(m)))
    warm_up = sum(
        m.first_call_s
        for m in measurements
        if (m.mode, m.device) == (chosen.mode, chosen.device) and m.batch_size <= chosen.batch_size
    )
    return PerformancePlan(
        mode=chosen.mode,
        device=chosen.device,
        max_batch_size=chosen.batch_size,
        throughput=chosen.throughput,
        latency_s=chosen.p99_s,
        compile_s=chosen.compile_s,
        warm_up_s=warm_up,
        meets_latency_bound=bool(feasible),
    )


def _block(tree: Any) -> Any:
    """Wait for every JAX array in ``tree``; numpy leaves are ready already."""
    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
    return tree


def _to_host(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in _block(dict(outputs)).items()}


def default_devices() -> list[jax.Device]:
    """One device of each kind jax sees: the default backend's, and the CPU after them.

    Example:
        >>> [d.platform for d in default_devices()][-1]
        'cpu'
    """
    found = list(jax.devices())
    if found[0].platform != "cpu":
        found += jax.devices("cpu")
    kinds: dict[tuple[str, str], jax.Device] = {}
    for device in found:
        kinds.setdefault((device.platform, device.device_kind), device)
    return list(kinds.values())


def _example_batch(signature: Signature, inputs: Mapping[str, Any] | None, size: int) -> dict:
    """``size`` examples: ``inputs`` cycled, or seeded standard normals (zeros if not float)."""
    if inputs is not None:
        arrays = coerce_inputs(signature, inputs)
    else:
        rng = np.random.default_rng(0)
        arrays = {}
        for spec in signature.inputs:
            shape = (size, *spec.shape)
            if np.dtype(spec.dtype).kind == "f":
                arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            else:
                arrays[spec.name] = np.zeros(shape, spec.dtype)
    return {
        name: np.take(array, np.arange(size) % len(array), axis=0) for name, array in arrays.items()
    }


def _function_calls(
    fn: Callable[..., Mapping[str, Any]], signature: Signature
) -> dict[str, BatchCall]:
    """``{"jit": ..., "eager": ...}``: ``fn`` of one example as batch calls, numpy in and out."""
    names = [spec.name for spec in signature.inputs]
    wide = _needs_x64(signature)

    def one(*example: jax.Array) -> Mapping[str, Any]:
        return fn(**dict(zip(names, example, strict=True)))

    batched = jax.vmap(one)
    jitted = jax.jit(batched)

    def caller(run: Callable[..., Mapping[str, Any]]) -> BatchCall:
        def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with _x64(wide):
                return _to_host(run(*(inputs[name] for name in names)))

        return call

    return {"jit": caller(jitted), "eager": caller(batched)}


class HybridPerformancePlatform:
    """Chooses, by measurement, how to run a served function (see the module doc).

    Args:
        max_batch_size: the largest batch size tried; the sizes tried are
            ``bucket_sizes(max_batch_size)``, the ones the service compiles.
        max_latency_ms: the bound on the p99 of one call at the chosen batch size. A request
            may wait behind one running batch and then run in its own, so about half of a
            request's latency budget is a sensible value.
        repeats: steady-state calls per candidate, after its first call.
        max_seconds: time budget of one candidate's steady-state calls: the repeats stop once
            it is spent (after at least ``min(3, repeats)`` of them).
        modes: restrict the modes compared for a per-example function (``("jit",)``,
            ``("eager",)``); ``None``: both. Ignored for exported functions and servables.
        devices: the devices to try; ``None``: :func:`default_devices`.
        throughput_rtol: throughputs within this relative difference are a tie (see
            :func:`choose_plan`).
        timer: the clock, in seconds (injectable for tests).

    Raises:
        ValueError: a bound, count or budget that is not positive, an unknown mode, no device.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.deploy import Signature, TensorSpec
        >>> spec = TensorSpec("x", (2,), "float32")
        >>> sig = Signature((spec,), (spec._replace(name="y"),))
        >>> platform = HybridPerformancePlatform(max_batch_size=2, repeats=3)
        >>> plan, report = platform.plan(lambda x: {"y": 2 * x}, signature=sig)
        >>> sorted({m["mode"] for m in report["measurements"]}), plan.mode in ("jit", "eager")
        (['eager', 'jit'], True)
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 32,
        max_latency_ms: float = 50.0,
        repeats: int = 20,
        max_seconds: float = 2.0,
        modes: Sequence[str] | None = None,
        devices: Sequence[jax.Device] | None = None,
        throughput_rtol: float = 0.05,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.buckets = bucket_sizes(max_batch_size)
        if not max_latency_ms > 0:
            raise ValueError(f"max_latency_ms must be > 0, got {max_latency_ms}")
        if not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        if not throughput_rtol >= 0:
            raise ValueError(f"throughput_rtol must be >= 0, got {throughput_rtol}")
        if modes is not None:
            unknown = [m for m in modes if m not in ("jit", "eager")]
            if unknown or not modes:
                raise ValueError(
                    f"modes must be a non-empty subset of ('jit', 'eager'), got {modes}"
                )
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000.0
        self.repeats = repeats
        self.max_seconds = max_seconds
        self.modes = None if modes is None else tuple(modes)
        self.devices = default_devices() if devices is None else list(devices)
        if not self.devices:
            raise ValueError("devices must not be empty")
        self.throughput_rtol = throughput_rtol
        self.timer = timer

    # ---------------------------------------------------------------------------- candidates

    def _candidates(
        self, target: Any, signature: Signature | None
    ) -> tuple[Signature, str, dict[str, BatchCall]]:
        """``(signature, name, {mode: batch call})`` of ``target``."""
        if signature is not None:
            if not isinstance(signature, Signature):
                raise TypeError(f"signature must be a Signature, got {type(signature).__name__}")
            if not callable(target):
                raise TypeError(f"target must be callable, got {type(target).__name__}")
            calls = _function_calls(target, signature)
            modes = self.modes or ("jit", "eager")
            name = getattr(target, "__name__", "function")
            return signature, str(name), {mode: calls[mode] for mode in modes}
        if not isinstance(getattr(target, "signature", None), Signature) or not callable(target):
            raise TypeError(
                "target must be an ExportedFunction, a servable (a Signature in .signature and "
                "__call__ on a batch), or a per-example function with signature=...; got "
                f"{type(target).__name__}"
            )
        mode = "exported" if isinstance(target, ExportedFunction) else "servable"
        name = getattr(target, "name", type(target).__name__)

        def call(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return _to_host(target(inputs))

        return target.signature, str(name), {mode: call}

    def _runs_on(self, target: Any, mode: str, device: jax.Device) -> bool:
        if mode != "exported":
            return True
        return any(p in target.platforms for p in _EXPORT_PLATFORMS.get(device.platform, ()))

    # ---------------------------------------------------------------------------- measuring

    def _time(self, call: BatchCall, batch: Mapping[str, np.ndarray]) -> float:
        start = self.timer()
        call(batch)
        return self.timer() - start

    def _measure_one(
        self, call: BatchCall, batch: Mapping[str, np.ndarray], mode: str, device: jax.Device
    ) -> Measurement:
        with jax.default_device(device):
            first = self._time(call, batch)
            steady: list[float] = []
            least = min(3, self.repeats)
            for i in range(self.repeats):
                steady.append(self._time(call, batch))
                if i + 1 >= least and sum(steady) >= self.max_seconds:
                    break
        return Measurement(mode, str(device), len(next(iter(batch.values()))), first, tuple(steady))

    def measure(
        self,
        target: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        signature: Signature | None = None,
    ) -> tuple[list[Measurement], list[dict[str, Any]]]:
        """Time every candidate (mode, device, bucket size) of ``target``.

        Args:
            target: an ``ExportedFunction``, a servable, or a per-example JAX function (then
                with ``signature``).
            inputs: example inputs, a batch (a leading axis; cycled to each batch size). Give
                representative ones: an iterative solver's time depends on its input. ``None``:
                seeded standard normals (zeros for integer and bool inputs).
            signature: the signature of a per-example function ``target``; ``None`` for an
                exported function or a servable (theirs is used).

        Returns:
            ``(measurements, skipped)``: a :class:`Measurement` per candidate timed, and a
            dict ``{"mode", "device", "batch_size", "reason"}`` per candidate not timed.

        Raises:
            TypeError: ``target`` is none of the above.
            ValueError: ``inputs`` do not match the signature (``coerce_inputs``' message).
        """
        signature, _, calls = self._candidates(target, signature)
        return self._measure(target, signature, calls, inputs)

    def _measure(
        self,
        target: Any,
        signature: Signature,
        calls: Mapping[str, BatchCall],
        inputs: Mapping[str, Any] | None,
    ) -> tuple[list[Measurement], list[dict[str, Any]]]:
        batches = {size: _example_batch(signature, inputs, size) for size in self.buckets}
        measurements: list[Measurement] = []
        skipped: list[dict[str, Any]] = []
        for mode, call in calls.items():
            for device in self.devices:
                if not self._runs_on(target, mode, device):
                    reason = f"the artifact has no lowering for {device.platform}"
                    skipped += [
                        {"mode": mode, "device": str(device), "batch_size": b, "reason": reason}
                        for b in self.buckets
                    ]
                    continue
                too_slow: int | None = None
                for size in self.buckets:
                    if too_slow is not None:
                        reason = (
                            f"batch {too_slow} already had a p99 over the bound of "
                            f"{self.max_latency_s * 1e3:g} ms"
                        )
                        skipped.append(
                            {"mode": mode, "device": str(device), "batch_size": size,
                             "reason": reason}
                        )  # fmt: skip
                        continue
                    measurement = self._measure_one(call, batches[size], mode, device)
                    measurements.append(measurement)
                    if measurement.p99_s > self.max_latency_s:
                        too_slow = size
        return measurements, skipped

    def plan(
        self,
        target: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        signature: Signature | None = None,
    ) -> tuple[PerformancePlan, dict[str, Any]]:
        """Measure ``target`` (:meth:`measure`) and choose its plan (:func:`choose_plan`).

        Returns:
            ``(plan, report)``; the report is JSON-ready: ``target``, ``modes``, ``devices``,
            ``device_note``, ``max_latency_s``, ``buckets``, ``timing`` (how the times were
            taken), ``measurements`` (:meth:`Measurement.to_json` each), ``skipped``, ``plan``
            (the plan as a dict) and ``reason``.
        """
        signature_used, name, calls = self._candidates(target, signature)
        measurements, skipped = self._measure(target, signature_used, calls, inputs)
        plan = choose_plan(measurements, self.max_latency_s, throughput_rtol=self.throughput_rtol)
        devices = [str(d) for d in self.devices]
        if all(d.platform == "cpu" for d in self.devices):
            note = f"jax sees only CPU devices here: every candidate runs on {devices[0]}"
        else:
            note = f"one device of each kind jax sees: {', '.join(devices)}"
        if plan.meets_latency_bound:
            reason = (
                f"the highest throughput with a per-call p99 within "
                f"{self.max_latency_s * 1e3:g} ms (ties within {self.throughput_rtol:.0%}: the "
                "smaller batch)"
            )
        else:
            reason = (
                f"no candidate has a per-call p99 within {self.max_latency_s * 1e3:g} ms: the "
                "lowest p99"
            )
        report = {
            "target": name,
            "signature": signature_used.to_json(),
            "modes": list(calls),
            "devices": devices,
            "device_note": note,
            "max_latency_s": self.max_latency_s,
            "buckets": list(self.buckets),
            "timing": (
                "wall clock per call, numpy inputs to numpy outputs (block_until_ready, copy "
                "to host); first call of each batch size (compile + one run) apart from the "
                f"steady state: median and p99 of up to {self.repeats} later calls, at most "
                f"{self.max_seconds:g} s of them"
            ),
            "measurements": [m.to_json() for m in measurements],
            "skipped": skipped,
            "plan": plan._asdict(),
            "reason": reason,
        }
        return plan, report
