"""The server process of the serving benchmark: a registry's solvers behind uvicorn on loopback.

Started by ``bench_serving.py`` as a subprocess::

    python benchmarks/deploy/serving_server.py --registry DIR --batching on \
        --max-batch-size 32 --max-delay-ms 2 [--osqp]

It loads the stable version of every solver in the registry (``Registry.load``: hash and jax
compatibility verified), adds the OSQP servable of ``qp_family`` with ``--osqp``, binds a
socket on 127.0.0.1 with a port chosen by the system, prints ``PORT <n>`` on stdout and serves
``opifex.deploy.create_app`` (result cache off, access log off) until terminated, with the HTTP
stack of ``opifex serve`` (``opifex.deploy._http.http_protocol``: httptools, a response's head
and body in one write; the same for ``--batching on`` and ``off``). Readiness is the
service's own ``/readyz``: 200 once every solver is compiled for every bucket size.
"""

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # qp_family


def build_app(args: argparse.Namespace) -> Any:
    from opifex.deploy import Registry
    from opifex.deploy._service import create_app

    registry = Registry(args.registry)
    solvers = {}
    for name in registry.names():
        solvers[name] = ("stable", registry.load(name))
    if args.osqp:
        import qp_family

        solvers[qp_family.OSQP_NAME] = ("osqp", qp_family.OSQPServable(qp_family.make_family()))
    return create_app(
        solvers,
        max_batch_size=args.max_batch_size,
        max_delay_ms=args.max_delay_ms,
        batching=args.batching == "on",
        cache_size=0,  # every request reaches a solver: the benchmark measures solving
        warm_up=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--batching", choices=("on", "off"), required=True)
    parser.add_argument("--max-batch-size", type=int, required=True)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--osqp", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get("OPIFEX_JAX_CACHE"):  # the benchmark gives the servers one of their own
        from opifex.core import enable_compilation_cache

        enable_compilation_cache()

    import uvicorn

    from opifex.deploy._http import http_protocol

    app = build_app(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, http=http_protocol(), log_level="warning", access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.exit(main(sys.argv[1:]))
