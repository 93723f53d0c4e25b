"""`saga_audit` on the SQLite default: money read from the saga's JSON never passes through a
float. The suite's database is PostgreSQL, so this runs the command in a child process against a
SQLite file of its own."""

from __future__ import annotations

import json
from pathlib import Path

from lab.system import System, local_env, scratch_database

# A completed order whose every effect is in place, for a total that binary floating point cannot
# hold exactly (39.90 as a float is 39.89999999999999857891452847979962825775146484375).
SEED_A_COMPLETED_ORDER = """
import uuid
from decimal import Decimal

from inventory.models import Reservation
from orders.models import Order
from payments.models import Charge
from sagas.models import Saga
from shipping.models import Shipment

saga_id, order_id = uuid.uuid4(), uuid.uuid4()
Saga.objects.create(
    id=saga_id,
    type="order",
    status="completed",
    correlation_id=str(order_id),
    data={
        "order_id": str(order_id),
        "user_id": 1,
        "lines": [{"sku": "BOOK-001", "quantity": 1, "unit_price": "39.90"}],
        "total": "39.90",
        "currency": "EUR",
        "payment_token": "pm_test",
        "card": {"brand": "visa", "last4": "4242"},
        "shipping_address": {
            "name": "Ada", "line1": "1 rue de la Paix", "city": "Paris",
            "postal_code": "75002", "country": "FR",
        },
    },
    state={"status": "completed", "reason_code": None, "reason_message": "", "steps": {}},
)
Order.objects.create(
    id=order_id, saga_id=saga_id, user_id=1, status="approved",
    total=Decimal("39.90"), currency="EUR",
)
Charge.objects.create(
    saga_id=saga_id, order_id=order_id, payment_token="pm_test",
    amount=Decimal("39.90"), currency="EUR",
)
Reservation.objects.create(saga_id=saga_id, order_id=order_id, status="reserved")
Shipment.objects.create(
    saga_id=saga_id, order_id=order_id, name="Ada", line1="1 rue de la Paix",
    city="Paris", postal_code="75002", country="FR", status="scheduled",
)
"""


def test_the_audit_on_sqlite_finds_no_violation_for_a_total_a_float_cannot_hold(
    tmp_path: Path,
) -> None:
    with scratch_database("", tmp_path, "audit") as database:
        env = {**local_env(tmp_path, "audit-on-sqlite-" + "x" * 50), **database}
        system = System(env=env, log_dir=tmp_path / "logs")
        system.migrate()
        system.manage("shell", "-c", SEED_A_COMPLETED_ORDER)

        report = json.loads(system.manage("saga_audit", "--json", check=False))

    assert report["by_status"] == {"completed": 1}
    assert report["violations"] == []
