"""The naive ceiling: orders per second doing only an order's four local commits (create,
reserve, charge, ship) one after the other, with no orchestration, no messages and no
idempotency records, on the same database and machine. What the saga machinery costs is the
distance to it."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from decimal import Decimal

from django.db import connections

NAIVE_TOKEN = "pm_naive"


def _naive_orders(count: int, skus: list[str]) -> None:
    from inventory.services import reserve_stock
    from orders.services import LineSpec, create_order
    from payments.services import charge_payment
    from shipping.services import Address, schedule_shipment

    address = Address("Bench", "1 Loop Road", "Lyon", "69001", "FR")
    for n in range(count):
        sku = skus[n % len(skus)]
        saga_id, order_id = uuid.uuid4(), uuid.uuid4()
        price = Decimal("12.50")
        create_order(
            order_id=order_id,
            saga_id=saga_id,
            user_id=1,
            lines=[LineSpec(sku, 1, price)],
            total=price,
            currency="EUR",
        )
        reserve_stock(saga_id=saga_id, order_id=order_id, quantities={sku: 1})
        charge_payment(
            saga_id=saga_id,
            order_id=order_id,
            payment_token=NAIVE_TOKEN,
            amount=price,
            currency="EUR",
        )
        schedule_shipment(saga_id=saga_id, order_id=order_id, address=address)
    connections.close_all()


def naive_ceiling(orders: int, processes: int, skus: list[str]) -> float:
    """Orders per second doing only the four local commits, in `processes` parallel processes.

    Its rows belong to no saga: the audit reports their charges as "for unknown saga", so run
    it on a database that is not audited afterwards, or audit first.
    """
    from payments.models import PaymentMethod

    PaymentMethod.objects.get_or_create(
        token=NAIVE_TOKEN,
        defaults={"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2035},
    )
    connections.close_all()  # never share a connection across fork
    context = multiprocessing.get_context("fork")
    per_process = max(1, orders // processes)
    started = time.monotonic()
    workers = [
        context.Process(target=_naive_orders, args=(per_process, skus)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if any(worker.exitcode for worker in workers):
        raise RuntimeError("a naive-ceiling process failed")
    return per_process * processes / (time.monotonic() - started)
