"""Orders complete despite injected faults, and the same flow runs on the SQLite default."""

from __future__ import annotations

from pathlib import Path

import pytest

from payments import testcards
from tests.functional.harness import postgres_database, running_system

pytestmark = pytest.mark.processes


def test_orders_complete_when_half_the_charges_fail_transiently(tmp_path: Path) -> None:
    faults = {
        "SAGA_FAULTS": "payments.charge:error:0.5",
        "SAGA_FAULT_SEED": "7",
        "SAGA_MAX_ATTEMPTS": "12",
    }
    with postgres_database() as databases, running_system(tmp_path, databases, **faults) as system:
        placed = [system.user.order() for _ in range(12)]
        orders = [system.user.wait(p["order_id"]) for p in placed]
        assert [o["status"] for o in orders] == ["completed"] * 12
        attempts = [
            next(s["attempts"] for s in o["steps"] if s["name"] == "charge_payment") for o in orders
        ]
        assert max(attempts) > 1, "with a 50% error rate some charges must have been retried"
        report = system.wait_quiet()
        assert report["violations"] == []
        failed_commands = system.sql(
            "SELECT count(*) FROM sagas_sagaevent WHERE kind = 'step_failed'"
        )[0][0]
        assert failed_commands == sum(a - 1 for a in attempts)


def test_the_same_flow_passes_on_the_sqlite_default(tmp_path: Path) -> None:
    with running_system(tmp_path, None) as system:
        good = system.user.order(quantity=3)
        declined = system.user.order(card=testcards.DECLINED)
        antarctica = system.user.order(country="AQ")
        assert system.user.wait(good["order_id"])["status"] == "completed"
        for placed, reason in (
            (declined, "payment_declined"),
            (antarctica, "shipping_unavailable"),
        ):
            order = system.user.wait(placed["order_id"])
            assert (order["status"], order["reason"]["code"]) == ("failed", reason)
        report = system.wait_quiet()
        assert report["violations"] == []
        assert report["by_status"] == {"completed": 1, "failed": 2}
