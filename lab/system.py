"""Starting and stopping the whole system as real processes: the ASGI server, saga workers,
one django-q2 cluster per service queue and the engine's housekeeping cluster. Used by the
benchmark, the chaos run and the tests; `make run` starts the same processes from the
Procfile."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psycopg
from django.conf import settings

from sagas.cluster import descendants

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
# Collected once and shared by the lab's runs: the files are named by their content.
LAB_STATIC_ROOT = Path(settings.BASE_DIR) / "var" / "lab-static"
_collected: set[str] = set()  # the STATIC_ROOTs this process has filled
ASGI_APP = "sagaproject.asgi:application"
# A service's own database, when it has one (sagaproject/settings.py): app label -> variable.
SERVICE_DATABASE_VARIABLES = {app: f"{app.upper()}_DATABASE_URL" for app in settings.SERVICE_APPS}


def web_argv(server: str, port: int) -> list[str]:
    """The arguments after `python` that serve the ASGI application on `port`."""
    if server == "daphne":
        return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP]
    from sagaproject.web_worker import WebWorker

    options = [f"--{name}={value}" for name, value in WebWorker.CONFIG_KWARGS.items()]
    return [
        "-m",
        "uvicorn",
        "--host=127.0.0.1",
        f"--port={port}",
        "--no-access-log",
        *options,
        ASGI_APP,
    ]


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def descendants(self) -> list[int]:
        """Pids below this process (qcluster -> sentinel -> workers, pusher and monitor)."""
        return descendants(self.pid) if self.alive else []


@dataclass
class System:
    env: dict[str, str]
    log_dir: Path
    saga_workers: int = 2
    q_workers: int = 2
    port: int = 0
    queues: tuple[str, ...] | None = None  # the service queues given a cluster; None: all
    # The engine's own cluster, which runs the purge schedule; None: with the whole system
    # (every service queue), not beside a chosen few.
    housekeeping: bool | None = None
    # More web servers: each on its own port (`urls`), e.g. behind a load balancer; 0: none.
    web_servers: int = 1
    # daphne, as `make run` serves; or uvicorn, one process of what `make serve` runs.
    web_server: str = "daphne"
    # Runs every process: an argv prefix, e.g. one that enters another host's network namespace.
    launcher: tuple[str, ...] = ()
    worker_prefix: str = ""  # before each saga worker's name (its lease owner), e.g. a host's
    procs: list[Proc] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        base = {**self.env, "Q_WORKERS": str(self.q_workers)}
        py = sys.executable
        self.ports = [self.port] + [free_port() for _ in range(1, self.web_servers)]
        self.ports = self.ports[: self.web_servers]
        run = list(self.launcher)
        self.procs = [
            *[
                Proc(
                    "web" if i == 0 else f"web.{i + 1}",
                    [*run, py, *web_argv(self.web_server, port)],
                    base,
                )
                for i, port in enumerate(self.ports)
            ],
            *[
                Proc(
                    f"saga_worker.{i}",
                    [
                        *run,
                        py,
                        MANAGE,
                        "saga_worker",
                        "--name",
                        f"{self.worker_prefix}saga_worker.{i}",
                    ],
                    base,
                )
                for i in range(1, self.saga_workers + 1)
            ],
            *[
                Proc(
                    f"q_{queue}",
                    [*run, py, MANAGE, "qcluster"],
                    {**base, "Q_CLUSTER_NAME": queue},
                )
                for queue in (settings.SERVICE_QUEUES if self.queues is None else self.queues)
            ],
        ]
        if self.housekeeping or (self.housekeeping is None and self.queues is None):
            queue = settings.HOUSEKEEPING_QUEUE
            self.procs.append(
                Proc(
                    f"q_{queue}", [*run, py, MANAGE, "qcluster"], {**base, "Q_CLUSTER_NAME": queue}
                )
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def migrate(self) -> str:
        """Migrate every database of this system: default and each service's own."""
        return self.manage("migrate_all", "--no-input")

    def manage(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run a management command against this system's database; returns its stdout."""
        done = subprocess.run(
            [sys.executable, MANAGE, *args],
            env=self.process_env(self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        # A SIGTERM to the runner must stop the system too: turn it into SystemExit so that
        # the caller's `finally: system.stop()` runs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.collect_static()
        for proc in self.procs:
            self._spawn(proc)
        self.wait_ready()

    def collect_static(self) -> None:
        """With DEBUG off the pages name the static files by their content-hashed copies, which
        `collectstatic` makes (as `make serve` does); once per STATIC_ROOT in this process."""
        env = self.process_env(self.env)
        debug = env.get("DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
        root = env.get("STATIC_ROOT", "")
        if debug or root in _collected:
            return
        self.manage("collectstatic", "--no-input", "--verbosity", "0")
        _collected.add(root)

    def _spawn(self, proc: Proc) -> None:
        log = (self.log_dir / f"{proc.name}.log").open("ab")
        self._logs.append(log)
        proc.popen = subprocess.Popen(
            proc.argv,
            env=self.process_env(proc.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

    def restart(self, proc: Proc) -> None:
        if proc.alive:
            self.signal(proc, signal.SIGKILL)
            assert proc.popen is not None
            proc.popen.wait(10)
        proc.restarts += 1
        self._spawn(proc)

    def signal(self, proc: Proc, signum: int, group: bool = True) -> None:
        """Signal a process, or with `group` its whole session (a cluster and its workers)."""
        try:
            if group:
                os.killpg(proc.pid, signum)
            else:
                os.kill(proc.pid, signum)
        except ProcessLookupError:
            pass

    def wait_ready(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p.name for p in self.procs if not p.alive]
            if dead:
                raise RuntimeError(f"processes died at start: {dead}; see {self.log_dir}")
            if not self.urls:  # no web tier: the caller knows what "ready" means for the rest
                return
            try:
                if all(
                    requests.get(f"{url}/readyz", timeout=2).status_code == 200 for url in self.urls
                ):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not become ready; see {self.log_dir}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM everything (clean stop), then SIGKILL whatever is left."""
        for proc in self.procs:
            if proc.alive:
                self.signal(proc, signal.SIGTERM, group=False)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc.popen is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            self.signal(proc, signal.SIGKILL)
            proc.popen.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()

    @staticmethod
    def process_env(env: dict[str, str]) -> dict[str, str]:
        """The environment of a child process: this one's, overridden by `env`. The child reads
        no `.env` file (ENV_FILE empty): it sees exactly what this process sees, plus `env`.
        SAGA_SERVER is not passed on: it marks the ASGI server (set by sagaproject/asgi.py, e.g.
        when a test imports it) and would give forked django-q2 workers a connection pool.
        An `env` that names a DATABASE_URL names the system's every database: a service
        database it does not name is none (the service shares default), never this process's."""
        inherited = {k: v for k, v in os.environ.items() if k != "SAGA_SERVER"}
        if "DATABASE_URL" in env:
            inherited.update(dict.fromkeys(SERVICE_DATABASE_VARIABLES.values(), ""))
        return {**inherited, "PYTHONUNBUFFERED": "1", "ENV_FILE": "", **env}


def local_env(tmp: Path, secret_key: str) -> dict[str, str]:
    """Settings for a whole-system run on this host over plain HTTP: production mode (DEBUG
    off), no HTTPS redirect, quiet logs, a cache of its own in `tmp`, the lab's static files."""
    return {
        "DEBUG": "0",
        "SECRET_KEY": secret_key,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "CACHE_DIR": str(tmp / "cache"),
        "STATIC_ROOT": str(LAB_STATIC_ROOT),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_database(
    url: str,
    tmp: Path,
    prefix: str,
    keep: bool = False,
    services: Iterable[str] | None = None,
) -> Iterator[dict[str, str]]:
    """Fresh databases for a whole-system run, as environment entries: a new PostgreSQL
    database on `url`'s server (dropped afterwards unless `keep`), or a SQLite file in `tmp`;
    and one more for each of `services` (default: the services that have a database of their
    own in this process's settings), named after it. Every service variable is in the result,
    empty for a service that shares default."""
    own = tuple(settings.SERVICE_DATABASE_URLS if services is None else services)
    entries = dict.fromkeys(SERVICE_DATABASE_VARIABLES.values(), "")
    if not url.startswith("postgres"):
        for app in own:
            entries[SERVICE_DATABASE_VARIABLES[app]] = (
                f"sqlite:///{tmp / f'{prefix}_{app}.sqlite3'}"
            )
        yield {**entries, "DATABASE_URL": "", "SQLITE_PATH": str(tmp / f"{prefix}.sqlite3")}
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        entries["DATABASE_URL"] = stack.enter_context(_postgres_database(url, name, keep))
        for app in own:
            entries[SERVICE_DATABASE_VARIABLES[app]] = stack.enter_context(
                _postgres_database(url, f"{name}_{app}", keep)
            )
        yield entries


@contextmanager
def _postgres_database(url: str, name: str, keep: bool) -> Iterator[str]:
    """A new database `name` on `url`'s server, as its URL; dropped afterwards unless `keep`."""
    admin_url = urlsplit(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def databases_of_this_process() -> dict[str, str]:
    """The databases this process is connected to (under pytest: its test databases), as a
    child process's environment entries: DATABASE_URL (or SQLITE_PATH) and each service's own."""
    from django.db import connections

    def url_of(alias: str, configured: str) -> str:
        name = str(connections[alias].settings_dict["NAME"])
        if connections[alias].vendor == "sqlite":
            return f"sqlite:///{name}"
        return urlsplit(configured)._replace(path=f"/{name}").geturl()

    entries = dict.fromkeys(SERVICE_DATABASE_VARIABLES.values(), "")
    for app, configured in settings.SERVICE_DATABASE_URLS.items():
        entries[SERVICE_DATABASE_VARIABLES[app]] = url_of(app, configured)
    if connections["default"].vendor == "sqlite":
        return {
            **entries,
            "DATABASE_URL": "",
            "SQLITE_PATH": str(connections["default"].settings_dict["NAME"]),
        }
    return {**entries, "DATABASE_URL": url_of("default", settings.DATABASE_URL)}


def database_names(env: dict[str, str]) -> list[str]:
    """The PostgreSQL database names of a system's environment entries (default first)."""
    urls = [env.get("DATABASE_URL", "")] + [
        env.get(v, "") for v in SERVICE_DATABASE_VARIABLES.values()
    ]
    return [urlsplit(u).path.lstrip("/") for u in urls if u.startswith("postgres")]
