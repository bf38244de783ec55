"""opifex.quantum RHF at the size chemists use, beside PySCF on one thread: time and peak memory.

Each (molecule, basis, code) runs in a fresh subprocess, so the peak resident memory
(``ru_maxrss``) is that case's alone. opifex: the first ``run_scf`` (compilation and run, no
persistent cache) and the median of the next ``REPEATS`` (steady state: screened integrals,
in-core Coulomb and exchange supermatrices, SCF); PySCF: its conventional in-core ``scf.RHF``,
the median of ``REPEATS`` runs after a first, on opifex's basis data
(``opifex.quantum.to_pyscf``), one thread. A case with a memory budget passes it as opifex's
``max_memory``, which picks the first layout that fits (both supermatrices, the Coulomb one
alone, direct SCF; the row records it); where the budget is below PySCF's in-core need
(``nao^4`` bytes) PySCF runs its direct SCF. Cases with an auxiliary basis run density fitting
(RI-JK) in both codes: ``run_scf(..., auxbasis=...)`` against PySCF's
``scf.RHF(mol).density_fit(auxbasis=...)`` with the same auxiliary data (a fresh object per
run, so both rebuild their 3-centre integrals every time).
Geometries are idealised linear acenes (benzene: D6h, C-C 1.39 A, C-H 1.09 A; naphthalene,
anthracene, tetracene: two to four fused such hexagons), which is all a timing needs; both
codes get the same one.

Run from the workspace root::

    uv run python benchmarks/quantum/bench_scale.py            # all four cases (minutes)
    uv run python benchmarks/quantum/bench_scale.py --quick    # benzene/6-31G only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import print_tables, run_metadata, write_outputs

Progress = Callable[[int, int, str], None]
NAME = "quantum_scale"
LOG = logging.getLogger("opifex.benchmarks.quantum")
JKFIT = "def2-universal-jkfit"
CASES = (  # (molecule, basis, auxiliary basis or None, memory budget in MB or None)
    ("benzene", "6-31g", None, None),
    ("benzene", "6-31g*", None, None),
    ("naphthalene", "6-31g", None, None),
    ("benzene", "def2-svp", None, None),
    ("benzene", "def2-svp", JKFIT, None),
    ("anthracene", "cc-pvdz", JKFIT, None),
    ("tetracene", "cc-pvdz", JKFIT, None),
    ("anthracene", "6-31g", None, 1200.0),  # 146 functions: the Coulomb supermatrix alone
    ("benzene", "6-31g", None, 1.0),  # nothing fits: direct SCF in both codes
)
UNBOUNDED_MB = 16000.0  # opifex's max_memory without a budget: every stored layout fits
CONV_TOL = 1e-9
REPEATS = 3  # steady-state calls after the first; the median is reported
_BOND_CC, _BOND_CH = 1.39, 1.09
ACENES = ("benzene", "naphthalene", "anthracene", "tetracene")


def _hexagon(centre_x: float) -> list[tuple[float, float]]:
    angles = np.pi / 3 * np.arange(6) + np.pi / 6  # two vertical edges: hexagons fuse along x
    return [(float(centre_x + _BOND_CC * np.cos(a)), float(_BOND_CC * np.sin(a))) for a in angles]


def geometry(name: str) -> list[tuple[str, tuple[float, float, float]]]:
    """Idealised planar geometry in Angstrom of a linear acene (``ACENES``: 1 to 4 rings).

    Example:
        >>> len(geometry("benzene")), len(geometry("naphthalene")), len(geometry("tetracene"))
        (12, 18, 30)
    """
    centres = [k * _BOND_CC * np.sqrt(3.0) for k in range(ACENES.index(name) + 1)]
    carbons: list[tuple[float, float]] = []
    for centre in centres:
        for point in _hexagon(centre):
            if all(np.hypot(point[0] - c[0], point[1] - c[1]) > 0.1 for c in carbons):
                carbons.append(point)
    atoms = [("C", (x, y, 0.0)) for x, y in carbons]
    for x, y in carbons:  # a hydrogen on every carbon with two carbon neighbours
        neighbours = [c for c in carbons if 0.1 < np.hypot(x - c[0], y - c[1]) < 1.5]
        if len(neighbours) == 2:
            out = np.array([x, y]) - np.mean(neighbours, axis=0)
            h = np.array([x, y]) + _BOND_CH * out / np.linalg.norm(out)
            atoms.append(("H", (float(h[0]), float(h[1]), 0.0)))
    return atoms


_CHILD = r"""
import json, resource, sys, time
import jax
jax.config.update("jax_enable_x64", True)
from opifex.quantum import SCFConfig, create_molecular_system, run_scf, to_pyscf
from opifex.quantum._pyscf import pyscf_basis
atoms, basis, aux, budget, code, conv_tol, repeats = json.loads(sys.argv[1])
molecule = create_molecular_system([(s, tuple(x)) for s, x in atoms])
out = {}
times = []
if code == "opifex":
    config = SCFConfig(conv_tol=conv_tol)
    from opifex.quantum._integrals import _resolved_layout
    from opifex.quantum._scf import _named_basis
    basis_set = _named_basis(molecule.atomic_numbers, basis, False)
    aux_set = None if aux is None else _named_basis(molecule.atomic_numbers, aux, False)
    out["eri_layout"] = _resolved_layout(basis_set, "auto", aux_set, budget or UNBOUNDED_MB)
    for _ in range(1 + repeats):
        start = time.perf_counter()
        result = run_scf(
            molecule, basis, config=config, auxbasis=aux, max_memory=budget or UNBOUNDED_MB
        )
        energy = float(result.value)
        times.append(time.perf_counter() - start)
    out.update(energy=energy, cycles=int(result.num_steps), status=result.status_name)
else:
    from pyscf import lib, scf
    lib.num_threads(1)
    mol = to_pyscf(molecule, basis)
    for _ in range(1 + repeats):
        start = time.perf_counter()
        mf = scf.RHF(mol)
        if aux is not None:
            mf = mf.density_fit(auxbasis=pyscf_basis(molecule.atomic_numbers, aux))
        mf.conv_tol, mf.verbose = conv_tol, 0
        if budget is not None and mol.nao**4 / 1e6 > budget:  # its in-core need: direct
            mf.max_memory = lib.current_memory()[0] + 0.5 * mol.nao**4 / 1e6
            out["direct"] = True
        energy = mf.kernel()
        times.append(time.perf_counter() - start)
    out.update(energy=float(energy), cycles=int(mf.cycles), n_functions=int(mol.nao),
               status="SUCCESS" if mf.converged else "NOT_CONVERGED")
out["first_s"], out["steady_times_s"] = times[0], times[1:]
out["steady_s"] = sorted(times[1:])[len(times[1:]) // 2]
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _run_case(atoms: list, basis: str, aux: str | None, budget, code: str) -> dict:
    env = dict(os.environ, OPIFEX_JAX_CACHE="off", OMP_NUM_THREADS="1")
    argument = json.dumps([atoms, basis, aux, budget, code, CONV_TOL, REPEATS])
    child = f"UNBOUNDED_MB = {UNBOUNDED_MB}\n" + _CHILD
    done = subprocess.run(
        [sys.executable, "-c", child, argument], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        return {"status": "FAILED", "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(
    cases: Sequence[tuple[str, str, str | None, float | None]], progress: Progress | None
) -> dict[str, Any]:
    """Every case with both codes; rows hold the two runs and their ratios."""
    rows = []
    total = 2 * len(cases)
    for k, (name, basis, aux, budget) in enumerate(cases):
        atoms = geometry(name)
        row: dict[str, Any] = {"molecule": name, "basis": basis, "auxbasis": aux}
        row["max_memory_mb"] = budget
        for j, code in enumerate(("pyscf", "opifex")):
            if progress is not None:
                progress(2 * k + j, total, f"{case_name(row)} {code}")
            row[code] = _run_case(atoms, basis, aux, budget, code)
        ours, theirs = row["opifex"], row["pyscf"]
        if "energy" in ours and "energy" in theirs:
            row["energy_diff"] = ours["energy"] - theirs["energy"]
            row["steady_ratio"] = ours["steady_s"] / theirs["steady_s"]
        rows.append(row)
    if progress is not None:
        progress(total, total, "done")
    return {"benchmark": NAME, "meta": run_metadata(["opifex-quantum", "pyscf"]), "rows": rows}


def case_name(row: dict[str, Any]) -> str:
    """``molecule/basis`` with ``+ RI(auxbasis)`` and opifex's layout when not the default."""
    name = f"{row['molecule']}/{row['basis']}"
    if row.get("auxbasis") is not None:
        name += f" + RI({row['auxbasis']})"
    layout = row.get("opifex", {}).get("eri_layout")
    if row.get("max_memory_mb") is not None and layout:
        name += f", {row['max_memory_mb']:g} MB: {layout}"
    return name


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(results: dict[str, Any]) -> None:
    """Print the table of a results dict."""
    columns = ("case", "n", "PySCF s", "opifex 1st s", "opifex steady s", "ratio",
               "PySCF MB", "opifex MB", "dE", "cycles")  # fmt: skip
    table = []
    for row in results["rows"]:
        ours, theirs = row["opifex"], row["pyscf"]
        table.append([
            case_name(row), str(theirs.get("n_functions", "-")),
            _cell(theirs.get("steady_s"), ".2f"), _cell(ours.get("first_s"), ".1f"),
            _cell(ours.get("steady_s"), ".2f"), _cell(row.get("steady_ratio"), ".2f"),
            _cell(theirs.get("peak_rss_mb"), ".0f"), _cell(ours.get("peak_rss_mb"), ".0f"),
            _cell(row.get("energy_diff"), ".1e"),
            f"{ours.get('cycles', '-')} / {theirs.get('cycles', '-')}",
        ])  # fmt: skip
    print_tables([("RHF at scale, opifex vs PySCF (1 thread)", columns, table)], [], sys.stdout)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark and write ``quantum_scale.json``; 0 when every case ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="benzene/6-31G only")
    parser.add_argument(
        "--cases", type=int, nargs="+", metavar="K", help="run only these entries of CASES"
    )
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parents[1] / "results")
    args = parser.parse_args(argv)
    cases = CASES[:1] if args.quick else CASES
    if args.cases:
        cases = [CASES[k] for k in args.cases]
    results = run_benchmark(cases, progress)
    write_outputs(results, args.output_dir, NAME, render=render, plot=None)
    return 0 if all("energy_diff" in row for row in results["rows"]) else 1


if __name__ == "__main__":
    from bench_common import print_progress

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(progress=print_progress))
