"""``opifex``: ``demo``, ``scf``, ``mpc``, ``bench``, ``train``, ``deploy``, ``serve``."""

import os

# Tiny BLAS calls (scipy's L-BFGS-B, MINPACK) slow down ~30x when OpenBLAS threads spin on a
# busy 2-core machine. Effective only before numpy is first imported, hence before any import
# that may pull it in; a value the user set wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses  # noqa: E402
import importlib.metadata  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from opifex.cli._bench import bench_app  # noqa: E402
from opifex.cli._console import fail, progress_bar, stdout_console, warn  # noqa: E402
from opifex.cli._deploy import deploy_app  # noqa: E402
from opifex.cli._serve import serve  # noqa: E402
from opifex.cli._train import train_app  # noqa: E402
from opifex.cli._train_meta import meta as _train_meta  # noqa: E402, F401  (train meta)

app = typer.Typer(name="opifex", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")
app.add_typer(deploy_app, name="deploy")
app.command()(serve)


def installed_versions() -> dict[str, str]:
    """The installed opifex distributions and their versions, sorted by name.

    Example:
        >>> "opifex-cli" in installed_versions()
        True
    """
    found = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name == "opifex" or name.startswith("opifex-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def _print_versions(value: bool) -> None:
    if value:
        for name, version in installed_versions().items():
            typer.echo(f"{name} {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_versions,
            help="Print the versions of the installed opifex packages and exit.",
        ),
    ] = False,
) -> None:
    """Differentiable optimisation in JAX: demos, benchmarks, learned-optimiser training.

    Compiled programs are kept in JAX's persistent compilation cache (~/.cache/opifex/jax), so
    a second run skips most compilation; OPIFEX_JAX_CACHE=0 turns it off, another value is the
    directory to use.
    """
    from opifex.core import enable_compilation_cache

    enable_compilation_cache()


@app.command()
def demo() -> None:
    """L-BFGS and Levenberg-Marquardt beside scipy, a learned optimiser beside tuned Adam.

    Rosenbrock (2-D, 100-D) with L-BFGS beside scipy's L-BFGS-B, three Moré-Garbow-Hillstrom
    least-squares problems with Levenberg-Marquardt beside scipy's MINPACK lm (float64), and
    the pretrained quadratic10_mlp optimiser beside Adam at its tuned learning rate on fresh
    10-D quadratics (float32). Exits non-zero if one of our solvers does not converge.
    """
    start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    from opifex.cli import _demo

    console = stdout_console()
    with progress_bar("compiling and solving", console) as progress:
        report = _demo.run_demo(progress=progress)
    _demo.render(report, console)
    console.print(f"Demo took {time.perf_counter() - start:.1f} s, jit compilation included.")
    if failures := report.failures():
        fail("an opifex solver did not converge:\n  " + "\n  ".join(failures))


@app.command()
def mpc(
    system: Annotated[str, typer.Argument(help="pendulum or cartpole.")] = "pendulum",
    seconds: Annotated[float, typer.Option(help="Length of the episode (s).")] = 12.0,
    budget: Annotated[int, typer.Option(help="iLQR iterations per control period.")] = 10,
    identify: Annotated[
        bool, typer.Option(help="First fit the model to noisy data; control with the fit.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the identification's data and guess.")] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="Where to write the plot (default: mpc_SYSTEM.png).")
    ] = None,
) -> None:
    """Swing a pendulum or cart-pole up from hanging with MPC (bounded iLQR) in closed loop.

    Prints whether and from when the pole stays upright (|angle| < 0.05 rad), the controller's
    compile time and time per step, and writes a plot of the trajectory. Exits non-zero if
    the pole is not held upright at the end.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    from opifex.cli import _mpc
    from opifex.control import SWING_UPS

    if system not in SWING_UPS:
        fail(f"unknown system {system!r}; choose {' or '.join(SWING_UPS)}")
    if seconds <= 0 or budget < 1:
        fail("--seconds must be positive and --budget at least 1")
    console = stdout_console()
    with progress_bar("compiling and solving", console) as progress:
        report = _mpc.run_swing_up(
            system,
            seconds=seconds,
            budget=budget,
            identified=identify,
            seed=seed,
            progress=progress,
        )
    _mpc.render(report, console)
    path = plot or Path(f"mpc_{system}.png")
    _mpc.plot(report, path)
    console.print(f"plot: {path}")
    if report.held_from is None:
        fail(f"the {system} was not held upright")


@app.command()
def scf(
    molecule: Annotated[
        str, typer.Argument(help="A known molecule (H2O, CH4, O2, ...) or an XYZ file.")
    ],
    basis: Annotated[
        str, typer.Option(help="sto-3g, 6-31g, 6-31g*, cc-pvdz, ... (known_basis_sets()).")
    ] = "sto-3g",
    method: Annotated[str | None, typer.Option(help="rhf or uhf (default: from spin).")] = None,
    charge: Annotated[int | None, typer.Option(help="Total charge (XYZ input).")] = None,
    multiplicity: Annotated[int | None, typer.Option(help="Spin multiplicity 2S+1.")] = None,
    cartesian: Annotated[bool, typer.Option(help="Cartesian (6) d functions.")] = False,
    guess: Annotated[str, typer.Option(help="minao, sad or core.")] = "minao",
    conv_tol: Annotated[float, typer.Option(help="Energy-change tolerance (Eh).")] = 1e-9,
    max_steps: Annotated[
        int, typer.Option(help="SCF cycle budget (no retry: a run that uses it up fails).")
    ] = 50,
    max_iterations: Annotated[
        int | None, typer.Option(hidden=True, help="Deprecated spelling of --max-steps.")
    ] = None,
    forces: Annotated[bool, typer.Option(help="Also print the nuclear gradient.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write the convergence plot (PNG).")] = None,
    auxbasis: Annotated[
        str | None,
        typer.Option(
            help="Density fitting (RI-JK) with this auxiliary basis (def2-universal-jkfit)."
        ),
    ] = None,
    max_memory: Annotated[
        float,
        typer.Option(
            help="Budget (MB) for the two-electron integrals in memory; beyond it they are "
            "recomputed every cycle (direct SCF)."
        ),
    ] = 4000.0,
) -> None:
    """Hartree-Fock SCF of a molecule: energy, cycles, a convergence plot and the timings.

    The first run of a molecule's composition, basis set and options compiles the SCF (and,
    with --forces, the gradient) with JAX; a status line on stderr says so while it runs, and
    the output ends with the compile / solve split. Compiled programs go to the persistent
    compilation cache (see `opifex --help`), so the next run reads them back. An SCF that
    does not converge within --max-steps cycles is reported as such (exit status 1); it is
    not retried.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    from rich.console import Console

    from opifex.cli import _scf
    from opifex.quantum import FORCE_CONV_TOL_GRAD, SCFConfig, nuclear_gradient, run_scf

    console = stdout_console()
    if max_iterations is not None:
        warn("--max-iterations is deprecated (removed in the next release); use --max-steps")
        max_steps = max_iterations
    timings = []
    try:
        mol = _scf.load_molecule(molecule, charge, multiplicity)
        config = SCFConfig(conv_tol=conv_tol, max_steps=max_steps)
        options = {
            "method": method,
            "config": config,
            "guess": guess,
            "cartesian": cartesian,
            "auxbasis": auxbasis,
            "max_memory": max_memory,
        }
        what = f"{' '.join(mol.symbols)} / {basis}"
        with _scf.StatusLine(Console(stderr=True)) as status:

            def say(task: str):
                return lambda phase: status.update(
                    f"compiling the {task} of {what} with XLA (or reading it back from the "
                    "persistent compilation cache)"
                    if phase == "compiling"
                    else f"solving the {task}"
                )

            status.update(f"tracing the SCF of {what}")
            with _scf.watch_compilation(say("SCF")) as timing:
                result = jax.block_until_ready(run_scf(mol, basis, **options))
            timings.append(("SCF", timing))
            gradient = None
            if forces and bool(result.converged):
                tight = min(config.gradient_tolerance, FORCE_CONV_TOL_GRAD)
                options["config"] = dataclasses.replace(config, conv_tol_grad=tight)
                status.update(f"tracing the nuclear gradient of {what}")
                with _scf.watch_compilation(say("nuclear gradient")) as timing:
                    gradient = jax.block_until_ready(nuclear_gradient(mol, basis, **options))
                timings.append(("nuclear gradient", timing))
    except (ValueError, TypeError, FileNotFoundError, MemoryError) as error:
        fail(str(error), code=2)
    _scf.render(mol, basis, result, gradient, console)
    for label, timing in timings:
        console.print(_scf.timing_line(label, timing), markup=False, highlight=False)
    if plot is not None:
        _scf.save_plot(result, plot, f"{' '.join(mol.symbols)} / {basis}")
        console.print(f"convergence plot written to {plot}")
    if not bool(result.converged):
        fail(f"the SCF did not converge: {result.message}")


def main() -> None:
    """Entry point of the ``opifex`` console script.

    Example:
        From a shell: ``opifex demo`` or ``opifex bench second-order --quick``.
    """
    app(prog_name="opifex")
