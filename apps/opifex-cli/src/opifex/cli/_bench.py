"""``opifex bench NAME``: run a benchmark of the source checkout with a progress bar.

Benchmarks are not an installed package: they ship with the source checkout, in
``benchmarks/<package>/bench_<package>.py``, each with ``main(argv, progress) -> int``. The
``benchmarks`` directory is ``--benchmarks-dir``, else ``$OPIFEX_BENCHMARKS_DIR``, else the
first one found walking up from the current directory.

A package adds its benchmark as one more command of ``bench_app`` that builds the script's
``argv`` and calls ``run_script``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer.core import TyperGroup

from opifex.cli._console import fail, progress_bar

BENCHMARKS_ENV = "OPIFEX_BENCHMARKS_DIR"


class _BenchGroup(TyperGroup):
    """The ``bench`` group: an unknown benchmark name gets the list of available ones."""

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            available = ", ".join(sorted(self.commands))
            raise typer.BadParameter(
                f"{args[0]!r} is not a benchmark; available: {available}",
                ctx=ctx,
                param_hint="'COMMAND'",
            )
        return super().resolve_command(ctx, args)


bench_app = typer.Typer(
    cls=_BenchGroup,
    no_args_is_help=True,
    help="Run a benchmark of the source checkout: prints a table, writes JSON and PNG.",
)

BenchmarksDir = Annotated[
    Path | None,
    typer.Option(
        "--benchmarks-dir",
        envvar=BENCHMARKS_ENV,
        file_okay=False,
        help="The source checkout's benchmarks directory (default: found walking up from here).",
    ),
]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output-dir",
        file_okay=False,
        help="Where the JSON and PNG go (default: the benchmarks directory's results/).",
    ),
]


def find_benchmarks_dir(
    script: str, explicit: Path | None = None, start: Path | None = None
) -> Path:
    """The ``benchmarks`` directory that holds ``script``.

    Args:
        script: the benchmark's path inside ``benchmarks/``,
            e.g. ``"second_order/bench_second_order.py"``.
        explicit: a given benchmarks directory; it must hold ``script`` (no search).
        start: where the upward search begins (default: the current directory).

    Returns:
        The directory ``d`` with ``d / script`` a file.

    Raises:
        FileNotFoundError: ``script`` is not in ``explicit`` or in any ``benchmarks/`` above
            ``start``; the message says where benchmarks come from.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "benchmarks" / "demo").mkdir(parents=True)
        >>> _ = (root / "benchmarks" / "demo" / "bench_demo.py").write_text("")
        >>> find_benchmarks_dir("demo/bench_demo.py", start=root / "benchmarks" / "demo").name
        'benchmarks'
    """
    if explicit is not None:
        if (explicit / script).is_file():
            return explicit
        raise FileNotFoundError(
            f"{explicit / script} does not exist: --benchmarks-dir / ${BENCHMARKS_ENV} must be"
            " the benchmarks directory of an opifex source checkout"
        )
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / "benchmarks" / script).is_file():
            return directory / "benchmarks"
    raise FileNotFoundError(
        f"no benchmarks/{script} in {start} or any directory above it. Benchmarks ship with the"
        " opifex source checkout, not with the installed packages: run this command inside a"
        f" checkout, or pass --benchmarks-dir (or set ${BENCHMARKS_ENV})"
    )


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"opifex_benchmark_{path.stem}", path)
    if spec is None or spec.loader is None:
        fail(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        fail(f"{path} has no main(argv, progress) function")
    return module


def run_script(script: str, argv: list[str], benchmarks_dir: Path | None) -> None:
    """Run ``benchmarks/<script>``'s ``main(argv, progress)`` with a progress bar.

    Args:
        script: the benchmark's path inside ``benchmarks/``.
        argv: the script's own command-line options.
        benchmarks_dir: ``--benchmarks-dir`` (``None``: search upwards from here).

    Raises:
        typer.Exit: with the script's exit code, or 1 with a message if it is not found.
    """
    try:
        directory = find_benchmarks_dir(script, benchmarks_dir)
    except FileNotFoundError as error:
        fail(str(error))
    module = _load(directory / script)
    # the benchmark logs what it wrote (INFO) and solver failures (WARNING); other libraries
    # only their warnings
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("opifex").setLevel(logging.INFO)
    with progress_bar(f"running {script}") as progress:
        code = module.main(argv, progress=progress)
    raise typer.Exit(code)


@bench_app.command("second-order")
def second_order(
    quick: Annotated[
        bool, typer.Option("--quick", help="Rosenbrock 2-D and 100-D, three MGH problems.")
    ] = False,
    all_mgh: Annotated[
        bool, typer.Option("--all-mgh", help="All 35 MGH problems, not only 1-20.")
    ] = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """L-BFGS and Levenberg-Marquardt against scipy, optax, optimistix and jaxopt."""
    argv = _argv(output_dir, quick=quick, all_mgh=all_mgh)
    run_script("second_order/bench_second_order.py", argv, benchmarks_dir)


def _train_option(weights: str) -> Any:
    return Annotated[
        bool,
        typer.Option(
            "--train",
            help=f"Meta-train first and overwrite the package's shipped {weights} weights.",
        ),
    ]


def _argv(output_dir: Path | None, **flags: bool) -> list[str]:
    """A script's options: ``--NAME`` for each true flag, then ``--output-dir`` if given."""
    argv = [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]
    return argv + (["--output-dir", str(output_dir)] if output_dir is not None else [])


@bench_app.command("l2o")
def l2o(
    quick: Annotated[bool, typer.Option("--quick", help="100 held-out tasks, not 1000.")] = False,
    train: _train_option("quadratic10_mlp") = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """opifex.l2o's pretrained MLP optimiser against tuned Adam, SGD, momentum and L-BFGS."""
    run_script("l2o/bench_l2o.py", _argv(output_dir, quick=quick, train=train), benchmarks_dir)


@bench_app.command("l2o-lasso")
def l2o_lasso(
    quick: Annotated[bool, typer.Option("--quick", help="64 held-out tasks, not 256.")] = False,
    train: _train_option("lasso25x50_mlp") = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """opifex.l2o's pretrained LASSO optimiser against tuned Adam, ISTA and FISTA."""
    run_script(
        "l2o/bench_l2o_lasso.py", _argv(output_dir, quick=quick, train=train), benchmarks_dir
    )


@bench_app.command("l2o-mlp-regression")
def l2o_mlp_regression(
    quick: Annotated[bool, typer.Option("--quick", help="128 held-out tasks, not 1000.")] = False,
    train: _train_option("mlp_regression_mlp") = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """opifex.l2o's pretrained MLP-regression optimiser against tuned Adam and SGD."""
    argv = _argv(output_dir, quick=quick, train=train)
    run_script("l2o/bench_l2o_mlp_regression.py", argv, benchmarks_dir)


@bench_app.command("quantum")
def quantum(
    quick: Annotated[
        bool, typer.Option("--quick", help="16 geometries, fewer repeats, 4 iteration rows.")
    ] = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """opifex.quantum RHF against PySCF: time per SCF and force, batch throughput, iterations."""
    run_script("quantum/bench_scf.py", _argv(output_dir, quick=quick), benchmarks_dir)


@bench_app.command("meta")
def meta(
    quick: Annotated[
        bool, typer.Option("--quick", help="300 meta-iterations, one seed, 100 held-out tasks.")
    ] = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """opifex.meta's MAML, FOMAML, Reptile and Meta-SGD on sinusoids, beside hand-written MAML."""
    run_script("meta/bench_sinusoid.py", _argv(output_dir, quick=quick), benchmarks_dir)


@bench_app.command("meta-burgers")
def meta_burgers(
    quick: Annotated[
        bool, typer.Option("--quick", help="50 meta-iterations, one seed, 16 held-out tasks.")
    ] = False,
    output_dir: OutputDir = None,
    benchmarks_dir: BenchmarksDir = None,
) -> None:
    """MAML and Reptile starts for a Burgers PINN against random starts, with tuned Adam."""
    run_script("meta/bench_burgers.py", _argv(output_dir, quick=quick), benchmarks_dir)


CONTROL_BENCHMARKS = {
    "control-mpc": (
        "bench_mpc.py",
        "iLQR swing-ups beside CasADi + IPOPT and trajax, closed loops, rates, gradients.",
    ),
    "control-cbf": (
        "bench_cbf.py",
        "CBF safety filters over 1000 random episodes per case; time per call beside qpax.",
    ),
    "control-sysid": ("bench_sysid.py", "SINDy, parametric fits and neural ODEs."),
    "control-imitation": (
        "bench_imitation.py",
        "Recover dynamics and cost parameters by gradient descent through the MPC solver.",
    ),
}


def _control_command(script: str, summary: str) -> Any:
    def command(
        quick: Annotated[bool, typer.Option("--quick", help="A smoke-sized run.")] = False,
        output_dir: OutputDir = None,
        benchmarks_dir: BenchmarksDir = None,
    ) -> None:
        run_script(f"control/{script}", _argv(output_dir, quick=quick), benchmarks_dir)

    command.__doc__ = summary
    return command


for _name, (_script, _summary) in CONTROL_BENCHMARKS.items():
    bench_app.command(_name)(_control_command(_script, _summary))
