"""``opifex train l2o``: meta-train an MLP learned optimiser on a task family and save it.

The optimiser is ``opifex.l2o.mlp_optimizer`` with the feature set, width and scales of the
shipped ``quadratic10_mlp`` weights (``benchmarks/l2o/bench_l2o.py``); ``opifex.l2o.meta_train``
fits it on ``opifex.core.families`` tasks, and ``best_phi`` (the lowest validation final loss)
is written with ``opifex.l2o.save_pretrained``. The trained optimiser is then run for
``--horizon`` steps on fresh tasks beside ``optax.adam`` at ``--adam-lr``, and the median
``opifex.core.speedup`` over Adam is printed (and stored in the file's metadata).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from opifex.cli._console import ProgressCallback, fail, progress_bar, stdout_console

FAMILIES = ("quadratic", "rosenbrock", "logistic", "lasso")
ESTIMATORS = ("pes", "truncated_bptt")
NUM_PARTICLES = 8  # PES particles per task
NUM_VALIDATION_TASKS = 32

train_app = typer.Typer(
    no_args_is_help=True, help="Meta-train a learned optimiser and save it for reuse."
)


def make_family(name: str, dimension: int) -> Any:
    """The ``opifex.core.families`` family ``name`` with ``dimension`` parameters.

    Args:
        name: one of ``FAMILIES``.
        dimension: its ``dimension`` (rosenbrock: even).

    Returns:
        The family (its other fields at their defaults).

    Raises:
        ValueError: an unknown ``name`` or a ``dimension`` the family refuses.

    Example:
        >>> make_family("quadratic", 10)
        QuadraticFamily(dimension=10, num_rows=10, sampler='gaussian', condition_number=None)
    """
    from opifex.core import families

    classes = {
        "quadratic": families.QuadraticFamily,
        "rosenbrock": families.RosenbrockFamily,
        "logistic": families.LogisticRegressionFamily,
        "lasso": families.LassoFamily,
    }
    if name not in classes:
        raise ValueError(f"unknown family {name!r}; available: {', '.join(FAMILIES)}")
    return classes[name](dimension=dimension)


def check_options(
    choices: dict[str, tuple[str, tuple[str, ...]]], output: Path, **at_least_one: int
) -> None:
    """``typer.BadParameter``, naming the option, for a bad choice, count or ``--output``.

    Args:
        choices: ``{option: (value, allowed values)}``.
        output: the ``--output`` path (``check_output``).
        **at_least_one: ``option=value`` counts that must be >= 1.
    """
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            raise typer.BadParameter(
                f"{value!r} is not one of {', '.join(allowed)}", param_hint=f"'--{option}'"
            )
    for name, value in at_least_one.items():
        if value < 1:
            raise typer.BadParameter(f"must be >= 1, got {value}", param_hint=f"'--{name}'")
    check_output(output)


def check_output(output: Path) -> None:
    """``typer.BadParameter`` unless ``output`` is a ``.npz`` path in an existing directory."""
    if output.suffix != ".npz":
        raise typer.BadParameter(f"{output} must end in .npz", param_hint="'--output'")
    if not output.parent.is_dir():
        raise typer.BadParameter(
            f"directory {output.parent} does not exist", param_hint="'--output'"
        )


def train_and_save(
    family: Any,
    config: Any,
    seed: int,
    output: Path,
    adam_lr: float,
    eval_tasks: int,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Meta-train on ``family``, save ``best_phi`` to ``output``, compare it with Adam.

    Keys: ``init, train, evaluation = jax.random.split(jax.random.key(seed), 3)``; the
    ``eval_tasks`` evaluation task keys are ``jax.random.split(evaluation, eval_tasks)``.

    Args:
        family: a ``TaskFamily`` (e.g. ``make_family("quadratic", 10)``).
        config: an ``opifex.l2o.MetaTrainConfig``.
        seed: the seed of all keys.
        output: the ``.npz`` file to write.
        adam_lr: ``optax.adam``'s learning rate in the comparison.
        eval_tasks: fresh tasks in the comparison.
        progress: ``callback(done, total, label)``, called after each outer step.

    Returns:
        The summary also stored as the file's ``metadata["training"]`` and
        ``metadata["evaluation"]``, with ``family``, ``horizon``, ``outer_steps``,
        ``skipped_steps``, ``validation_first`` / ``validation_best``, ``wall_time_s``.

    Example:
        >>> import tempfile, pathlib
        >>> from opifex.l2o import MetaTrainConfig
        >>> config = MetaTrainConfig(num_tasks=2, truncation_length=5, horizon=10,
        ...     num_outer_steps=2, validation_every=1, num_validation_tasks=2)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "l2o.npz"
        >>> summary = train_and_save(make_family("quadratic", 3), config, 0, path, 1.0, 4,
        ...                          lambda done, total, label: None)
        >>> summary["outer_steps"], path.is_file()
        (2, True)
    """
    import jax
    import numpy as np
    import optax

    from opifex.core import speedup
    from opifex.l2o import QUADRATIC10_MLP, run_optimizer
    from opifex.l2o.benchmarking import diverged_mask

    recipe = QUADRATIC10_MLP
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    make = recipe.make_optimizer

    def tick(step: int, metrics: dict[str, float]) -> None:
        label = f"outer step {step}, meta-loss {metrics['meta_loss']:.3g}"
        progress(step, config.num_outer_steps, label)

    result, record = recipe.meta_train(
        init_key, train_key, family, config, progress=False, callback=tick
    )
    keys = jax.random.split(eval_key, eval_tasks)
    learned = run_optimizer(make(result.best_phi), family, keys, config.horizon).trace["value"]
    adam = run_optimizer(optax.adam(adam_lr), family, keys, config.horizon).trace["value"]
    validation = np.asarray(result.history.validation_metric)
    summary = {
        "family": repr(family),
        "horizon": config.horizon,
        "outer_steps": int(result.state.step),
        "skipped_steps": result.history.num_skipped_steps,
        "validation_first": float(validation[0]),
        "validation_best": float(result.state.best_metric),
        "wall_time_s": record["wall_time_s"],
        "evaluation": {
            "num_tasks": eval_tasks,
            "adam_lr": adam_lr,
            "median_speedup": float(np.median(speedup(learned, adam))),
            "median_final_loss": float(np.median(learned[:, -1])),
            "adam_median_final_loss": float(np.median(adam[:, -1])),
            "num_diverged": int(np.sum(diverged_mask(learned))),
        },
    }
    recipe.save(
        output,
        result.best_phi,
        metadata={
            "family": summary["family"],
            "horizon": config.horizon,
            "meta_train": {**dataclasses.asdict(config), "seed": seed},
            "selected": "best_phi (lowest validation final loss on meta_train's held-out tasks)",
            "command": "opifex train l2o",
            "training": {k: v for k, v in summary.items() if k != "evaluation"},
            "evaluation": summary["evaluation"],
        },
    )
    return summary


def _table(rows: list[tuple[str, str]], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("", no_wrap=True)
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _report(summary: dict[str, Any], title: str, console: Console) -> None:
    ev = summary["evaluation"]
    rows = [
        ("outer steps (skipped)", f"{summary['outer_steps']} ({summary['skipped_steps']})"),
        ("validation final loss, before training", f"{summary['validation_first']:.4g}"),
        ("validation final loss, best (saved)", f"{summary['validation_best']:.4g}"),
        ("meta-training wall time (s)", f"{summary['wall_time_s']:.1f}"),
        ("median final loss, learned", f"{ev['median_final_loss']:.4g}"),
        (f"median final loss, Adam lr {ev['adam_lr']:g}", f"{ev['adam_median_final_loss']:.4g}"),
        (f"median speedup vs Adam lr {ev['adam_lr']:g}", f"{ev['median_speedup']:.3g}"),
        ("learned runs diverged", f"{ev['num_diverged']} of {ev['num_tasks']}"),
    ]
    console.print(_table(rows, title))
    console.print(
        f"Evaluation: the saved optimiser and optax.adam({ev['adam_lr']:g}) (--adam-lr, not"
        f" tuned here) for {summary['horizon']} steps on {ev['num_tasks']} fresh tasks. Speedup:"
        " opifex.core.speedup, steps Adam needs to its final loss over the steps the learned"
        " optimiser needs (0: it never gets there).",
        markup=False,
    )


@train_app.command("l2o")
def l2o(
    output: Annotated[
        Path, typer.Option("--output", dir_okay=False, help="The .npz file to write.")
    ],
    family: Annotated[str, typer.Option(help=f"Task family: {', '.join(FAMILIES)}.")] = (
        "quadratic"
    ),
    dimension: Annotated[int, typer.Option(help="The family's dimension.")] = 10,
    steps: Annotated[int, typer.Option(help="Outer (meta-parameter) steps.")] = 500,
    estimator: Annotated[
        str, typer.Option(help=f"Meta-gradient estimator: {', '.join(ESTIMATORS)}.")
    ] = "pes",
    horizon: Annotated[int, typer.Option(help="Inner steps of an unroll.")] = 100,
    truncation: Annotated[int, typer.Option(help="Inner steps per outer step (<= horizon).")] = 20,
    tasks: Annotated[int, typer.Option(help="Tasks in the meta-batch.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the init, training and evaluation.")] = 0,
    adam_lr: Annotated[
        float, typer.Option(help="Adam's learning rate in the final comparison.")
    ] = 1.0,
    eval_tasks: Annotated[int, typer.Option(help="Fresh tasks of the final comparison.")] = 100,
) -> None:
    """Meta-train an MLP learned optimiser, save it, and compare it with Adam on fresh tasks."""
    check_options(
        {"family": (family, FAMILIES), "estimator": (estimator, ESTIMATORS)},
        output,
        steps=steps,
        horizon=horizon,
        truncation=truncation,
        tasks=tasks,
        **{"eval-tasks": eval_tasks},
    )
    if adam_lr <= 0:
        raise typer.BadParameter(f"must be > 0, got {adam_lr}", param_hint="'--adam-lr'")
    if truncation > horizon:
        raise typer.BadParameter(
            f"{truncation} is longer than --horizon {horizon}", param_hint="'--truncation'"
        )
    try:
        task_family = make_family(family, dimension)
    except ValueError as error:
        raise typer.BadParameter(f"{family}: {error}", param_hint="'--dimension'") from error
    from opifex.l2o import MetaTrainConfig

    config = MetaTrainConfig(
        estimator=estimator,
        meta_loss="log_mean",
        num_tasks=tasks,
        truncation_length=truncation,
        horizon=horizon,
        num_outer_steps=steps,
        num_particles=NUM_PARTICLES,
        validation_every=max(1, steps // 20),
        num_validation_tasks=NUM_VALIDATION_TASKS,
        validation_metric="final_loss",
    )
    console = stdout_console()
    with progress_bar("compiling", console) as tick:
        try:
            summary = train_and_save(task_family, config, seed, output, adam_lr, eval_tasks, tick)
        except ValueError as error:  # e.g. tasks not divisible by the device count
            fail(str(error))
    _report(summary, f"{family}, dimension {dimension}, horizon {horizon}", console)
    console.print(f"wrote {output}")
