"""`make serve`, the production command, on PostgreSQL with DEBUG off: gunicorn with two uvicorn
workers, the saga workers and the four service clusters, started as documented
(docs/deployment.md). The web tier answers, serves the collected static files itself with
far-future caching, keeps its connections in a pool per process (and the forked django-q2
processes none), every web process serves live dashboard updates over a websocket, and SIGTERM
to the command's process group stops every process cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings

from lab.system import free_port
from sagas.cluster import descendants
from storefront.samples import order_body
from tests.functional.harness import FAST, Watcher, postgres_database, staff_session

pytestmark = pytest.mark.processes

BASE = Path(settings.BASE_DIR)
WEB_CONCURRENCY = 2
SAGA_WORKERS = 2
Q_WORKERS = 2
POOL_MAX = 4  # per web process: small, so that the test can reach it
QUEUES = settings.SERVICE_QUEUES
FAR_FUTURE = "max-age=315360000, public, immutable"


@dataclass
class Served:
    base: str
    env: dict[str, str]
    make: subprocess.Popen[bytes]
    log: Path
    token: str

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            return list(conn.execute(query).fetchall())

    def connections(self) -> dict[str, tuple[int, int]]:
        """This database's connections by application name: (all, listening)."""
        rows = self.sql(
            "SELECT application_name, count(*), count(*) FILTER (WHERE query LIKE 'LISTEN %')"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " GROUP BY 1"
        )
        return {name: (total, listening) for name, total, listening in rows}

    def processes(self) -> list[tuple[int, str]]:
        """Every live process of this run, with its command line: the command's descendants,
        and any process that carries the run's STATIC_ROOT in its environment (one that lost
        its parent). gunicorn renames its processes over their environment, so the tree is
        what finds those."""
        marker = f"STATIC_ROOT={self.env['STATIC_ROOT']}".encode()
        found = {pid: "" for pid in descendants(self.make.pid)}
        for entry in Path("/proc").iterdir():
            with suppress(OSError):  # gone meanwhile, or not ours to read
                if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = ""
        for pid in list(found):
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                del found[pid]
        return sorted(found.items())


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s; output:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    venv = Path(sys.prefix)
    with postgres_database() as databases:
        inherited = {k: v for k, v in os.environ.items() if k not in ("SAGA_SERVER", "DEBUG")}
        env = {
            **inherited,
            **FAST,
            **databases,
            "SECRET_KEY": "production-serving-test-" + "s" * 40,
            "SECURE_SSL_REDIRECT": "0",  # plain HTTP here; behind a TLS proxy in production
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "STATIC_ROOT": str(tmp / "static"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
            "CACHE_DIR": str(tmp / "cache"),
            "WEB_CONCURRENCY": str(WEB_CONCURRENCY),
            "DB_POOL_MAX_SIZE": str(POOL_MAX),
            "Q_WORKERS": str(Q_WORKERS),
            "ENV_FILE": "",
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp / "make-serve.log"
        # -o: make reinstalls nothing into the virtualenv.
        argv = ["make", "-o", f"{venv}/.installed", "serve", f"VENV={venv}", f"PORT={port}"]
        argv.append(f"SAGA_WORKERS={SAGA_WORKERS}")
        with log.open("wb") as out:
            make = subprocess.Popen(
                argv,
                cwd=BASE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        run = Served(base, env, make, log, token="")
        try:
            wait_until(lambda: ready(base), 180, "make serve did not become ready", log)
            seeded = subprocess.run(
                [sys.executable, "manage.py", "seed_demo"],
                cwd=BASE,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            run.token = dict(re.findall(r"user (\w+): API token (\w+)", seeded))["demo"]
            yield run
        finally:
            for pid, _ in run.processes():
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                make.wait(10)


def ready(base: str) -> bool:
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_the_web_tier_is_gunicorn_with_two_uvicorn_workers_answering_the_probes(
    served: Served,
) -> None:
    titles = [argv.split("[")[0].strip() for _, argv in served.processes()]
    assert titles.count("gunicorn: master") == 1, titles
    assert titles.count("gunicorn: worker") == WEB_CONCURRENCY, titles

    health = requests.get(f"{served.base}/healthz", timeout=10)

    assert health.status_code == 200
    assert health.headers["server"] == "uvicorn"
    assert health.headers["content-type"] == "application/json"


def hashed_assets(page: str, *names: str) -> list[str]:
    """The URLs a page gives for the named static files (content-hashed when collected)."""
    urls = []
    for name in names:
        stem, _, ext = name.rpartition(".")
        match = re.search(rf'(/static/{re.escape(stem)}\.[0-9a-f]{{12}}\.{ext})"', page)
        assert match, f"{name} is not linked under a hashed name"
        urls.append(match.group(1))
    return urls


def test_the_static_files_of_the_admin_the_api_docs_and_the_dashboard_are_served_for_a_year(
    served: Served,
) -> None:
    session = {"Cookie": f"sessionid={staff_session(served.base)}"}
    pages = {
        "/admin/login/": ["admin/css/base.css"],
        "/api/docs/": ["drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"],
        "/dashboard/": ["sagas/dashboard/dashboard.js", "sagas/dashboard/dashboard.css"],
    }
    for path, names in pages.items():
        page = requests.get(f"{served.base}{path}", headers=session, timeout=10)
        assert page.status_code == 200, (path, page.text[:300])
        for url in hashed_assets(page.text, *names):
            asset = requests.get(
                f"{served.base}{url}", headers={"Accept-Encoding": "gzip"}, timeout=10
            )
            assert asset.status_code == 200, url
            assert asset.headers["cache-control"] == FAR_FUTURE, url
            assert asset.headers["content-encoding"] == "gzip", url  # the precompressed copy

    for refused in ("/static/../sagaproject/settings.py", "/static/sagas/nothing.js"):
        assert requests.get(f"{served.base}{refused}", timeout=10).status_code == 404


def test_the_api_answers_errors_in_json(served: Served) -> None:
    unknown = requests.get(f"{served.base}/api/no-such-thing/", timeout=10)
    anonymous = requests.get(f"{served.base}/api/orders/", timeout=10)
    invalid = requests.post(
        f"{served.base}/api/orders/",
        json={"items": []},
        headers={"Authorization": f"Token {served.token}"},
        timeout=10,
    )

    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    assert anonymous.status_code == 401 and anonymous.json()["code"]
    assert invalid.status_code == 400 and "items" in invalid.json()["fields"]


def web_tailers(served: Served) -> int:
    """Web processes following the event log for their dashboard clients: each one's tailer
    holds a connection whose queries are the log's reads (sagas.dashboard.feed, `AS waiting`)."""
    return int(
        served.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'sagas:web' AND query LIKE '%AS waiting%'"
        )[0][0]
    )


def test_every_web_worker_serves_live_dashboard_updates_over_its_websocket(
    served: Served,
) -> None:
    # Connections go to whichever worker accepts first: open sockets until both have clients.
    watchers = [Watcher(served.base)]
    while len(watchers) < 20 and web_tailers(served) < WEB_CONCURRENCY:
        watchers.append(Watcher(served.base))
        time.sleep(0.2)
    assert web_tailers(served) == WEB_CONCURRENCY, f"{len(watchers)} sockets on one worker"
    assert all(w.frames[0]["type"] == "snapshot" for w in watchers)

    placed = requests.post(
        f"{served.base}/api/orders/",
        json=order_body(),
        headers={"Authorization": f"Token {served.token}"},
        timeout=30,
    )
    assert placed.status_code == 202, placed.text
    saga_id = placed.json()["saga_id"]

    deadline = time.monotonic() + 60
    while not all(w.saw(saga_id, "completed") for w in watchers):
        assert time.monotonic() < deadline, "a dashboard client did not see the saga complete"
        time.sleep(0.2)
    for watcher in watchers:
        watcher.socket.close()


def test_web_processes_pool_their_connections_and_the_forked_workers_do_not(
    served: Served,
) -> None:
    headers = {"Authorization": f"Token {served.token}"}

    def burst() -> None:  # more requests at once than the pools hold connections
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(24) as pool:
            for answer in pool.map(
                lambda _: requests.get(f"{served.base}/api/products/", headers=headers, timeout=30),
                range(96),
            ):
                assert answer.status_code == 200

    burst()
    counts = served.connections()
    print("connections by application name (all, listening):", counts)

    # Kept open between requests (without a pool and with CONN_MAX_AGE=0, none would be),
    # at least min_size=2 per process, never more than the pools' size.
    web, _ = counts["sagas:web"]
    assert 2 * WEB_CONCURRENCY <= web <= POOL_MAX * WEB_CONCURRENCY
    # A saga worker: one connection, and no LISTEN (it polls: sagas.worker).
    assert counts["sagas:saga_worker"] == (SAGA_WORKERS, 0)
    # A cluster: one connection per process (the qcluster watchdog, the sentinel, the monitor,
    # each worker) and the pusher's two, one of them listening. A pool in any of those forked
    # processes would open min_size=2 at once.
    for queue in QUEUES:
        total, listening = counts[f"sagas:qcluster:{queue}"]
        assert listening == 1
        assert total <= Q_WORKERS + 5, (queue, total)


def test_sigterm_to_the_process_group_stops_every_process_without_a_kill(served: Served) -> None:
    assert len(served.processes()) > 1 + WEB_CONCURRENCY + SAGA_WORKERS + len(QUEUES)

    os.killpg(served.make.pid, signal.SIGTERM)  # what systemd, Ctrl-C or a container stop send

    wait_until(lambda: not served.processes(), 10, "processes were left", served.log)
    output = served.log.read_text()
    # honcho kills what is still running 5 s after its SIGTERM, and says so: it had to kill
    # nothing. (Its clock, not ours: on a loaded machine the exits take a while to be seen.)
    assert "SIGKILL" not in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert "Warning:" not in output, output[-4000:]
    wait_until(
        lambda: (
            not served.sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'sagas:%'"
            )
        ),
        5,
        "database connections were left",
        served.log,
    )
