"""Builders for functional tests: a whole system of real processes on its own database, and a
small API client that drives it over HTTP like a user would."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

from lab.system import SERVICE_DATABASE_VARIABLES, System, local_env, scratch_database
from payments import testcards
from storefront.samples import order_body

# Short timings so that retries and deadlines play out within a test.
FAST = {
    "Q_TIMEOUT": "3",
    "Q_RETRY": "8",
    "SAGA_STEP_DEADLINE_SECONDS": "10",
    "SAGA_LEASE_SECONDS": "5",
    "SAGA_RETRY_INITIAL_SECONDS": "0.05",
    "SAGA_RETRY_MAX_SECONDS": "0.5",
    "SAGA_MAX_ATTEMPTS": "4",
}


Databases = dict[str, str]  # environment entries: DATABASE_URL and each <SERVICE>_DATABASE_URL


@contextmanager
def postgres_database() -> Iterator[Databases]:
    """Fresh, empty PostgreSQL databases for one system, beside DATABASE_URL's, dropped after:
    one for default and, when this process has a database per service (make test-multidb),
    one for each service too."""
    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith("postgres"), "functional tests need DATABASE_URL=postgres://..."
    with scratch_database(url, Path("/nonexistent"), "saga_ft") as env:
        yield env


class Api:
    """A user of the REST API."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"

    def order(
        self, sku: str = "MUG-002", quantity: int = 1, card: str = testcards.OK, country: str = "FR"
    ) -> dict[str, Any]:
        body = order_body(sku=sku, quantity=quantity, card=card, country=country)
        answer = self.http.post(f"{self.base}/api/orders/", json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        return dict(answer.json())

    def wait(self, order_id: str, seconds: int = 30) -> dict[str, Any]:
        answer = self.http.get(
            f"{self.base}/api/orders/{order_id}/", params={"wait": seconds}, timeout=seconds + 10
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def create_product(self, sku: str, stock: int, price: str = "10.00") -> None:
        answer = self.http.post(
            f"{self.base}/api/products/",
            timeout=30,
            json={"sku": sku, "name": sku, "price": price, "stock": stock},
        )
        assert answer.status_code == 201, answer.text


class RunningSystem:
    def __init__(self, system: System, tokens: dict[str, str]) -> None:
        self.system = system
        self.user = Api(system.url, tokens["demo"])
        self.staff = Api(system.url, tokens["admin"])

    def audit(self) -> dict[str, Any]:
        """The cross-service invariants (manage.py saga_audit), as a dict."""
        out = self.system.manage("saga_audit", "--json", check=False)
        return dict(json.loads(out))

    def wait_quiet(self, timeout: float = 60) -> dict[str, Any]:
        """The audit once no saga is in flight and no message waits (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.audit()
            quiet = (
                not report["unfinished"]
                and not report["queued_tasks"]
                and not report["unread_replies"]
            )
            if quiet or time.monotonic() > deadline:
                return report
            time.sleep(0.5)

    def sql(self, query: str, *params: Any, service: str = "") -> list[tuple[Any, ...]]:
        """Run `query` on the system's database, or on `service`'s own when it has one."""
        url = self.system.env.get(SERVICE_DATABASE_VARIABLES[service], "") if service else ""
        with psycopg.connect(url or self.system.env["DATABASE_URL"]) as conn:
            return list(conn.execute(query, params).fetchall())


@contextmanager
def running_system(tmp: Path, databases: Databases | None, **env: str) -> Iterator[RunningSystem]:
    """Migrate, seed and start the whole system; stop it (SIGTERM, then SIGKILL) afterwards.
    `databases` from postgres_database(); None: the SQLite default, one file for everything."""
    environ = {**local_env(tmp, "functional-tests-" + "x" * 50), **FAST, **env}
    environ.update(databases or {"DATABASE_URL": "", "SQLITE_PATH": str(tmp / "db.sqlite3")})
    system = System(env=environ, log_dir=tmp / "logs", saga_workers=2, q_workers=2)
    system.migrate()
    seeded = system.manage("seed_demo")
    tokens = dict(re.findall(r"user (\w+): API token (\w+)", seeded))
    system.start()
    try:
        yield RunningSystem(system, tokens)
    finally:
        system.stop()


def staff_session(base: str) -> str:
    """Sign in through the admin's login form; returns the session cookie's value. (The cookies
    are Secure with DEBUG off, so they are carried by hand over plain HTTP.)"""
    form = requests.get(f"{base}/admin/login/", timeout=10)
    token = form.cookies["csrftoken"]
    answer = requests.post(
        f"{base}/admin/login/",
        data={"csrfmiddlewaretoken": token, "username": "admin", "password": "admin"},
        headers={"Cookie": f"csrftoken={token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text[:500]
    return str(answer.cookies["sessionid"])


class Watcher(threading.Thread):
    """A dashboard client: collects every frame it is sent."""

    def __init__(self, base: str) -> None:
        import websocket

        super().__init__(daemon=True)
        host = urlsplit(base).netloc
        self.socket = websocket.create_connection(
            f"ws://{host}/ws/dashboard/",
            origin=base,
            cookie=f"sessionid={staff_session(base)}",
            timeout=30,
        )
        self.frames: list[dict[str, Any]] = [json.loads(self.socket.recv())]
        self.start()

    def run(self) -> None:
        import websocket

        try:
            while data := self.socket.recv():
                self.frames.append(json.loads(data))
        except (websocket.WebSocketException, OSError):
            pass  # closed

    def saw(self, saga_id: str, status: str) -> bool:
        return any(
            s["id"] == saga_id and s["status"] == status
            for frame in list(self.frames)
            for s in frame.get("sagas", [])
        )

    def event_ids(self) -> list[int]:
        return [e[0] for frame in self.frames[1:] for e in frame["events"]]
