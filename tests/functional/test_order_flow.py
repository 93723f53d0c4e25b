"""End to end on PostgreSQL: real django-q2 clusters, two saga workers and the ASGI server,
driven through the REST API; every effect checked in the services' own tables."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from lab.system import descendants
from payments import testcards
from tests.functional.harness import RunningSystem

pytestmark = pytest.mark.processes


def effects(system: RunningSystem, saga_id: str) -> dict[str, Any]:
    """What each service holds for one saga, read from its own tables (in its own database
    when it has one: make test-multidb)."""

    def one(service: str, query: str) -> list[tuple[Any, ...]]:
        return system.sql(query, saga_id, service=service)

    charged = one(
        "payments", "SELECT coalesce(sum(amount), 0) FROM payments_charge WHERE saga_id = %s"
    )
    refunded = one(
        "payments",
        "SELECT coalesce(sum(r.amount), 0) FROM payments_refund r "
        "JOIN payments_charge c ON c.id = r.charge_id WHERE c.saga_id = %s",
    )
    return {
        "charges": one("payments", "SELECT count(*) FROM payments_charge WHERE saga_id = %s")[0][0],
        "net_charge": charged[0][0] - refunded[0][0],
        "reservation": [
            r[0]
            for r in one("inventory", "SELECT status FROM inventory_reservation WHERE saga_id = %s")
        ],
        "shipment": [
            r[0] for r in one("shipping", "SELECT status FROM shipping_shipment WHERE saga_id = %s")
        ],
        "order": [
            r[0] for r in one("orders", "SELECT status FROM orders_order WHERE saga_id = %s")
        ],
    }


def test_a_good_order_completes_with_one_charge_one_reservation_and_one_shipment(
    pg_system: RunningSystem,
) -> None:
    placed = pg_system.user.order(sku="MUG-002", quantity=2)
    assert placed["status"] == "pending"
    order = pg_system.user.wait(placed["order_id"])
    assert order["status"] == "completed", order
    assert order["reason"] is None
    assert [s["status"] for s in order["steps"]] == ["succeeded"] * 5
    assert order["total"] == "25.00"
    assert effects(pg_system, placed["saga_id"]) == {
        "charges": 1,
        "net_charge": Decimal("25.00"),
        "reservation": ["reserved"],
        "shipment": ["scheduled"],
        "order": ["approved"],
    }


@pytest.mark.parametrize(
    ("card", "sku", "country", "reason"),
    [
        (testcards.DECLINED, "MUG-002", "FR", "payment_declined"),
        (testcards.INSUFFICIENT_FUNDS, "MUG-002", "FR", "insufficient_funds"),
        (testcards.OK, "RARE-005", "FR", "out_of_stock"),
        (testcards.OK, "MUG-002", "AQ", "shipping_unavailable"),
        (testcards.PROCESSING_ERROR, "MUG-002", "FR", "service_unavailable"),
    ],
)
def test_a_failing_order_ends_failed_with_its_reason_and_every_effect_undone(
    pg_system: RunningSystem, card: str, sku: str, country: str, reason: str
) -> None:
    quantity = 50 if reason == "out_of_stock" else 1  # RARE-005 has 5 units
    placed = pg_system.user.order(sku=sku, quantity=quantity, card=card, country=country)
    order = pg_system.user.wait(placed["order_id"])
    assert order["status"] == "failed", order
    assert order["reason"]["code"] == reason
    found = effects(pg_system, placed["saga_id"])
    assert found["net_charge"] == 0
    assert "reserved" not in found["reservation"]
    assert "scheduled" not in found["shipment"]
    assert found["order"] in ([], ["cancelled"])
    steps = {s["name"]: s for s in order["steps"]}
    if reason == "service_unavailable":
        assert steps["charge_payment"]["attempts"] == 4  # SAGA_MAX_ATTEMPTS in the harness
    if reason == "shipping_unavailable":
        # The pivot was refused, so the three steps before it were compensated.
        assert [
            steps[n]["status"] for n in ("create_order", "reserve_stock", "charge_payment")
        ] == ["compensated"] * 3


def test_fifty_concurrent_orders_for_ten_units_sell_exactly_ten(pg_system: RunningSystem) -> None:
    pg_system.staff.create_product("SCARCE-10", stock=10)
    with ThreadPoolExecutor(max_workers=10) as pool:
        placed = list(pool.map(lambda _: pg_system.user.order(sku="SCARCE-10"), range(50)))
        orders = list(pool.map(lambda p: pg_system.user.wait(p["order_id"]), placed))
    outcomes = sorted((o["status"], (o["reason"] or {}).get("code")) for o in orders)
    assert outcomes.count(("completed", None)) == 10
    assert outcomes.count(("failed", "out_of_stock")) == 40
    assert pg_system.sql(
        "SELECT available FROM inventory_product WHERE sku = 'SCARCE-10'", service="inventory"
    ) == [(0,)]
    for order in orders:
        if order["status"] == "failed":
            assert effects(pg_system, order["saga_id"])["net_charge"] == 0


def test_the_system_is_quiet_and_consistent_after_the_flows(pg_system: RunningSystem) -> None:
    pg_system.user.wait(pg_system.user.order()["order_id"])
    report = pg_system.wait_quiet()
    assert report["violations"] == []
    assert report["unfinished"] == 0
    assert report["unread_replies"] == 0
    assert report["queued_tasks"] == 0
    assert report["sagas"] == sum(report["by_status"].values()) >= 57
    # Read from the system's own databases: one, or five with a database per service.
    assert len(set(report["databases"].values())) == 1 + len(settings.SERVICE_DATABASE_URLS)


def test_sigterm_stops_workers_cleanly_and_no_claimed_work_is_lost(
    pg_system: RunningSystem,
) -> None:
    system = pg_system.system
    placed = [pg_system.user.order() for _ in range(10)]
    for name in ("saga_worker.1", "q_payments"):
        proc = next(p for p in system.procs if p.name == name)
        below = descendants(proc.pid)  # a cluster's sentinel, workers, pusher and monitor
        system.signal(proc, signal.SIGTERM, group=False)
        assert proc.popen is not None
        assert proc.popen.wait(30) == 0, f"{name} did not stop cleanly"
        time.sleep(1)
        assert not [pid for pid in below if Path(f"/proc/{pid}").exists()], "processes left over"
    held = pg_system.sql("SELECT count(*) FROM sagas_saga WHERE lease_owner = 'saga_worker.1'")
    assert held == [(0,)]
    for name in ("saga_worker.1", "q_payments"):
        system.restart(next(p for p in system.procs if p.name == name))
    orders = [pg_system.user.wait(p["order_id"]) for p in placed]
    assert [o["status"] for o in orders] == ["completed"] * 10
