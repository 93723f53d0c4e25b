"""Behind PgBouncer in transaction mode (PGBOUNCER_TRANSACTION_MODE=1, the LISTEN connections
sent around it by DATABASE_LISTEN_URL): the whole system places and finishes orders correctly
while the work of every process shares a few server connections (docs/deployment.md,
PgBouncer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from lab.system import free_port
from payments import testcards
from sagas.broker import channel
from tests.functional.harness import RunningSystem, postgres_database, running_system

pytestmark = pytest.mark.processes

POOL_SIZE = 4  # server connections PgBouncer keeps for the database


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of `database_url`'s server; yields the URL of
    the same database through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.access(binary, os.X_OK):
        why = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("REQUIRE_PGBOUNCER"):
            pytest.fail(why)
        pytest.skip(why)
    server = urlsplit(database_url)
    port = free_port()
    # PgBouncer will not run as root: it runs as `postgres`, which must read its files.
    home = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    home.chmod(0o755)
    (home / "users.txt").write_text(f'"{server.username}" ""\n')
    (home / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.hostname} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nreserve_pool_size = 0\n"
        "max_client_conn = 1000\nserver_reset_query =\n"
        f"logfile = {home / 'pgbouncer.log'}\n"
    )
    user = [] if os.geteuid() else ["-u", "postgres"]
    if user:
        shutil.chown(home, "postgres")
    proc = subprocess.Popen([binary, "--quiet", *user, str(home / "pgbouncer.ini")])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", str(server.username)],
            check=False,
        ).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.1)
        yield server._replace(netloc=f"{server.username}@127.0.0.1:{port}").geturl()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    tmp = tmp_path_factory.mktemp("pgbouncer")
    with postgres_database() as databases, pgbouncer(databases["DATABASE_URL"]) as pooled:
        direct = databases["DATABASE_URL"]
        env = {"PGBOUNCER_TRANSACTION_MODE": "1", "DATABASE_LISTEN_URL": direct}
        with running_system(tmp, {**databases, "DATABASE_URL": pooled}, **env) as running:
            yield running


def server_connections(system: RunningSystem) -> tuple[int, int]:
    """The database's server connections other than this query's: (all, listening)."""
    [(total, listening)] = system.sql(
        "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN %%') FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(total), int(listening)


def test_orders_finish_correctly_through_a_transaction_mode_pool(system: RunningSystem) -> None:
    placed = [system.user.order() for _ in range(8)]
    placed.append(system.user.order(card=testcards.DECLINED))
    peak = (0, 0)
    outcomes = []
    for order in placed:
        outcomes.append(system.user.wait(order["order_id"])["status"])
        peak = max(peak, server_connections(system))

    assert outcomes == ["completed"] * 8 + ["failed"]
    report = system.wait_quiet()
    assert report["violations"] == [], report
    # 2 saga workers, 5 clusters (4 service queues and housekeeping) of 6 processes and the web
    # server would hold about 35 server connections on their own; here their work shares the
    # pool, and only the listeners (the pusher of each service queue's cluster) have their own:
    # the saga workers and the housekeeping cluster poll.
    service_clusters = sum(
        proc.name.startswith("q_") and proc.name != "q_housekeeping" for proc in system.system.procs
    )
    total, listening = peak
    assert service_clusters == 4
    assert listening == service_clusters, peak
    assert total - listening <= POOL_SIZE, peak


def test_a_checkout_through_the_pool_notifies_the_listeners_beside_it(
    system: RunningSystem,
) -> None:
    """NOTIFY is sent in the transaction that commits through the pool (the checkout queues the
    saga's first commands); the pushers' LISTEN connections, which go around the pool (counted
    above), hear it."""
    with psycopg.connect(system.system.env["DATABASE_LISTEN_URL"], autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel("orders")}"')

        system.user.order()

        heard = list(listener.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in heard] == [channel("orders")]
