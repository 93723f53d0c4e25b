"""With REDIS_URL, two web servers behind one database: a dashboard client on either sees every
change, each once, while one tailer for the whole site reads the log."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from lab.system import System, local_env
from sagas.dashboard.feed import Position
from tests.functional.harness import FAST, Watcher, postgres_database, staff_session

pytestmark = pytest.mark.processes

REDIS_URL = os.environ.get("DASHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
    " --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def redis_unreachable() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {REDIS_URL} ({exc}); start it: {START_REDIS}"
    return ""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    why = redis_unreachable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("dashboard_redis")
    with postgres_database() as databases:
        env = {**local_env(tmp, "redis-test-" + "x" * 50), **FAST}
        env.update(databases, REDIS_URL=REDIS_URL)
        # Two web servers, nothing else: the changes come from other processes below.
        system = System(env=env, log_dir=tmp / "logs", saga_workers=0, queues=(), web_servers=2)
        system.migrate()
        system.manage("seed_demo")
        system.start()
        try:
            yield system
        finally:
            system.stop()


def events_after(database_url: str, position: str) -> list[int]:
    after = Position.parse(position)
    assert after is not None
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT xid, id FROM sagas_sagaevent ORDER BY xid, id").fetchall()
    return [event_id for xid, event_id in rows if Position(xid, event_id) > after]


def test_a_client_on_either_web_server_sees_every_change_once(system: System) -> None:
    first, second = (Watcher(url) for url in system.urls)
    assert first.frames[0]["type"] == second.frames[0]["type"] == "snapshot"
    token = system.manage("drf_create_token", "demo").split()[2]
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    sagas = []
    for base in system.urls:  # an order through each server
        answer = api.post(f"{base}/api/orders/", json=order_body(), timeout=30)
        assert answer.status_code == 202, answer.text
        sagas.append(answer.json()["saga_id"])

    for saga_id in sagas:  # changed by another process: the operators' command
        system.manage("saga", "compensate", saga_id)

    deadline = time.monotonic() + 30
    while not all(w.saw(s, "compensating") for w in (first, second) for s in sagas):
        assert time.monotonic() < deadline, "a client missed a change"
        time.sleep(0.1)
    time.sleep(1.0)  # anything that would come twice has come by now
    database = system.env["DATABASE_URL"]
    for watcher in (first, second):
        assert watcher.event_ids() == events_after(database, watcher.frames[0]["position"])
        watcher.socket.close()
    import redis

    leases = redis.Redis.from_url(REDIS_URL).keys("sagas:dashboard:*:tailer")
    assert len(leases) <= 1  # one tailer for the site (released when its clients left)


def order_body() -> dict[str, Any]:
    return {
        "items": [{"sku": "MUG-002", "quantity": 1}],
        "payment": {
            "card_number": "4242424242424242",
            "exp_month": 12,
            "exp_year": 2035,
            "cvc": "123",
        },
        "shipping_address": {
            "name": "Ada",
            "line1": "1 rue de la Paix",
            "city": "Paris",
            "postal_code": "75002",
            "country": "FR",
        },
    }


def test_a_real_server_refuses_other_websocket_paths_and_strangers_at_the_handshake(
    system: System,
) -> None:
    import websocket

    base = system.urls[0]
    host = urlsplit(base).netloc
    for path, cookie in (
        ("/ws/other/", f"sessionid={staff_session(base)}"),
        ("/ws/dashboard/", ""),
    ):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(
                f"ws://{host}{path}", origin=base, cookie=cookie, timeout=10
            )
        assert refused.value.status_code == 403


def test_the_web_servers_logged_no_error(system: System) -> None:
    for name in ("web", "web.2"):
        log = (Path(system.log_dir) / f"{name}.log").read_text()
        assert '"level": "ERROR"' not in log, log[-2000:]
