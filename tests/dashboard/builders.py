"""Builders for dashboard tests: sagas written through the engine's own event path, staff and
other users with session cookies, raw transactions that commit events out of order, and another
process that changes a saga."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from lab.system import databases_of_this_process
from sagas import services
from sagas.models import Saga

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
ORIGIN = (b"origin", b"http://testserver")


def started_saga(order_id: str = "") -> Saga:
    """An order saga as the API starts it: saga_started and the first steps sent."""
    order_id = order_id or str(uuid.uuid4())
    return services.start_saga(
        saga_type="order", data={"order_id": order_id}, correlation_id=order_id
    )


def user(*, staff: bool) -> User:
    name = f"{'staff' if staff else 'user'}-{uuid.uuid4().hex[:8]}"
    return User.objects.create_user(username=name, password=None, is_staff=staff)


def session_headers(who: User | None) -> list[tuple[bytes, bytes]]:
    """Handshake headers of a browser on this site, signed in as `who` (None: anonymous)."""
    if who is None:
        return [ORIGIN]
    client = Client()
    client.force_login(who)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [ORIGIN, (b"cookie", cookie.encode())]


def in_another_process(*args: str) -> str:
    """Run a management command in a separate process against the test databases."""
    env = {k: v for k, v in os.environ.items() if k != "SAGA_SERVER"}  # not the ASGI server
    env["PYTHONUNBUFFERED"] = "1"
    env.update(databases_of_this_process())
    done = subprocess.run(
        [sys.executable, MANAGE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def raw_connection(dbname: str = "") -> psycopg.Connection[Any]:
    """A connection of its own to the test database (PostgreSQL), outside Django's, or to
    another database of the same server."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=dbname or db["NAME"],
        password=db["PASSWORD"] or None,
    )


def append_event(conn: psycopg.Connection[Any], saga_id: uuid.UUID, kind: str) -> int:
    """Append an event in `conn`'s open transaction (not committed); returns its id."""
    row = conn.execute(
        "INSERT INTO sagas_sagaevent (saga_id, at, kind, step, attempt, detail)"
        " VALUES (%s, now(), %s, '', 0, '{}') RETURNING id",
        [saga_id, kind],
    ).fetchone()
    assert row is not None
    return int(row[0])
