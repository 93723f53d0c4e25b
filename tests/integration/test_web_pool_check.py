"""The web pool's connection check (sagaproject/postgresql): a healthy idle connection passes
without a query reaching the server; one the server has closed is closed and refused, and the
pool hands out a fresh one instead."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from sagaproject.postgresql.base import DatabaseWrapper, _readable, check_idle_connection

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql", "pool tests need PostgreSQL (set DATABASE_URL)"


def connect() -> psycopg.Connection[Any]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def last_query(pid: int) -> str:
    with connect() as observer:
        row = observer.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
    assert row is not None
    return str(row[0])


def terminate(pid: int) -> None:
    with connect() as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_healthy_idle_connection_passes_and_nothing_is_sent() -> None:
    with connect() as conn:
        conn.execute("SELECT 42 AS marker")
        check_idle_connection(conn)
        check_idle_connection(conn)
        assert last_query(conn.info.backend_pid) == "SELECT 42 AS marker"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_connection_the_server_closed_is_closed_and_refused() -> None:
    conn = connect()
    terminate(conn.info.backend_pid)
    deadline = time.monotonic() + 5
    refused = None
    while refused is None and time.monotonic() < deadline:  # until the goodbye has arrived
        try:
            check_idle_connection(conn)
        except psycopg.OperationalError as error:
            refused = error
        else:
            time.sleep(0.02)
    assert refused is not None
    assert conn.closed


def test_a_connection_inside_a_transaction_is_refused() -> None:
    conn = connect()
    conn.execute("BEGIN")
    with pytest.raises(psycopg.OperationalError):
        check_idle_connection(conn)
    assert conn.closed


def test_the_web_engines_pool_uses_it_and_replaces_a_closed_connection() -> None:
    settings = {
        **connection.settings_dict,
        "ENGINE": "sagaproject.postgresql",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            **connection.settings_dict["OPTIONS"],
            "pool": {"min_size": 1, "max_size": 1, "timeout": 5},
        },
    }
    wrapper = DatabaseWrapper(settings, alias="web_pool_check")
    pool: ConnectionPool[Any] = wrapper.pool
    try:
        assert pool._check is check_idle_connection
        pool.open(wait=True)
        with pool.connection() as conn:
            first = conn.info.backend_pid
        terminate(first)
        time.sleep(0.2)  # the goodbye reaches the idle socket
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != first
    finally:
        wrapper.close_pool()


def test_a_connection_whose_socket_number_is_past_1024_is_checked_too() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.fail(f"this process may open only {hard} files: the test needs 1100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    try:
        with connect() as conn:
            high = os.dup2(conn.pgconn.socket, 1050)  # the same socket under a number past 1024
            try:
                assert _readable(high) is False
                terminate(conn.info.backend_pid)
                deadline = time.monotonic() + 5
                while not _readable(high) and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert _readable(high) is True
            finally:
                os.close(high)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
