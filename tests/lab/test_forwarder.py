"""The forwarder that stands for a namespaced host's network path: PostgreSQL's protocol goes
through it both ways, large results included, and a bad address is refused by name."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from lab.system import free_port

pytestmark = pytest.mark.postgres


@pytest.fixture
def forwarded_url() -> Iterator[str]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")
    url = urlsplit(settings.DATABASE_URL)
    port = free_port()
    forwarder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.forwarder",
            f"127.0.0.1:{port}",
            f"{url.hostname}:{url.port or 5432}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=settings.BASE_DIR,
    )
    try:
        assert forwarder.stdout is not None
        assert forwarder.stdout.readline().startswith(f"forwarding 127.0.0.1:{port} to ")
        yield url._replace(netloc=f"{url.username}@127.0.0.1:{port}", path="/postgres").geturl()
    finally:
        forwarder.terminate()
        assert forwarder.wait(10) == 0


def test_queries_and_a_large_result_cross_the_forwarder(forwarded_url: str) -> None:
    with psycopg.connect(forwarded_url) as conn:
        ((server_port,),) = conn.execute("SELECT current_setting('port')::int").fetchall()
        ((text,),) = conn.execute("SELECT repeat('x', 3000000)").fetchall()
    assert server_port == (urlsplit(settings.DATABASE_URL).port or 5432)
    assert len(text) == 3_000_000


def test_many_connections_at_once_each_get_their_own_session(forwarded_url: str) -> None:
    conns = [psycopg.connect(forwarded_url) for _ in range(5)]
    try:
        pids = {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in conns}  # type: ignore[index]
    finally:
        for conn in conns:
            conn.close()
    assert len(pids) == 5


def test_a_bad_address_is_refused_by_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab.forwarder", "nowhere", "127.0.0.1:5432"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=settings.BASE_DIR,
        check=False,
    )
    assert done.returncode == 2
    assert "expected HOST:PORT, not 'nowhere'" in done.stderr
