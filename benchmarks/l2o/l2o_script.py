"""What the three learned-optimiser benchmark scripts share: the command line, the run
environment recorded in the JSON, the meta-training line of the printout, and ``main``.

Each script imports this module from its own directory (the CLI loads the scripts by path).
"""

import argparse
import datetime
import json
import logging
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

Progress = Callable[[int, int, str], None]
ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("bench_l2o")


def environment() -> dict[str, Any]:
    """Date, versions and device of this run, for the results JSON."""
    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
        "device": f"{device.platform} ({device.device_kind})",
        "platform": platform.platform(),
    }


def print_training(training: dict[str, Any] | None) -> None:
    """The meta-training time and throughput line (nothing when the run did not train)."""
    if training:
        print(
            f"meta-training: {training['wall_time_s']:.0f} s, "
            f"{training['inner_steps_per_s_task_batch']:.0f} inner steps/s (task batch), "
            f"{training['inner_steps_per_s_with_particles']:.0f} with PES particles, "
            f"on {training['device']}"
        )


def script_main(
    argv: Sequence[str] | None,
    progress: Progress | None,
    *,
    description: str,
    quick_help: str,
    name: str,
    run: Callable[[bool, bool, Progress | None, Path | None], dict[str, Any]],
    printout: Callable[[dict[str, Any]], None],
) -> int:
    """Parse ``--train --quick --output-dir --no-plot``, run, print, write ``<name>.json``.

    Args:
        argv: the command line (``None``: ``sys.argv``).
        progress: the CLI's ``callback(done, total, label)``, or ``None``.
        description: the script's one-line description.
        quick_help: what ``--quick`` does.
        name: the results' file stem in the output directory.
        run: ``run(quick, train, progress, plot_path) -> report``.
        printout: prints the report.

    Returns:
        The exit code, 0.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--train", action="store_true", help="meta-train and rewrite the weights")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    plot_path = None if args.no_plot else args.output_dir / f"{name}.png"
    report = run(args.quick, args.train, progress, plot_path)
    printout(report)
    path = args.output_dir / f"{name}.json"
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    LOG.info("wrote %s%s", path, "" if plot_path is None else f" and {plot_path}")
    return 0
