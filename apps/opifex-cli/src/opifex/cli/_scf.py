"""``opifex scf``: Hartree-Fock of a named molecule or an XYZ file, with a convergence plot.

The molecule is one of ``opifex.quantum.known_molecules()`` (``H2O``, ``CH4``, ``O2`` ...) or
an XYZ file / XYZ text in Angstrom. The SCF is ``opifex.quantum.run_scf`` (jit-compiled, MINAO
guess, CDIIS); the command prints the energy and its parts, the iterations, the frontier
orbitals, optional nuclear gradients, and a text plot of the orbital-gradient norm per cycle
(``--plot FILE.png`` also writes it with matplotlib).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

BAR_WIDTH = 40


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
