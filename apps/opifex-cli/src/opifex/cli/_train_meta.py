"""``opifex train meta``: meta-train MAML, FOMAML, Reptile or Meta-SGD on few-shot sinusoids.

The tasks are those of Finn et al. (2017): ``y = A sin(x - phase)``, K support and K query
points per task, a 1-40-40-1 ReLU network (``opifex.meta.FewShotFamily`` over
``opifex.core.families.SinusoidFamily``). The learned meta-parameters are saved with
``opifex.core.save_pytree`` (their settings in the file's metadata), then evaluated on held-out
tasks: the query MSE after 0, 1 and 10 adaptation steps, with 95 % intervals.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from opifex.cli._console import ProgressCallback, progress_bar, stdout_console
from opifex.cli._train import _table, check_options, train_app

METHODS = ("maml", "fomaml", "reptile", "meta-sgd")
EVALUATION_KEY = 10_001  # the held-out tasks: a key never used in training


def make_learner(method: str, inner_lr: float, meta_lr: float, inner_steps: int, batch: int):
    """The ``opifex.meta`` façade of ``method`` with these settings.

    Example:
        >>> make_learner("fomaml", 0.01, 1e-3, 1, 25).config.second_order
        False
    """
    from opifex import meta

    if method in ("maml", "fomaml"):
        config = meta.MAMLConfig(inner_lr, meta_lr, inner_steps, batch, method == "maml")
        return meta.MAMLOptimizer(config)
    if method == "reptile":
        return meta.ReptileOptimizer(meta.ReptileConfig(meta_lr, inner_lr, inner_steps, batch))
    if method == "meta-sgd":
        return meta.GradientBasedMetaLearner(
            meta.MetaSGDConfig(inner_lr, meta_lr, inner_steps, batch)
        )
    raise ValueError(f"unknown method {method!r}; available: {', '.join(METHODS)}")


def train_meta_and_save(
    learner: Any,
    iterations: int,
    shots: int,
    seed: int,
    output: Path,
    eval_tasks: int,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Meta-train ``learner`` on ``shots``-shot sinusoids, save ``phi``, evaluate it.

    Returns:
        The summary also stored in the file's metadata: ``iterations``, ``wall_time_s`` and
        ``evaluation`` (``steps``, ``mse``, ``ci95``, ``num_tasks``).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "maml.npz"
        >>> summary = train_meta_and_save(make_learner("maml", 0.01, 1e-3, 1, 4), 5, 10, 0, path,
        ...                               10, lambda done, total, label: None)
        >>> summary["iterations"], len(summary["evaluation"]["mse"]), path.is_file()
        (5, 3, True)
    """
    import jax

    from opifex.core import save_pytree
    from opifex.core.families import SinusoidFamily
    from opifex.meta import FewShotFamily

    network = SinusoidFamily(num_points=shots)
    family = FewShotFamily(network, num_support=shots, num_query=shots)

    def report(done: int, total: int, metrics: dict[str, float]) -> None:
        progress(done, total, f"meta-iteration {done}, query MSE {metrics['meta_loss']:.3g}")

    start = time.perf_counter()
    result = learner.meta_train_family(
        family,
        network.init(jax.random.key(seed), None),
        iterations,
        key=jax.random.key(seed + 1),
        progress=report,
    )
    jax.block_until_ready(result.phi)
    seconds = time.perf_counter() - start
    evaluation_family = FewShotFamily(network, num_support=shots, num_query=100)
    curve = learner.evaluate(
        jax.random.key(EVALUATION_KEY), result.phi, evaluation_family, num_tasks=eval_tasks
    )
    summary = {
        "iterations": iterations,
        "wall_time_s": seconds,
        "evaluation": {
            "num_tasks": eval_tasks,
            "steps": curve.steps.tolist(),
            "mse": curve.mean.tolist(),
            "ci95": curve.ci95.tolist(),
        },
    }
    metadata = {
        "command": "opifex train meta",
        "family": repr(family),
        "config": dataclasses.asdict(learner.config),
        "method": type(learner).__name__,
        "seed": seed,
        **summary,
    }
    save_pytree(output, result.phi, metadata=metadata)
    return summary


@train_app.command("meta")
def meta(
    output: Annotated[
        Path, typer.Option("--output", dir_okay=False, help="The .npz file to write.")
    ],
    method: Annotated[str, typer.Option(help=f"Meta-learner: {', '.join(METHODS)}.")] = "maml",
    iterations: Annotated[int, typer.Option(help="Meta-iterations.")] = 5000,
    inner_steps: Annotated[
        int, typer.Option(help="Inner steps in training (Reptile: its default is 10).")
    ] = 1,
    inner_lr: Annotated[float, typer.Option(help="Inner SGD learning rate.")] = 0.01,
    meta_lr: Annotated[
        float, typer.Option(help="Meta learning rate (Adam; Reptile: the interpolation step).")
    ] = 1e-3,
    meta_batch: Annotated[int, typer.Option(help="Tasks per meta-iteration.")] = 25,
    shots: Annotated[int, typer.Option(help="Support (and query) points per task.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the start and of training.")] = 0,
    eval_tasks: Annotated[int, typer.Option(help="Held-out tasks of the evaluation.")] = 600,
) -> None:
    """Meta-train on few-shot sinusoid regression, save phi, evaluate on held-out tasks."""
    check_options(
        {"method": (method, METHODS)},
        output,
        iterations=iterations,
        **{"inner-steps": inner_steps, "meta-batch": meta_batch, "shots": shots},
    )
    if eval_tasks < 2:
        raise typer.BadParameter(f"must be >= 2, got {eval_tasks}", param_hint="'--eval-tasks'")
    for name, value in (("inner-lr", inner_lr), ("meta-lr", meta_lr)):
        if not value > 0:
            raise typer.BadParameter(f"must be > 0, got {value}", param_hint=f"'--{name}'")
    learner = make_learner(method, inner_lr, meta_lr, inner_steps, meta_batch)
    console = stdout_console()
    with progress_bar("compiling", console) as tick:
        summary = train_meta_and_save(learner, iterations, shots, seed, output, eval_tasks, tick)
    ev = summary["evaluation"]
    rows = [
        ("meta-iterations", str(iterations)),
        ("wall time (s)", f"{summary['wall_time_s']:.1f}"),
    ]
    rows += [
        (f"query MSE after {s} step(s)", f"{m:.4f} ± {c:.4f}")
        for s, m, c in zip(ev["steps"], ev["mse"], ev["ci95"], strict=True)
    ]
    console.print(
        _table(rows, f"{method}, {shots}-shot sinusoids, {ev['num_tasks']} held-out tasks")
    )
    console.print(f"wrote {output}")
