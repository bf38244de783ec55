"""Quantum SCF benchmark: opifex.quantum's RHF side by side with PySCF, in one process.

Three parts, float64 throughout, RHF with ``conv_tol = 1e-9`` Eh for both codes (PySCF's
default orbital-gradient tolerance ``sqrt(conv_tol)`` is ours too):

* **Timings** — H2O/6-31G and CH4/6-31G at their reference geometries: the wall time of one
  converged SCF and of one force evaluation (energy and nuclear gradient). opifex runs
  ``jax.jit`` compiled functions of the coordinates (``run_scf``; ``jax.value_and_grad`` of
  ``scf_energy``, implicit differentiation through the converged SCF), timed after the first
  call with ``block_until_ready``; the compile time is stated separately (first call minus
  the median steady-state call). PySCF runs ``scf.RHF(mol).run()`` and
  ``mf.nuc_grad_method().kernel()`` on a prebuilt ``gto.Mole``, integrals included.
* **Batch** — 256 randomly displaced H2O/6-31G geometries (fixed seed, Gaussian displacements
  of 0.05 Bohr per coordinate): one ``jax.jit(jax.vmap(run_scf))`` call against a PySCF loop
  (``mol.set_geom_`` + ``scf.RHF(mol).run()`` per geometry); geometries per second, and the
  largest energy difference between the two.
* **Iterations** — SCF cycles to convergence, ours (default DIIS, MINAO guess, and for
  comparison the SAD guess) against PySCF's defaults (DIIS, MINAO guess) for H2, HeH+, H2O, NH3,
  CH4 and N2 in STO-3G and 6-31G, H2O in 6-31G* and LiH in 6-31G; iterations and energy
  difference per molecule.

Target 2 of the quantum issue is evaluated: on every row our iteration count is at most
PySCF's, at the same energy (``same_energy_atol``). The speed ratios (PySCF time / opifex time)
are recorded, with no pass/fail threshold.

Run ``python benchmarks/quantum/bench_scf.py [--quick]``; ``opifex bench quantum`` calls
``main(argv, progress)``. Output: tables on stdout, ``benchmarks/results/quantum_scf.json`` and
``benchmarks/results/quantum_scf.png``. A code that fails to import or crashes is recorded as
``"unavailable"`` / ``"error"`` with its message, never dropped.
"""

# No ``from __future__ import annotations``: the CLI loads this file with
# ``importlib.util.spec_from_file_location`` without registering it in ``sys.modules``, and
# dataclasses with string annotations need that registration.
import argparse
import dataclasses
import datetime
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Both codes diagonalise tiny matrices through OpenBLAS (numpy, and jaxlib's CPU LAPACK);
# spinning BLAS threads only slow that down. Effective only when numpy is not imported yet
# (running this file as a script); recorded in the JSON either way.
_BLAS_ENV_BEFORE_NUMPY = "numpy" not in sys.modules
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the BLAS thread setting)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared modules
from bench_common import (  # noqa: E402
    cpu_model,
    print_progress,
    print_tables,
    timed_calls,
    versions,
    write_outputs,
)

LOG = logging.getLogger("opifex.benchmarks.quantum")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
NAME = "quantum_scf"
OURS, PYSCF = "opifex", "pyscf"
OURS_SAD = "opifex_sad"  # iterations only: opifex from the SAD guess, for comparison
OURS_LOOP = "opifex_loop"  # batch only: a Python loop of one jitted single-geometry SCF
SCF, FORCE = "scf", "energy+gradient"

Progress = Callable[[int, int, str], None]
DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "numpy",
    "pyscf",
    "opifex-quantum",
    "opifex-core",
)  # versions in the JSON

TIMED_SYSTEMS = (("H2O", "6-31g"), ("CH4", "6-31g"))
ITERATION_SYSTEMS = (
    *((m, b) for b in ("sto-3g", "6-31g") for m in ("H2", "HeH+", "H2O", "NH3", "CH4", "N2")),
    ("H2O", "6-31g*"),
    ("LiH", "6-31g"),  # a case where the SAD guess needs one cycle fewer than MINAO
)

# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything that decides what is run (recorded in the JSON)."""

    quick: bool = False
    repeats: int = 7
    budget_s: float = 10.0  # a timing stops repeating once its runs took this long
    conv_tol: float = 1e-9
    # orbital-gradient tolerance of both codes' SCF in the energy+gradient task (a gradient's
    # error is first order in it); the SCF task uses each code's default, sqrt(conv_tol)
    force_conv_tol_grad: float = 1e-6
    guess: str = "minao"
    batch_molecule: str = "H2O"
    batch_basis: str = "6-31g"
    batch_size: int = 256
    displacement_bohr: float = 0.05
    seed: int = 0
    batch_repeats: int = 3
    batch_budget_s: float = 60.0
    iteration_systems: tuple[tuple[str, str], ...] = ITERATION_SYSTEMS
    # "same energy" for the iteration target: both runs reached the same SCF solution
    same_energy_atol: float = 1e-6
    # PySCF's OpenMP threads; 0 leaves PySCF's default (all cores)
    pyscf_threads: int = 1


def quick_config() -> BenchConfig:
    """``--quick``: 16 geometries, fewer repeats, four iteration rows."""
    return BenchConfig(
        quick=True,
        repeats=3,
        budget_s=3.0,
        batch_size=16,
        batch_repeats=1,
        batch_budget_s=10.0,
        iteration_systems=(("H2", "sto-3g"), ("H2O", "sto-3g"), *TIMED_SYSTEMS),
    )


# ----------------------------------------------------------------------------- records


@dataclasses.dataclass
class Run:
    """One code's measurement (a cell group of the tables and of the JSON)."""

    status: str = "ok"  # "ok" | "error" | "unavailable" | "not run"
    error: str | None = None
    time_s: float | None = None  # median over the timed repeats
    times_s: list[float] | None = None
    first_call_s: float | None = None  # the untimed warm-up (opifex: compiles)
    compile_s: float | None = None  # first_call_s - time_s
    energy: float | None = None
    iterations: int | None = None  # batch: the largest over the geometries
    converged: bool | None = None  # batch: all geometries converged
    num_converged: int | None = None  # batch only
    geometries_per_s: float | None = None  # batch only


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]  # without notes (JAX adds one on tracebacks)


def _attempt(run: Run, label: str, measure: Callable[[Run], Any]) -> Any:
    """``measure(run)`` unless the code is unavailable; a crash is recorded in ``run``."""
    if run.status != "ok":
        return None
    try:
        return measure(run)
    except Exception as exc:  # a crashing code is a result, not a benchmark failure
        run.status, run.error = "error", _error_text(exc)
        LOG.warning("%s failed: %s", label, run.error)
        return None


def _time_into(
    run: Run,
    call: Callable[[], Any],
    cfg: BenchConfig,
    *,
    jitted: bool,
    warm_up: bool = True,
    batch: bool = False,
) -> Any:
    """Time ``call`` into ``run`` after one untimed warm-up call (a jitted call compiles in it).

    Both codes get the warm-up (PySCF loads its libraries lazily on first use); for a jitted
    call, ``compile_s`` is the warm-up minus the median timed call. ``batch``: the batch's
    repeats and time budget.
    """
    import jax

    if warm_up:
        start = time.perf_counter()
        jax.block_until_ready(call())
        run.first_call_s = time.perf_counter() - start
    repeats, budget_s = (
        (cfg.batch_repeats, cfg.batch_budget_s) if batch else (cfg.repeats, cfg.budget_s)
    )
    run.times_s, out = timed_calls(call, repeats, budget_s)
    run.time_s = statistics.median(run.times_s)
    if jitted:
        run.compile_s = max(run.first_call_s - run.time_s, 0.0)
    return out


# ----------------------------------------------------------------------------- the two codes


def _ours_scf(molecule: Any, basis: str, cfg: BenchConfig) -> Callable:
    """``coordinates -> SolveResult`` (unjitted) for ``molecule`` and ``basis``."""
    from opifex.quantum import SCFConfig, run_scf

    config = SCFConfig(conv_tol=cfg.conv_tol)

    def scf(coordinates):
        mol = dataclasses.replace(molecule, coordinates=coordinates)
        return run_scf(mol, basis, method="rhf", config=config, guess=cfg.guess)

    return scf


def _ours_force(molecule: Any, basis: str, cfg: BenchConfig) -> Callable:
    """``coordinates -> (energy, dE/dR)``, jitted (implicit differentiation of the SCF)."""
    import jax

    from opifex.quantum import SCFConfig, scf_energy

    config = SCFConfig(conv_tol=cfg.conv_tol, conv_tol_grad=cfg.force_conv_tol_grad)

    def energy(coordinates):
        mol = dataclasses.replace(molecule, coordinates=coordinates)
        return scf_energy(mol, basis, method="rhf", config=config, guess=cfg.guess)

    return jax.jit(jax.value_and_grad(energy))


def _pyscf_mol(molecule: Any, basis: str) -> Any:
    """PySCF's molecule with opifex's basis data (PySCF's own files round them to ~8 digits)."""
    from opifex.quantum import to_pyscf

    return to_pyscf(molecule, basis)


def _pyscf_rhf(mol: Any, cfg: BenchConfig, conv_tol_grad: float | None = None) -> Any:
    """A converged ``scf.RHF`` from PySCF's default guess (a fresh object every call)."""
    from pyscf import scf

    mf = scf.RHF(mol)
    mf.conv_tol = cfg.conv_tol
    mf.conv_tol_grad = conv_tol_grad  # None: PySCF's sqrt(conv_tol)
    mf.verbose = 0
    mf.kernel()
    return mf


def _pyscf_force(mol: Any, cfg: BenchConfig) -> tuple[float, np.ndarray]:
    mf = _pyscf_rhf(mol, cfg, cfg.force_conv_tol_grad)
    gradient = mf.nuc_grad_method()
    gradient.verbose = 0
    return mf.e_tot, gradient.kernel()


def _fill_scf(run: Run, result: Any) -> None:
    run.energy = float(result.value)
    run.iterations = int(result.num_steps)
    run.converged = bool(result.converged)


def _fill_pyscf(run: Run, mf: Any) -> None:
    run.energy = float(mf.e_tot)
    run.iterations = int(mf.cycles)
    run.converged = bool(mf.converged)


# ----------------------------------------------------------------------------- driver


def _try_import(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:  # any import failure is recorded, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def _availability() -> dict[str, str | None]:
    ours = _try_import("opifex.quantum")
    if ours is None:
        import opifex.quantum as quantum

        missing = [
            name
            for name in ("molecule_from_name", "run_scf", "scf_energy", "SCFConfig")
            if not hasattr(quantum, name)
        ]
        if missing:
            ours = f"opifex.quantum does not export {', '.join(missing)}"
    return {OURS: ours, PYSCF: _try_import("pyscf")}


def _fresh(available: dict[str, str | None]) -> dict[str, Run]:
    return {
        code: Run() if error is None else Run(status="unavailable", error=error)
        for code, error in available.items()
    }


def _max_abs(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b))))


class _Bench:
    """The measurements of one run; compiled functions and results are reused across parts."""

    def __init__(self, cfg: BenchConfig, available: dict[str, str | None]) -> None:
        self.cfg, self.available = cfg, available
        self.molecules: dict[str, Any] = {}
        self.scf_out: dict[tuple[str, str], dict[str, Any]] = {}  # results, for iterations

    def molecule(self, name: str) -> Any:
        if name not in self.molecules:
            from opifex.quantum import molecule_from_name

            self.molecules[name] = molecule_from_name(name)
        return self.molecules[name]

    def timing(self, name: str, basis: str, task: str) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        cfg, runs = self.cfg, _fresh(self.available)
        label = f"{name}/{basis} {task}"
        outputs: dict[str, Any] = {}

        def ours(run: Run) -> Any:
            mol = self.molecule(name)
            coordinates = jnp.asarray(mol.coordinates)
            if task == SCF:
                fn = jax.jit(_ours_scf(mol, basis, cfg))
                result = _time_into(run, lambda: fn(coordinates), cfg, jitted=True)
                _fill_scf(run, result)
                return result
            fn = _ours_force(mol, basis, cfg)
            energy, gradient = _time_into(run, lambda: fn(coordinates), cfg, jitted=True)
            run.energy = float(energy)
            return np.asarray(gradient)

        def pyscf(run: Run) -> Any:
            mol = _pyscf_mol(self.molecule(name), basis)
            if task == SCF:
                mf = _time_into(run, lambda: _pyscf_rhf(mol, cfg), cfg, jitted=False)
                _fill_pyscf(run, mf)
                return mf
            energy, gradient = _time_into(run, lambda: _pyscf_force(mol, cfg), cfg, jitted=False)
            run.energy = float(energy)
            return gradient

        for code, measure in ((PYSCF, pyscf), (OURS, ours)):
            outputs[code] = _attempt(runs[code], f"{code} {label}", measure)
        if task == SCF:
            self.scf_out[(name, basis)] = outputs
        row: dict[str, Any] = {"molecule": name, "basis": basis, "task": task}
        row |= {code: dataclasses.asdict(run) for code, run in runs.items()}
        row["energy_diff"] = _diff(runs[OURS].energy, runs[PYSCF].energy)
        row["max_abs_gradient_diff"] = (
            _max_abs(outputs[OURS], outputs[PYSCF]) if task == FORCE else None
        )
        return row

    def batch(self, progress: Callable[[str], None]) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        cfg, runs = self.cfg, _fresh(self.available)
        name, basis = cfg.batch_molecule, cfg.batch_basis
        geometries: np.ndarray | None = None
        energies: dict[str, np.ndarray | None] = {OURS: None, PYSCF: None}

        def displaced() -> np.ndarray:
            base = np.asarray(self.molecule(name).coordinates, dtype=np.float64)
            rng = np.random.default_rng(cfg.seed)
            shape = (cfg.batch_size, *base.shape)
            return base + cfg.displacement_bohr * rng.standard_normal(shape)

        def ours(run: Run) -> None:
            fn = jax.jit(jax.vmap(_ours_scf(self.molecule(name), basis, cfg)))
            coordinates = jnp.asarray(geometries)
            result = _time_into(run, lambda: fn(coordinates), cfg, jitted=True, batch=True)
            energies[OURS] = np.asarray(result.value)
            run.iterations = int(np.max(result.num_steps))
            run.num_converged = int(np.sum(result.converged))

        def ours_loop(run: Run) -> None:
            fn = jax.jit(_ours_scf(self.molecule(name), basis, cfg))
            coordinates = jnp.asarray(geometries)

            def loop() -> list[Any]:
                return [fn(x) for x in coordinates]

            results = _time_into(run, loop, cfg, jitted=True, batch=True)
            run.iterations = max(int(r.num_steps) for r in results)
            run.num_converged = sum(bool(r.converged) for r in results)

        def pyscf(run: Run) -> None:
            mol = _pyscf_mol(self.molecule(name), basis)

            def loop() -> list[Any]:
                out = []
                for coordinates in geometries:
                    mol.set_geom_(coordinates, unit="Bohr")
                    out.append(_pyscf_rhf(mol, cfg))
                return out

            # PySCF is warm from the timings: no extra pass over the whole batch
            mfs = _time_into(run, loop, cfg, jitted=False, warm_up=False, batch=True)
            energies[PYSCF] = np.array([mf.e_tot for mf in mfs])
            run.iterations = max(int(mf.cycles) for mf in mfs)
            run.num_converged = sum(bool(mf.converged) for mf in mfs)

        try:
            geometries = displaced()
        except Exception as exc:  # no molecule: nothing to run for either code
            for run in runs.values():
                if run.status == "ok":
                    run.status, run.error = "error", f"no geometries: {_error_text(exc)}"
        runs[OURS_LOOP] = dataclasses.replace(runs[OURS])
        for code, measure in ((OURS, ours), (OURS_LOOP, ours_loop), (PYSCF, pyscf)):
            _attempt(runs[code], f"{code} batch", measure)
            run = runs[code]
            if run.status == "ok":
                run.geometries_per_s = cfg.batch_size / run.time_s
                run.converged = run.num_converged == cfg.batch_size
            progress(f"{code} batch of {cfg.batch_size} {name}/{basis}")
        return {
            "molecule": name,
            "basis": basis,
            "size": cfg.batch_size,
            "displacement_bohr": cfg.displacement_bohr,
            "seed": cfg.seed,
            **{code: dataclasses.asdict(run) for code, run in runs.items()},
            "max_abs_energy_diff": _max_abs(energies[OURS], energies[PYSCF]),
        }

    def iterations(self, name: str, basis: str) -> dict[str, Any]:
        import jax
        import jax.numpy as jnp

        cfg, runs = self.cfg, _fresh(self.available)
        runs[OURS_SAD] = dataclasses.replace(runs[OURS])
        done = self.scf_out.get((name, basis), {})

        def from_guess(guess: str) -> Any:
            mol = self.molecule(name)
            scf = _ours_scf(mol, basis, dataclasses.replace(cfg, guess=guess))
            return jax.jit(scf)(jnp.asarray(mol.coordinates))

        def ours(run: Run) -> None:
            result = done.get(OURS)
            _fill_scf(run, from_guess(cfg.guess) if result is None else result)

        def ours_sad(run: Run) -> None:
            _fill_scf(run, from_guess("sad"))

        def pyscf(run: Run) -> None:
            mf = done.get(PYSCF)
            if mf is None:
                mf = _pyscf_rhf(_pyscf_mol(self.molecule(name), basis), cfg)
            _fill_pyscf(run, mf)

        for code, measure in ((OURS, ours), (OURS_SAD, ours_sad), (PYSCF, pyscf)):
            _attempt(runs[code], f"{code} iterations {name}/{basis}", measure)
        row: dict[str, Any] = {"molecule": name, "basis": basis}
        row |= {code: dataclasses.asdict(run) for code, run in runs.items()}
        row["energy_diff"] = _diff(runs[OURS].energy, runs[PYSCF].energy)
        return row


def _diff(ours: float | None, reference: float | None) -> float | None:
    return None if ours is None or reference is None else ours - reference


def _threads(cfg: BenchConfig) -> dict[str, Any]:
    """Set PySCF's OpenMP threads (``pyscf_threads`` > 0) and record every thread setting."""
    out: dict[str, Any] = {
        var: os.environ.get(var)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
    }
    out["blas_env_set_before_numpy_import"] = _BLAS_ENV_BEFORE_NUMPY
    try:
        from pyscf import lib

        if cfg.pyscf_threads > 0:
            lib.num_threads(cfg.pyscf_threads)
        out["pyscf_num_threads"] = lib.num_threads()
    except ImportError:
        out["pyscf_num_threads"] = None
    return out


def run_benchmark(cfg: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the three parts and return the JSON-ready results (targets included)."""
    import jax

    available = _availability()
    threads = _threads(cfg)
    bench = _Bench(cfg, available)
    total = 4 * len(TIMED_SYSTEMS) + 2 + len(cfg.iteration_systems)
    done, interrupted = 0, False
    started = time.perf_counter()

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    timings, batch, iterations = [], None, []
    try:
        for name, basis in TIMED_SYSTEMS:
            for task in (SCF, FORCE):
                timings.append(bench.timing(name, basis, task))
                tick(f"{name}/{basis} {task} (pyscf)")
                tick(f"{name}/{basis} {task} (opifex)")
        batch = bench.batch(tick)
        for name, basis in cfg.iteration_systems:
            iterations.append(bench.iterations(name, basis))
            tick(f"iterations {name}/{basis}")
    except KeyboardInterrupt:  # keep what was measured; the JSON says it is partial
        interrupted = True
        LOG.warning("interrupted: writing the partial results")

    device = jax.devices()[0]
    return {
        "benchmark": NAME,
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "versions": versions(DISTRIBUTIONS),
            "jax_version": jax.__version__,
            "python_version": platform.python_version(),
            "device": f"{device.platform} ({device.device_kind}), {cpu_model()}",
            "jax_backend": jax.default_backend(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "x64": bool(jax.config.jax_enable_x64),
            "threads": threads,
            "elapsed_s": round(time.perf_counter() - started, 2),
            "interrupted": interrupted,
            "config": dataclasses.asdict(cfg),
            "notes": [
                "RHF, spherical basis functions, conv_tol for both codes; opifex: MINAO guess,"
                " default CDIIS; PySCF: its defaults (MINAO guess, DIIS)",
                "time_s: median wall time of the timed repeats after one untimed warm-up"
                " call (first_call_s; opifex compiles in it: compile_s = first call -"
                " median), block_until_ready",
                "pyscf scf: scf.RHF(mol).run() on a prebuilt Mole (integrals included);"
                " energy+gradient adds mf.nuc_grad_method().kernel()",
                "batch: opifex one jit(vmap(run_scf)) call over all geometries; opifex_loop"
                " a Python loop of one jit(run_scf) per geometry; pyscf a loop of"
                " mol.set_geom_ + scf.RHF(mol).run(); iterations = the largest",
                "ratio = pyscf time / opifex time (> 1: opifex faster); no threshold",
            ],
        },
        "availability": available,
        "timings": timings,
        "batch": batch,
        "iterations": iterations,
        "targets": evaluate_targets(timings, batch, iterations, cfg),
    }


# ----------------------------------------------------------------------------- targets


def _ok(row: dict[str, Any]) -> bool:
    return row[OURS]["status"] == row[PYSCF]["status"] == "ok"


def _ratio(row: dict[str, Any], key: str = "time_s") -> float | None:
    ours, ref = row[OURS].get(key), row[PYSCF].get(key)
    if not _ok(row) or not ours or not ref:
        return None
    return ref / ours if key == "time_s" else ours / ref


def evaluate_targets(
    timings: Sequence[dict[str, Any]],
    batch: dict[str, Any] | None,
    iterations: Sequence[dict[str, Any]],
    cfg: BenchConfig,
) -> dict[str, Any]:
    """Target 2 (iterations <= PySCF on every row, same energy) and the recorded speed ratios."""
    wins, losses, not_compared = [], [], []
    for row in iterations:
        label = f"{row['molecule']}/{row['basis']}"
        if not _ok(row):
            not_compared.append(label)
            continue
        ours, ref = row[OURS], row[PYSCF]
        entry = {
            "system": label,
            "ours_iterations": ours["iterations"],
            "pyscf_iterations": ref["iterations"],
            "energy_diff": row["energy_diff"],
            "ours_converged": ours["converged"],
        }
        same = abs(row["energy_diff"]) <= cfg.same_energy_atol
        met = ours["converged"] and same and ours["iterations"] <= ref["iterations"]
        (wins if met else losses).append(entry)
    met_all = False if losses else (None if not_compared or not wins else True)
    speed = [
        {
            "system": f"{r['molecule']}/{r['basis']}",
            "task": r["task"],
            "opifex_s": r[OURS]["time_s"],
            "opifex_compile_s": r[OURS]["compile_s"],
            "pyscf_s": r[PYSCF]["time_s"],
            "ratio": _ratio(r),
        }
        for r in timings
    ]
    throughput = None
    if batch is not None:
        throughput = {
            "size": batch["size"],
            "opifex_geometries_per_s": batch[OURS]["geometries_per_s"],
            "pyscf_geometries_per_s": batch[PYSCF]["geometries_per_s"],
            "ratio": _ratio(batch, "geometries_per_s"),
            "opifex_compile_s": batch[OURS]["compile_s"],
        }
    return {
        "iterations_le_pyscf": {
            "met": met_all,
            "same_energy_atol": cfg.same_energy_atol,
            "wins": wins,
            "losses": losses,
            "not_compared": not_compared,
        },
        "speed_vs_pyscf": {
            "note": "recorded, no threshold: ratio = pyscf time / opifex time (> 1: opifex"
            " faster); batch: opifex geometries/s / pyscf geometries/s",
            "per_system": speed,
            "batch_throughput": throughput,
        },
    }


# ----------------------------------------------------------------------------- output


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "ms":
        return f"{1e3 * value:.3g}"
    if kind == "s":
        return f"{value:.3g}"
    if kind == "e":
        return f"{value:.2e}"
    if kind == "E":
        return f"{value:.10f}"
    return str(value)


def _cell(run: dict[str, Any], key: str, kind: str = "") -> str:
    return _fmt(run[key], kind) if run["status"] == "ok" else run["status"]


def table_sections(results: dict[str, Any]) -> list[tuple[str, tuple[str, ...], list]]:
    """(title, columns, rows) of the three tables."""
    timings = [
        (
            f"{r['molecule']}/{r['basis']}",
            r["task"],
            _cell(r[OURS], "time_s", "ms"),
            _cell(r[OURS], "compile_s", "s"),
            _cell(r[PYSCF], "time_s", "ms"),
            _fmt(_ratio(r), "s"),
            _fmt(r["energy_diff"], "e"),
            _fmt(r["max_abs_gradient_diff"], "e"),
        )
        for r in results["timings"]
    ]
    b = results["batch"]
    batch = []
    if b is not None:
        batch = [
            (
                f"{b['size']} x {b['molecule']}/{b['basis']}",
                code,
                _cell(b[code], "geometries_per_s", "s"),
                _cell(b[code], "time_s", "s"),
                _cell(b[code], "compile_s", "s"),
                _cell(b[code], "num_converged"),
                _cell(b[code], "iterations"),
                _fmt(b["max_abs_energy_diff"], "e"),
            )
            for code in (OURS, OURS_LOOP, PYSCF)
            if code in b
        ]
    iterations = [
        (
            f"{r['molecule']}/{r['basis']}",
            _cell(r[OURS], "iterations"),
            _cell(r[OURS_SAD], "iterations"),
            _cell(r[PYSCF], "iterations"),
            _cell(r[OURS], "energy", "E"),
            _fmt(r["energy_diff"], "e"),
            _cell(r[OURS], "converged"),
            _cell(r[PYSCF], "converged"),
        )
        for r in results["iterations"]
    ]
    return [
        (
            "Time per call (after compilation)",
            ("system", "task", "opifex ms", "compile s", "pyscf ms", "ratio", "dE", "max |dG|"),
            timings,
        ),
        (
            "Batch of displaced geometries",
            ("batch", "code", "geom/s", "wall s", "compile s", "converged", "max iter", "max |dE|"),
            batch,
        ),
        (
            "SCF iterations to conv_tol",
            (
                "system",
                f"opifex ({results['meta']['config']['guess']})",
                "opifex (sad)",
                "pyscf",
                "opifex E [Eh]",
                "dE",
                "opifex conv",
                "pyscf conv",
            ),
            iterations,
        ),
    ]


def render_tables(results: dict[str, Any], stream: Any = None) -> None:
    """Print the three tables (rich if available, else plain text) and the targets."""
    stream = stream if stream is not None else sys.stdout
    print_tables(table_sections(results), target_lines(results), stream)


def target_lines(results: dict[str, Any]) -> list[str]:
    target = results["targets"]["iterations_le_pyscf"]
    lines = [f"Target 2 (iterations <= PySCF on every row, same energy): met={target['met']}"]
    for loss in target["losses"]:
        lines.append(
            f"  {loss['system']}: {loss['ours_iterations']} vs {loss['pyscf_iterations']}"
            f" iterations, dE {_fmt(loss['energy_diff'], 'e')},"
            f" converged {loss['ours_converged']}"
        )
    if target["not_compared"]:
        lines.append(f"  not compared (a code did not run): {', '.join(target['not_compared'])}")
    speed = results["targets"]["speed_vs_pyscf"]
    for entry in speed["per_system"]:
        lines.append(
            f"Speed {entry['system']} {entry['task']}: pyscf / opifex time ="
            f" {_fmt(entry['ratio'], 's')}"
        )
    if speed["batch_throughput"] is not None:
        lines.append(
            f"Batch throughput opifex / pyscf = {_fmt(speed['batch_throughput']['ratio'], 's')}"
        )
    return lines


def write_plot(results: dict[str, Any], path: Path) -> None:
    """Three panels: time per call, batch throughput, SCF iterations; opifex next to PySCF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [3, 1, 4]})

    def value(run: dict[str, Any], key: str) -> float:
        return run[key] if run["status"] == "ok" and run[key] is not None else np.nan

    colors = {"opifex": "C0", "opifex compile": "C1", "PySCF": "C2", "opifex, SAD guess": "C3"}

    def bars(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            xs = np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width
            ax.bar(xs, values, width, label=name, color=colors[name])
        ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)

    timings = results["timings"]
    bars(
        axes[0],
        [f"{r['molecule']}/{r['basis']}\n{r['task']}" for r in timings],
        {
            "opifex": [value(r[OURS], "time_s") for r in timings],
            "opifex compile": [value(r[OURS], "compile_s") for r in timings],
            "PySCF": [value(r[PYSCF], "time_s") for r in timings],
        },
    )
    axes[0].set_yscale("log")
    axes[0].set_ylim(top=10 * axes[0].get_ylim()[1])  # room for the legend
    axes[0].set_ylabel("wall time [s]")
    axes[0].set_title("Time per call (median, after compilation)")
    axes[0].legend(fontsize=8, loc="upper left", ncols=3)

    b = results["batch"]
    if b is not None:
        axes[1].bar(
            ["opifex\njit(vmap)", "PySCF\nloop"],
            [value(b[OURS], "geometries_per_s"), value(b[PYSCF], "geometries_per_s")],
            color=[colors["opifex"], colors["PySCF"]],
        )
        axes[1].set_title(f"{b['size']} x {b['molecule']}/{b['basis']}")
    axes[1].set_ylabel("geometries / s")

    rows = results["iterations"]
    bars(
        axes[2],
        [f"{r['molecule']}\n{r['basis']}" for r in rows],
        {
            "opifex": [value(r[OURS], "iterations") for r in rows],
            "opifex, SAD guess": [value(r[OURS_SAD], "iterations") for r in rows],
            "PySCF": [value(r[PYSCF], "iterations") for r in rows],
        },
    )
    axes[2].set_ylabel("SCF iterations")
    axes[2].set_title(f"Iterations to conv_tol {results['meta']['config']['conv_tol']:g}")
    axes[2].legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(
        f"opifex.quantum vs PySCF — jax {meta['jax_version']}, {meta['device']},"
        f" PySCF threads {meta['threads']['pyscf_num_threads']}, {meta['date']}"
        + (" (quick)" if meta["config"]["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- entry points


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_scf",
        description="opifex.quantum RHF against PySCF: time per SCF and per force evaluation,"
        " vmapped batch throughput, SCF iteration counts.",
    )
    parser.add_argument("--quick", action="store_true", help="16 geometries, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="displaced geometries")
    parser.add_argument(
        "--guess",
        choices=("minao", "sad", "core"),
        default=None,
        help="opifex's initial guess (minao)",
    )
    parser.add_argument(
        "--pyscf-threads",
        type=int,
        default=None,
        help="PySCF OpenMP threads (default 1; 0 keeps PySCF's own default)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="where the JSON and PNG go"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Run the benchmark, print the tables, write JSON + PNG; returns an exit code (0).

    Args:
        argv: command-line options (``["--quick"]`` ...); ``None`` means no options (the
            defaults), never ``sys.argv``, so that a caller such as the CLI can pass its own.
        progress: optional ``callback(done, total, label)`` called after every measurement.
    """
    args = parse_args([] if argv is None else list(argv))
    cfg = quick_config() if args.quick else BenchConfig()
    overrides = {
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "guess": args.guess,
        "pyscf_threads": args.pyscf_threads,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})

    import jax

    with jax.enable_x64(True):
        results = run_benchmark(cfg, progress)
    plot = None if args.no_plot else write_plot
    write_outputs(results, args.output_dir, NAME, render=render_tables, plot=plot)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:], progress=print_progress))
