"""``opifex scf``: Hartree-Fock of a named molecule or an XYZ file, with a convergence plot.

The molecule is one of ``opifex.quantum.known_molecules()`` (``H2O``, ``CH4``, ``O2`` ...) or
an XYZ file / XYZ text in Angstrom. The SCF is ``opifex.quantum.run_scf`` (jit-compiled, MINAO
guess, CDIIS; no retry unless ``SCFConfig.retry_*`` is set, which the command does not do); the
command prints the energy and its parts, the iterations, the frontier orbitals, optional nuclear
gradients, a text plot of the orbital-gradient norm per cycle (``--plot FILE.png`` also writes
it with matplotlib), and how long compiling and solving took. While JAX compiles (or reads a
program back from the persistent compilation cache) a status line on stderr says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from rich import box
from rich.console import Console
from rich.table import Table

BAR_WIDTH = 40
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
"""JAX's events for tracing, lowering and compiling (or reading back) a jitted program."""
_BACKEND_COMPILE = COMPILE_EVENTS[2]
_CACHE_READ = "/jax/compilation_cache/cache_hits"
_CACHE_LOOKUP = "/jax/compilation_cache/compile_requests_use_cache"


@dataclasses.dataclass
class CallTiming:
    """Wall time of a first call, split into compilation and the rest, as JAX reports it.

    ``compile_s`` is the time covered by JAX's trace / lowering / compile events (nested
    ones counted once): tracing the Python code, lowering it and XLA compilation, or reading
    the compiled program back from the persistent cache. ``solve_s`` is the rest of the call:
    running the programs (and the little Python around them).

    Attributes:
        total_s: wall time of the whole call (s).
        compile_s: the part spent tracing and compiling (s).
        programs: XLA programs compiled or read from the persistent cache.
        cache_lookups: of those, how many were looked up in the persistent cache.
        cache_reads: ... and how many were found there.

    Example:
        >>> timing = CallTiming(total_s=5.2, compile_s=5.0, programs=1, cache_lookups=1)
        >>> round(timing.solve_s, 3), timing.cache_note()
        (0.2, 'compiled now, saved to the persistent compilation cache')
    """

    total_s: float = 0.0
    compile_s: float = 0.0
    programs: int = 0
    cache_lookups: int = 0
    cache_reads: int = 0

    @property
    def solve_s(self) -> float:
        """Seconds of the call not spent compiling."""
        return max(self.total_s - self.compile_s, 0.0)

    def cache_note(self) -> str:
        """Where the compiled programs came from, in words."""
        if self.programs == 0:
            return "already compiled in this process"
        if self.cache_lookups == 0:
            return "compiled now; persistent compilation cache off"
        if self.cache_reads == self.cache_lookups:
            return "read from the persistent compilation cache"
        if self.cache_reads == 0:
            return "compiled now, saved to the persistent compilation cache"
        return (
            f"{self.cache_reads} of {self.cache_lookups} programs read from the persistent "
            "compilation cache, the others compiled now"
        )


class _Watch:
    """The open ``watch_compilation`` blocks, fed by listeners registered once per process."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    open: ClassVar[list[tuple[CallTiming, list, Callable[[str], None] | None]]] = []
    registered: ClassVar[bool] = False

    @classmethod
    def register(cls) -> None:
        from jax import monitoring

        with cls.lock:
            if cls.registered:
                return
            monitoring.register_event_duration_secs_listener(cls.on_duration)
            monitoring.register_event_listener(cls.on_event)
            if hasattr(monitoring, "register_scalar_listener"):  # an event's start, newer JAX
                monitoring.register_scalar_listener(cls.on_scalar)
            cls.registered = True

    @classmethod
    def _tell(cls, phase: str) -> None:
        for _timing, _spans, on_phase in cls.open:
            if on_phase is not None:
                on_phase(phase)

    @classmethod
    def on_scalar(cls, event: str, value: float, **_: Any) -> None:
        if event == _BACKEND_COMPILE:
            cls._tell("compiling")

    @classmethod
    def on_duration(cls, event: str, duration: float, **_: Any) -> None:
        if event not in COMPILE_EVENTS:
            return
        end = time.perf_counter()
        for timing, spans, _on_phase in cls.open:
            spans.append((end - duration, end))
            timing.programs += event == _BACKEND_COMPILE
        if event == _BACKEND_COMPILE:
            cls._tell("running")

    @classmethod
    def on_event(cls, event: str, **_: Any) -> None:
        if event == _CACHE_LOOKUP:
            cls._tell("compiling")
        for timing, _spans, _on_phase in cls.open:
            timing.cache_lookups += event == _CACHE_LOOKUP
            timing.cache_reads += event == _CACHE_READ


def _covered(spans: list[tuple[float, float]]) -> float:
    """Length of the union of the intervals."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@contextlib.contextmanager
def watch_compilation(on_phase: Callable[[str], None] | None = None) -> Iterator[CallTiming]:
    """Time the block and the part of it JAX spends tracing and compiling.

    Args:
        on_phase: called with ``"compiling"`` when XLA starts compiling a program (or reading
            it back from the persistent cache) and ``"running"`` when it is done, e.g. to say
            so on a status line.

    Yields:
        A ``CallTiming``, filled in when the block ends. Block on the block's results
        (``jax.block_until_ready``) inside it, or the solve is not timed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> with watch_compilation() as timing:
        ...     _ = jax.block_until_ready(jax.jit(lambda x: x * 2.0 + 1.0)(jnp.ones(5)))
        >>> timing.programs >= 1, 0.0 < timing.compile_s <= timing.total_s
        (True, True)
    """
    _Watch.register()
    timing, spans = CallTiming(), []
    entry = (timing, spans, on_phase)
    with _Watch.lock:
        _Watch.open.append(entry)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing.total_s = time.perf_counter() - start
        with _Watch.lock:
            _Watch.open.remove(entry)
        timing.compile_s = min(_covered(spans), timing.total_s)


class StatusLine:
    """What the command is doing, on stderr: a spinner on a terminal, else plain lines.

    Example:
        >>> import io
        >>> status = StatusLine(Console(file=io.StringIO(), force_terminal=False))
        >>> with status:
        ...     status.update("compiling the SCF")
        ...     status.update("compiling the SCF")  # said once
        >>> print(status.console.file.getvalue(), end="")
        compiling the SCF ...
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._spinner = None
        self._said: set[str] = set()

    def __enter__(self) -> StatusLine:
        if self.console.is_terminal:
            self._spinner = self.console.status("starting ...")
            self._spinner.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._spinner is not None:
            self._spinner.__exit__(*exc_info)

    def update(self, message: str) -> None:
        """Show ``message`` (a terminal's spinner text, or one line the first time)."""
        if self._spinner is not None:
            self._spinner.update(f"{message} ...")
        elif message not in self._said:
            self._said.add(message)
            self.console.print(f"{message} ...", markup=False, highlight=False, soft_wrap=True)


def timing_line(label: str, timing: CallTiming) -> str:
    """``label: compile X s + solve Y s (where the programs came from)``.

    Example:
        >>> timing_line("SCF", CallTiming(total_s=5.25, compile_s=5.0, programs=1))
        'SCF: compile 5.00 s + solve 0.250 s (compiled now; persistent compilation cache off)'
    """
    return (
        f"{label}: compile {timing.compile_s:.2f} s + solve {timing.solve_s:.3f} s "
        f"({timing.cache_note()})"
    )


def load_molecule(spec: str, charge: int | None, multiplicity: int | None) -> Any:
    """A known molecule by name, or one read from an XYZ file or XYZ text.

    Args:
        spec: a name from ``opifex.quantum.known_molecules()``, a path, or XYZ text.
        charge: total charge (XYZ input only; a named molecule has its own).
        multiplicity: spin multiplicity, ``None`` for the default.

    Returns:
        The ``opifex.quantum.Molecule``.

    Raises:
        ValueError: an unknown name, unreadable XYZ, or a charge given for a named molecule.

    Example:
        >>> load_molecule("h2o", None, None).symbols
        ('O', 'H', 'H')
    """
    from opifex.quantum import create_molecular_system, known_molecules, molecule_from_name

    if spec.lower() in {name.lower() for name in known_molecules()}:
        if charge is not None:
            raise ValueError(f"{spec} has a fixed charge; --charge applies to XYZ input only")
        return molecule_from_name(spec, multiplicity=multiplicity)
    if "\n" not in spec and not Path(spec).is_file():
        raise ValueError(
            f"{spec!r} is neither a known molecule ({', '.join(known_molecules())}) nor an XYZ file"
        )
    return create_molecular_system(spec, charge=charge or 0, multiplicity=multiplicity)


def convergence_rows(result: Any) -> list[tuple[int, float, float, float]]:
    """``(cycle, energy, energy change, orbital-gradient norm)`` for every cycle run.

    Read from the ``SolveResult``'s ``trace``, whose entry 0 is the guess and entry ``k`` cycle
    ``k``.

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> trace = {k: np.array([0.5, 1.0, 2.0, np.nan]) for k in ("value", "energy_change",
        ...          "grad_norm")}
        >>> convergence_rows(SimpleNamespace(trace=trace, num_steps=2))
        [(1, 1.0, 1.0, 1.0), (2, 2.0, 2.0, 2.0)]
    """
    count = int(result.num_steps)
    columns = [
        [float(v) for v in result.trace[k][1 : count + 1]]
        for k in ("value", "energy_change", "grad_norm")
    ]
    return [(i + 1, *(column[i] for column in columns)) for i in range(count)]


def _bar(residual: float, floor: float, top: float) -> str:
    if not math.isfinite(residual) or residual <= 0:
        return ""
    span = max(math.log10(top) - math.log10(floor), 1e-12)
    fraction = (math.log10(max(residual, floor)) - math.log10(floor)) / span
    return "█" * max(1, round(fraction * BAR_WIDTH))


def render(molecule: Any, basis: str, result: Any, gradient: Any, console: Console) -> None:
    """Print the SCF summary, the convergence plot and (if given) the nuclear gradient."""
    status = "converged" if bool(result.converged) else f"NOT converged ({result.message})"
    console.print(
        f"[bold]{' '.join(molecule.symbols)}[/bold]  basis {basis}  charge {molecule.charge}  "
        f"multiplicity {molecule.multiplicity}: {status} in {int(result.num_steps)} cycles"
        + ("  (retried with level shift / damping)" if bool(result.aux.retried) else "")
    )
    console.print(f"total energy  {float(result.value):.10f} Eh")
    parts = Table(box=box.SIMPLE, title="energy components (Eh)")
    parts.add_column("component")
    parts.add_column("value", justify="right")
    for name, value in result.aux.components._asdict().items():
        parts.add_row(name.replace("_", " "), f"{float(value):.10f}")
    console.print(parts)

    rows = convergence_rows(result)
    plot = Table(box=box.SIMPLE, title="convergence: orbital-gradient norm per cycle (log scale)")
    for column in ("cycle", "energy (Eh)", "dE", "|g|", ""):
        plot.add_column(column, justify="right" if column != "" else "left")
    residuals = [r for *_, r in rows if math.isfinite(r) and r > 0]
    floor, top = (min(residuals), max(residuals)) if residuals else (1.0, 1.0)
    for cycle, energy, change, residual in rows:
        plot.add_row(
            str(cycle), f"{energy:.10f}", f"{change:.2e}", f"{residual:.2e}",
            _bar(residual, floor, top),
        )  # fmt: skip
    console.print(plot)
    if gradient is not None:
        grad = Table(box=box.SIMPLE, title="nuclear gradient dE/dR (Eh/Bohr)")
        for column in ("atom", "x", "y", "z"):
            grad.add_column(column, justify="right")
        for symbol, row in zip(molecule.symbols, gradient, strict=True):
            grad.add_row(symbol, *(f"{float(v):+.8f}" for v in row))
        console.print(grad)


def save_plot(result: Any, path: Path, title: str) -> None:
    """Write the convergence plot (energy error and orbital-gradient norm) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = convergence_rows(result)
    cycles = [r[0] for r in rows]
    final = rows[-1][1] if rows else 0.0
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.semilogy(cycles, [r[3] for r in rows], "o-", label="orbital-gradient norm")
    errors = [max(abs(r[1] - final), 1e-16) for r in rows]
    axis.semilogy(cycles, errors, "s--", label="|E - E_final|")
    axis.set_xlabel("SCF cycle")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
