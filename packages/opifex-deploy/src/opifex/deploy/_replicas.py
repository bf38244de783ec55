"""Several replicas of the service on one machine, and a supervisor that restarts dead ones.

:class:`ReplicaSet` starts ``replicas`` processes, each a uvicorn server of the same ASGI
application factory on its own port (on ``127.0.0.1`` unless told otherwise), and a
supervisor thread that starts a replica again, on the same port, when its process dies
(killed, crashed), with an exponential back-off for one that keeps dying at start-up. The
default factory is :func:`~opifex.deploy._provider.app_from_environment`, configured by
the ``OPIFEX_SERVE_CONFIG`` JSON of :func:`~opifex.deploy._provider.serve_config`, so every
replica serves the same registry and follows its channels: a canary rolled back by one
replica is rolled back by the others within their poll interval.

Each replica has its own address (``urls``), so a client or a load balancer in front spreads
requests over them and retries another replica on a connection error (a predict request is
idempotent). The other multi-process route, one port shared by N workers, is
``opifex serve --workers N`` (uvicorn's own supervisor, which also restarts a worker that
dies). Ray Serve is not used: it is not a dependency of opifex-deploy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from ._provider import SERVE_CONFIG_ENV

logger = logging.getLogger(__name__)

DEFAULT_APP = "opifex.deploy._provider:app_from_environment"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy on loopback


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (another process may take it before you bind it).

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _Replica:
    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.restarts = 0
        self.quick_failures = 0  # deaths soon after a start, in a row
        self.due = 0.0  # when a dead replica may be started again


class ReplicaSet:
    """N uvicorn processes of one application factory, restarted when they die.

    Args:
        replicas: how many processes.
        config: the ``OPIFEX_SERVE_CONFIG`` of each (the JSON of
            :func:`~opifex.deploy._provider.serve_config`), for the default ``app``.
        app: the factory's import string, ``"package.module:function"``, called with no
            argument in each process (uvicorn ``--factory``).
        host: the address to listen on (loopback by default).
        ports: one port per replica (default: free ports).
        env: extra environment variables of the processes.
        restart: start a replica again when its process dies.
        check_interval_s: how often the supervisor looks at the processes.
        restart_delay_s: the first back-off after a replica died within ``startup_s`` of
            its start; it doubles with each such death in a row, up to 30 s.
        startup_s: a replica that lived longer than this is restarted at once.
        log_level: uvicorn's log level in the replicas.

    Example:
        ``with ReplicaSet(2, config=serve_config("registry")) as replicas:`` starts two
        replicas, waits until each answers ``/readyz``, and ``replicas.urls`` are their
        addresses; leaving the block stops them (SIGTERM, then SIGKILL after a timeout).
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        config: str | None = None,
        app: str = DEFAULT_APP,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        env: Mapping[str, str] | None = None,
        restart: bool = True,
        check_interval_s: float = 0.1,
        restart_delay_s: float = 0.5,
        startup_s: float = 10.0,
        log_level: str = "warning",
    ) -> None:
        if not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
        if ports is not None and len(ports) != replicas:
            raise ValueError(f"ports must give one port per replica ({replicas}), got {ports}")
        if ":" not in app:
            raise ValueError(f"app must be an import string 'package.module:factory', got {app!r}")
        self._env = {**os.environ, **dict(env or {})}
        if config is not None:
            self._env[SERVE_CONFIG_ENV] = config
        if app == DEFAULT_APP and SERVE_CONFIG_ENV not in self._env:
            raise ValueError(
                f"the default app needs config= (serve_config(...)) or ${SERVE_CONFIG_ENV}"
            )
        self.app = app
        self.host = host
        self.restart = restart
        self.check_interval_s = check_interval_s
        self.restart_delay_s = restart_delay_s
        self.startup_s = startup_s
        self.log_level = log_level
        ports = list(ports) if ports is not None else [free_port(host) for _ in range(replicas)]
        self._replicas = [_Replica(i, port) for i, port in enumerate(ports)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------------ inspection

    @property
    def urls(self) -> list[str]:
        """The base URL of each replica, ``http://host:port``."""
        return [f"http://{self.host}:{r.port}" for r in self._replicas]

    @property
    def pids(self) -> list[int | None]:
        """The process id of each replica now (``None``: not running)."""
        with self._lock:
            return [
                r.process.pid if r.process is not None and r.process.poll() is None else None
                for r in self._replicas
            ]

    @property
    def restarts(self) -> list[int]:
        """How many times each replica was started again."""
        with self._lock:
            return [r.restarts for r in self._replicas]

    # ------------------------------------------------------------------------ life cycle

    def _command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.app,
            "--host",
            self.host,
            "--port",
            str(port),
            "--log-level",
            self.log_level,
        ]

    def _spawn(self, replica: _Replica) -> None:
        replica.process = subprocess.Popen(self._command(replica.port), env=self._env)
        replica.started = time.monotonic()
        logger.info(
            "replica %d started on %s:%d (pid %d)",
            replica.index,
            self.host,
            replica.port,
            replica.process.pid,
        )

    def start(self) -> ReplicaSet:
        """Start every replica and the supervisor; returns ``self`` (see :meth:`wait_ready`)."""
        with self._lock:
            if self._supervisor is not None:
                raise RuntimeError("the replicas are started already")
            self._stopping.clear()
            for replica in self._replicas:
                self._spawn(replica)
            self._supervisor = threading.Thread(
                target=self._supervise, name="opifex-replica-supervisor", daemon=True
            )
            self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._stopping.wait(self.check_interval_s):
            with self._lock:
                if self._stopping.is_set():
                    return
                for replica in self._replicas:
                    self._check(replica)

    def _check(self, replica: _Replica) -> None:
        process = replica.process
        now = time.monotonic()
        if process is not None:
            code = process.poll()
            if code is None:
                if now - replica.started > self.startup_s:
                    replica.quick_failures = 0
                return
            lived = now - replica.started
            logger.warning(
                "replica %d (port %d, pid %d) exited with %s after %.1f s%s",
                replica.index,
                replica.port,
                process.pid,
                code,
                lived,
                "; restarting it" if self.restart else "",
            )
            replica.process = None
            replica.quick_failures = replica.quick_failures + 1 if lived < self.startup_s else 0
            delay = 0.0
            if replica.quick_failures > 1:
                delay = min(self.restart_delay_s * 2 ** (replica.quick_failures - 2), 30.0)
            replica.due = now + delay
        if self.restart and now >= replica.due:
            replica.restarts += 1
            self._spawn(replica)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every replica answers ``GET /readyz`` with 200.

        Raises:
            TimeoutError: one did not within ``timeout_s`` (named, with its state).
        """
        deadline = time.monotonic() + timeout_s
        for index, url in enumerate(self.urls):
            while not ready(url):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica {index} at {url} (pid {self.pids[index]}) was not ready "
                        f"within {timeout_s} s"
                    )
                time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the supervisor and every replica: SIGTERM, then SIGKILL after ``timeout_s``."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout_s)
            self._supervisor = None
        with self._lock:
            processes = [r.process for r in self._replicas if r.process is not None]
            for replica in self._replicas:
                replica.process = None
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("replica pid %d did not stop on SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()

    def __enter__(self) -> ReplicaSet:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def ready(url: str, timeout_s: float = 2.0) -> bool:
    """Whether the service at ``url`` answers ``GET /readyz`` with 200 now.

    Example:
        >>> ready(f"http://127.0.0.1:{free_port()}")  # nothing listens there
        False
    """
    try:
        with _DIRECT.open(f"{url}/readyz", timeout=timeout_s) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
