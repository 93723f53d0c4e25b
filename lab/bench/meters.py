"""What a run costs: CPU time by role, read from /proc, and PostgreSQL's transaction and WAL
counters of the bench database, read by the measuring process, which counts its own statements
so that they can be left out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection

PROC = Path("/proc")
# PostgreSQL 15 sends a backend's statistics to shared memory at the end of a transaction at most
# once a second; a backend that then goes idle sends what is pending only after 10 s
# (PGSTAT_IDLE_INTERVAL), or when it exits. A run waits this long after its warm-up.
STATS_IDLE_FLUSH_SECONDS = 10.5

Pids = Callable[[], Iterable[int]]


def cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of `pid` in clock ticks (0 if it is gone).

    The children's part is what the process reaped: a worker that exits during a run and is
    waited for by a process that is measured too keeps counting, in its parent.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 is state
    return sum(int(value) for value in fields[11:15])  # fields 14 to 17


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process of this host: the postmaster, the background processes
    and the backends of every database, the bench's and anybody else's."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def own_backend() -> int | None:
    """The pid of the PostgreSQL backend serving this process's main connection (the poller's)."""
    if not on_postgresql():
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def cpu_available() -> bool:
    return (PROC / "self" / "stat").exists()


def sample_cpu(roles: Mapping[str, Pids]) -> dict[str, int]:
    """Clock ticks used so far by each role's processes, listed afresh at every sample."""
    return {role: sum(cpu_ticks(pid) for pid in set(pids())) for role, pids in roles.items()}


def cpu_ms(start: Mapping[str, int], end: Mapping[str, int]) -> dict[str, float]:
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    return {role: (end[role] - start[role]) * tick_ms for role in start}


class OwnStatements:
    """Counts the statements the measuring process runs on its connection (Django's, in the
    main thread). It runs them in autocommit, so each one is a transaction of its own, which
    `xacts_per_saga` leaves out."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        with connection.execute_wrapper(self._count):
            yield

    def _count(self, execute: Callable[..., Any], *args: Any) -> Any:
        self.count += 1
        return execute(*args)


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def transactions(own: OwnStatements) -> tuple[int, int]:
    """(commits + rollbacks of the bench database as flushed so far, own statements so far).

    This process's own pending counts are flushed first, so every statement it ran before the
    read is in the figure; other backends' may lag (STATS_IDLE_FLUSH_SECONDS).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        mine = own.count
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0]), mine


def wal_position() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return str(cursor.fetchone()[0])


def wal_bytes_between(start: str, end: str) -> int:
    """WAL written by the whole server from `start` to `end`: every database's writes count."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [end, start])
        return int(cursor.fetchone()[0])


# The WAL records between two positions by what they wrote: a table (its indexes counted with
# it), another database, or, for a record that names no relation, its resource manager
# (`Transaction`: the commits).
WAL_BY_TABLE = r"""
WITH records AS (
    SELECT record_length AS bytes, resource_manager,
        regexp_match(block_ref, 'rel \d+/(\d+)/(\d+)') AS rel
    FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
), tables AS (
    SELECT c.relfilenode, coalesce(owner.relname, c.relname) AS name
    FROM pg_class c
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_class owner ON owner.oid = i.indrelid
    WHERE c.relfilenode <> 0
)
SELECT CASE
        WHEN r.rel IS NULL THEN r.resource_manager
        WHEN r.rel[1]::oid <> (SELECT oid FROM pg_database WHERE datname = current_database())
            THEN 'other databases'
        ELSE coalesce(t.name, 'system catalogs') END,
    sum(r.bytes)
FROM records r LEFT JOIN tables t ON r.rel IS NOT NULL AND t.relfilenode = r.rel[2]::oid
GROUP BY 1 ORDER BY 2 DESC"""


def wal_by_table(start: str, end: str) -> dict[str, int] | None:
    """The WAL from `start` to `end` (or to what is flushed, if less) in bytes of records by what
    they wrote (WAL_BY_TABLE), largest first; None where pg_walinspect cannot be used (PostgreSQL
    before 15, or a role that may not create the extension or read the WAL)."""
    try:  # in autocommit, as every statement of this process (OwnStatements)
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            cursor.execute("SELECT least(%s::pg_lsn, pg_current_wal_flush_lsn())::text", [end])
            cursor.execute(WAL_BY_TABLE, [start, cursor.fetchone()[0]])
            return {str(what): int(size) for what, size in cursor.fetchall()}
    except DatabaseError:
        return None


def wait_for_other_backends_to_leave(timeout: float = 30) -> None:
    """Return once no other session is connected to the bench database (its processes have
    stopped), and a moment more: a backend leaves pg_stat_activity just before it flushes its
    statistics on exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                time.sleep(0.5)
                return
        time.sleep(0.2)
    raise RuntimeError("sessions are still connected to the bench database after the stop")


class PhaseMeters:
    """The meters of one measured phase: CPU by role and WAL from its start to the end of the
    last saga, and the system's transactions from its start to after the system stopped."""

    def __init__(self, roles: Mapping[str, Pids]) -> None:
        self.roles = roles
        self.own = OwnStatements()
        self.postgresql = on_postgresql()
        self.cpu = cpu_available()
        self._cpu_start: dict[str, int] = {}
        self._xacts_start = (0, 0)
        self._wal_start = ""
        self.cpu_ms: dict[str, float] | None = None
        self.wal_bytes: int | None = None
        self.wal_by_table: dict[str, int] | None = None
        self.xacts: int | None = None

    @contextmanager
    def phase(self) -> Iterator[None]:
        """Count this process's statements from the first reading to the last."""
        with self.own.counting():
            self._start()
            yield

    def _start(self) -> None:
        if self.cpu:
            self._cpu_start = sample_cpu(self.roles)
        if self.postgresql:
            self._xacts_start = transactions(self.own)
            self._wal_start = wal_position()

    def last_saga_ended(self) -> None:
        if self.cpu:
            self.cpu_ms = cpu_ms(self._cpu_start, sample_cpu(self.roles))
        if self.postgresql:
            end = wal_position()
            self.wal_bytes = wal_bytes_between(self._wal_start, end)
            self.wal_by_table = wal_by_table(self._wal_start, end)

    def system_stopped(self) -> None:
        """Read the transactions once every backend of the system has exited (and flushed)."""
        if self.postgresql:
            wait_for_other_backends_to_leave()
            end = transactions(self.own)
            # Less this process's own statements (its polls and readings) in between.
            self.xacts = (end[0] - self._xacts_start[0]) - (end[1] - self._xacts_start[1])
