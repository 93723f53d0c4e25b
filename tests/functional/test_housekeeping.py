"""Purging under load, with the real processes: orders flow while `saga purge` runs over and over
and the housekeeping cluster runs the purge schedule; only old finished sagas and their rows go,
every saga in flight finishes, and the audit finds nothing wrong with what remains."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from payments import testcards
from storefront.samples import order_body
from tests.functional.harness import RunningSystem, postgres_database, running_system

pytestmark = pytest.mark.processes

# Every table that holds a saga's own rows, by the column naming the saga.
SAGA_ROWS = {
    "sagas_saga": "id",
    "sagas_sagaevent": "saga_id",
    "sagas_sagareply": "saga_id",
    "storefront_idempotencykey": "saga_id",
    "orders_ordersteprecord": "saga_id",
    "payments_paymentsteprecord": "saga_id",
    "inventory_inventorysteprecord": "saga_id",
    "shipping_shippingsteprecord": "saga_id",
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp: Path = tmp_path_factory.mktemp("housekeeping")
    with postgres_database() as url, running_system(tmp, url) as running:
        yield running


def execute(system: RunningSystem, query: str, *params: Any) -> int:
    with psycopg.connect(system.system.env["DATABASE_URL"]) as conn:
        return conn.execute(query, params).rowcount


def place(system: RunningSystem, card: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    answer = system.user.http.post(
        f"{system.user.base}/api/orders/",
        json=order_body(quantity=1, card=card),
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def finished(system: RunningSystem, placed: dict[str, Any]) -> str:
    return str(system.user.wait(placed["order_id"], seconds=30)["status"])


def orders(system: RunningSystem, n: int) -> dict[str, str]:
    """n finished orders (every fourth declined, every other one with an Idempotency-Key):
    saga id -> final status."""
    placed = [
        place(
            system,
            testcards.DECLINED if i % 4 == 3 else testcards.OK,
            key=str(uuid.uuid4()) if i % 2 else None,
        )
        for i in range(n)
    ]
    return {p["saga_id"]: finished(system, p) for p in placed}


def make_old(system: RunningSystem, saga_ids: list[str]) -> None:
    """As if they had finished 40 days ago: the sagas and the charges they made."""
    execute(
        system,
        "UPDATE sagas_saga SET created_at = created_at - interval '40 days', "
        "finished_at = finished_at - interval '40 days' WHERE id::text = ANY(%s)",
        saga_ids,
    )
    execute(
        system,
        "UPDATE payments_charge SET created_at = created_at - interval '40 days' "
        "WHERE saga_id::text = ANY(%s)",
        saga_ids,
    )


def rows_left(system: RunningSystem, saga_ids: list[str]) -> dict[str, int]:
    return {
        table: system.sql(f"SELECT count(*) FROM {table} WHERE {column}::text = ANY(%s)", saga_ids)[
            0
        ][0]
        for table, column in SAGA_ROWS.items()
    }


def test_purging_under_load_takes_only_old_finished_sagas_and_keeps_the_invariants(
    system: RunningSystem,
) -> None:
    old_now = orders(system, 12)  # purged under load, by the command and the schedule
    old_later = orders(system, 8)  # purged by the schedule alone, afterwards
    old = [*old_now, *old_later]
    assert set(old_now.values()) | set(old_later.values()) == {"completed", "failed"}
    before = rows_left(system, old)
    # Every kind of row exists before the purge (replies are consumed as they are read).
    assert all(n for table, n in before.items() if table != "sagas_sagareply"), before
    make_old(system, list(old_now))

    stop = threading.Event()
    purges: list[str] = []

    def purge_again_and_again() -> None:
        while not stop.is_set():
            purges.append(system.system.manage("saga", "purge", "--batch-size", "5"))

    def age_the_sagas_in_flight() -> None:
        # In-flight sagas look as old as the purged ones: only their status protects them.
        # Their rows are locked in id order, as the workers lock them, or this could deadlock.
        while not stop.is_set():
            execute(
                system,
                "UPDATE sagas_saga SET created_at = now() - interval '41 days' WHERE id IN ("
                "SELECT id FROM sagas_saga WHERE status NOT IN ('completed', 'failed') "
                "ORDER BY id FOR NO KEY UPDATE)",
            )
            time.sleep(0.2)

    helpers = [
        threading.Thread(target=purge_again_and_again),
        threading.Thread(target=age_the_sagas_in_flight),
    ]
    for helper in helpers:
        helper.start()
    try:
        # Four clients order until each has 8 orders and the purge has run three times.
        deadline = time.monotonic() + 300

        def keep_ordering(_: int) -> dict[str, str]:
            done: dict[str, str] = {}
            while len(done) < 8 or (len(purges) < 3 and time.monotonic() < deadline):
                done.update(orders(system, 1))
            return done

        new: dict[str, str] = {}
        with ThreadPoolExecutor(4) as pool:
            for placed in pool.map(keep_ordering, range(4)):
                new.update(placed)
    finally:
        stop.set()
        for helper in helpers:
            helper.join(60)

    assert len(purges) >= 3, purges
    assert any(re.search(r"^[1-9]\d* finished saga", p, re.M) for p in purges), purges
    assert set(new.values()) == {"completed"} and len(new) >= 32, new
    assert {str(s) for (s,) in system.sql("SELECT id FROM sagas_saga")} == {*new, *old_later}
    assert not any(rows_left(system, list(old_now)).values())

    # The schedule, on the housekeeping cluster: due now, it purges the rest within a minute.
    make_old(system, list(old_later))
    execute(system, "UPDATE django_q_schedule SET next_run = now() WHERE cluster = 'housekeeping'")
    deadline = time.monotonic() + 90
    while any(rows_left(system, list(old_later)).values()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not any(rows_left(system, old).values()), rows_left(system, old)
    failed = system.sql("SELECT name, func, result FROM django_q_task WHERE NOT success")
    assert failed == [], failed

    report = system.wait_quiet()
    assert report["violations"] == [], report["violations"]
    assert report["unfinished"] == 0
    completed_old = [s for s, status in old_now.items() if status == "completed"]
    completed_old += [s for s, status in old_later.items() if status == "completed"]
    assert report["purged_sagas_charged"] == len(completed_old)
    # The services' business rows stay: they are theirs, not the engine's.
    charges = system.sql("SELECT count(*) FROM payments_charge WHERE saga_id::text = ANY(%s)", old)
    assert charges[0][0] == len(completed_old)
