"""``opifex serve``: the HTTP service of a registry, with canary roll-out and rollback.

Serves the ``stable`` version of every name in the registry (``opifex deploy export`` /
``promote``) and, while a name's ``canary`` channel points at another version
(``opifex deploy promote NAME vN --channel canary``), sends ``--canary-percentage`` percent of
its requests there and rolls it back automatically when its error rate, p99 latency or
solution quality is worse than the stable version's by the thresholds
(``opifex.deploy._canary.AdaptiveDeploymentSystem``). The registry's channels are read again
every ``--poll-interval`` seconds, so a promotion or rollback from the command line (or from
another replica) is followed without a restart. ``--workers N`` runs N processes on one port
under uvicorn's supervisor, which starts a worker again if it dies; they share the canary
state through the registry.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from opifex.cli._console import fail, stdout_console
from opifex.cli._deploy import REGISTRY_ENV


def serve(
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            envvar=REGISTRY_ENV,
            help=f"Registry directory or fsspec URL (or ${REGISTRY_ENV}).",
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port.")] = 1,
    name: Annotated[
        list[str] | None, typer.Option(help="Serve only this name (repeat for several).")
    ] = None,
    canary_percentage: Annotated[
        float, typer.Option(help="Percent of the requests sent to a canary version.")
    ] = 10.0,
    rollback_threshold: Annotated[
        float, typer.Option(help="Roll back when the canary's error rate is this much higher.")
    ] = 0.05,
    latency_threshold: Annotated[
        float, typer.Option(help="... or its p99 latency this much higher (relative).")
    ] = 0.5,
    quality_output: Annotated[
        str | None,
        typer.Option(help="... or the mean of this output (a residual, a gap) relatively worse."),
    ] = None,
    quality_check: Annotated[
        str | None,
        typer.Option(help="... or this quality check, 'package.module:function(inputs, outputs)'."),
    ] = None,
    min_requests: Annotated[
        int, typer.Option(help="Requests both versions must answer before any decision.")
    ] = 20,
    window: Annotated[int, typer.Option(help="Requests kept per version.")] = 200,
    auto_promote: Annotated[
        bool, typer.Option(help="Promote a canary that answered --window requests healthily.")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between two reads of the registry's channels.")
    ] = 1.0,
    max_batch_size: Annotated[int, typer.Option(help="Most examples per solver call.")] = 32,
    max_delay_ms: Annotated[
        float, typer.Option(help="Longest wait of a request for its batch to fill.")
    ] = 2.0,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve a registry's solvers over HTTP, with canary roll-out and automatic rollback.

    POST /v1/solvers/NAME/predict with {"inputs": {...}} or {"instance": {...}}; GET /healthz,
    /readyz, /metrics, /v1/solvers and /openapi.json. Stops on SIGTERM or Ctrl-C.
    """
    if workers < 1:
        fail(f"--workers must be at least 1, got {workers}", code=2)
    if not 0 <= port <= 65535:
        fail(f"--port must be in [0, 65535], got {port}", code=2)
    if quality_output is not None and quality_check is not None:
        fail("give --quality-output or --quality-check, not both", code=2)
    from opifex.deploy import Registry
    from opifex.deploy._canary import AdaptiveDeploymentSystem
    from opifex.deploy._provider import SERVE_CONFIG_ENV, app_from_environment, serve_config
    from opifex.deploy._replicas import DEFAULT_APP

    canary = {
        "canary_percentage": canary_percentage,
        "rollback_threshold": rollback_threshold,
        "latency_threshold": latency_threshold,
        "min_requests": min_requests,
        "window": window,
        "auto_promote": auto_promote,
    }
    try:
        AdaptiveDeploymentSystem.check_options(**canary)
        store = Registry(registry)
        served = [n for n in (name or store.names()) if store.channels(n)["stable"] is not None]
        config = serve_config(
            registry,
            name,
            poll_interval_s=poll_interval,
            canary=canary,
            quality_output=quality_output,
            quality_check=quality_check,
            service={"max_batch_size": max_batch_size, "max_delay_ms": max_delay_ms},
        )
    except (ValueError, TypeError, ImportError) as error:
        fail(str(error), code=2)
    if not served:
        fail(
            f"nothing to serve in {registry}: no name has a stable version "
            "(opifex deploy promote NAME VERSION)",
            code=2,
        )
    os.environ[SERVE_CONFIG_ENV] = config  # read by app_from_environment, in every worker
    import uvicorn

    from opifex.deploy._http import http_protocol  # httptools, each answer in one write

    console = stdout_console()
    console.print(
        f"serving {', '.join(served)} from {registry} at http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}, canary {canary_percentage:g} %)",
        markup=False,
        highlight=False,
    )
    if workers == 1:
        try:
            app = app_from_environment()
        except (ValueError, TypeError, LookupError, ImportError, RuntimeError) as error:
            fail(str(error), code=2)
        uvicorn.run(app, host=host, port=port, log_level=log_level, http=http_protocol())
    else:
        uvicorn.run(
            DEFAULT_APP,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            http=http_protocol(),
        )
