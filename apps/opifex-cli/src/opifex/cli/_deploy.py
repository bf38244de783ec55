"""``opifex deploy``: export built-in solvers to a registry, list it, promote and roll back.

``export NAME`` lowers one of the solvers of ``opifex.cli._exportables`` with
``opifex.deploy.export_function`` (batched, any batch size) and publishes it as the next version
of ``NAME`` in the registry (``opifex.deploy.Registry``: a directory, or an fsspec URL such as
``s3://bucket/prefix`` with ``opifex-deploy[fsspec]``). ``list`` shows every name, version,
channel and hash; ``promote`` points the ``stable`` (or ``canary``) channel at a version;
``rollback`` points it back at the version it held before.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from opifex.cli._console import fail, stdout_console

REGISTRY_ENV = "OPIFEX_REGISTRY"
# EXPORTABLES' keys, without importing the solvers (a test checks)
SOLVER_NAMES = ("lm-fit", "scf-h2", "l2o-quadratic10", "mpc-pendulum")
CHANNELS = ("stable", "canary")

deploy_app = typer.Typer(
    no_args_is_help=True,
    help="Export solvers to a versioned registry; promote and roll back versions.",
)

RegistryOption = Annotated[
    str,
    typer.Option(
        "--registry",
        envvar=REGISTRY_ENV,
        help=f"Registry directory or fsspec URL (or ${REGISTRY_ENV}).",
    ),
]
ChannelOption = Annotated[str, typer.Option(help="stable or canary.")]


def _registry(root: str) -> Any:
    try:
        from opifex.deploy import Registry
    except ImportError:  # pragma: no cover - opifex-deploy is installed with the workspace
        fail("opifex deploy needs the opifex-deploy package: pip install opifex-deploy", code=2)
    try:
        return Registry(root)
    except (ImportError, TypeError) as error:
        fail(str(error), code=2)


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        fail(f"--channel must be stable or canary, got {channel!r}", code=2)


@deploy_app.command()
def export(
    name: Annotated[str, typer.Argument(help=f"A built-in solver: {', '.join(SOLVER_NAMES)}.")],
    registry: RegistryOption,
    platform: Annotated[
        list[str] | None,
        typer.Option(help="Platform to lower for (repeat for several): cpu, cuda, rocm, tpu."),
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="Also point this channel (stable or canary) at it.")
    ] = None,
) -> None:
    """Export a built-in solver (batched, any batch size) as the next version in the registry.

    The artifact is jax.export's serialized StableHLO with its signature, SHA-256, platforms
    and jax versions; `opifex deploy list` shows it, and the service loads it by name.
    """
    from opifex.cli._exportables import EXPORTABLES

    if name not in EXPORTABLES:
        fail(f"unknown solver {name!r}; available: {', '.join(EXPORTABLES)}", code=2)
    if channel is not None:
        _check_channel(channel)
    store = _registry(registry)
    from opifex.deploy import export_function

    solver = EXPORTABLES[name]
    console = stdout_console()
    try:
        exported = export_function(
            solver.fn, solver.signature, platforms=tuple(platform or ("cpu",)), name=name
        )
    except ValueError as error:
        fail(str(error), code=2)
    version = store.publish(name, exported, extra_metadata={"description": solver.description})
    console.print(
        f"exported {name} {version} to {registry} (sha256 {exported.sha256[:12]}, "
        f"{len(exported.to_bytes())} bytes, platforms {', '.join(exported.platforms)})",
        markup=False,
        highlight=False,
    )
    if channel is not None:
        store.promote(name, version, channel)
        console.print(f"{channel}: {name} {version}", markup=False, highlight=False)


@deploy_app.command("list")
def list_(
    registry: RegistryOption,
    name: Annotated[str | None, typer.Argument(help="Only this name.")] = None,
) -> None:
    """List the registry's solvers: versions, channels, publication time, platforms, hash."""
    from opifex.deploy import NotInRegistryError

    store = _registry(registry)
    names = store.names() if name is None else [name]
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "version", "channel", "published", "platforms", "sha256", "bytes"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    try:
        for entry in names:
            versions = store.versions(entry)
            if not versions:
                raise NotInRegistryError(f"no versions of {entry!r} in {registry}")
            channels = store.channels(entry)
            for version in versions:
                metadata = store.metadata(entry, version)
                marks = ", ".join(c for c in CHANNELS if channels[c] == version)
                table.add_row(
                    entry,
                    version,
                    marks,
                    str(metadata.get("published", "")),
                    ", ".join(metadata.get("platforms", ())),
                    str(metadata.get("sha256", ""))[:12],
                    str(metadata.get("size", "")),
                )
    except ValueError as error:
        fail(str(error), code=2)
    console = stdout_console()
    if not names:
        console.print(f"no solvers in {registry}", markup=False, highlight=False)
        return
    console.print(table)


@deploy_app.command()
def promote(
    name: Annotated[str, typer.Argument(help="The registered name.")],
    version: Annotated[str, typer.Argument(help="v1, v2, ..., latest or canary.")],
    registry: RegistryOption,
    channel: ChannelOption = "stable",
) -> None:
    """Point a channel (stable by default) at a version; the previous one is kept for rollback."""
    _check_channel(channel)
    store = _registry(registry)
    try:
        before = store.channels(name)[channel]
        store.promote(name, version, channel)
        after = store.channels(name)[channel]
    except ValueError as error:
        fail(str(error), code=2)
    stdout_console().print(
        f"{channel}: {name} {after} (was {before or 'unset'})", markup=False, highlight=False
    )


@deploy_app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="The registered name.")],
    registry: RegistryOption,
    channel: ChannelOption = "stable",
) -> None:
    """Point a channel back at the version it held before its last change."""
    _check_channel(channel)
    store = _registry(registry)
    try:
        before = store.channels(name)[channel]
        after = store.rollback(name, channel)
    except ValueError as error:
        fail(str(error), code=2)
    stdout_console().print(
        f"{channel}: {name} {after or 'unset'} (was {before or 'unset'})",
        markup=False,
        highlight=False,
    )
