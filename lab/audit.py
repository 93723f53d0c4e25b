"""Reconciliation across the services: the invariants of docs/architecture.md §4, checked from
the tables.

This is the one place that reads every service's tables together. It is an operator's audit
(and the chaos run's verdict), never part of a saga's own path. Each table is read from its own
database (the routers send a service's models to its alias when it has one: up to five
databases), one service at a time, and the invariants are checked in Python: no query joins
tables of two services. The reads are not one snapshot (five databases cannot share one), so
the verdict is meant for a quiet system, as the chaos run and the tests take it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connections, router
from django.db.models import Model, Sum
from django.utils import timezone
from django_q.models import Failure, OrmQ

from inventory.models import Product, Reservation, ReservationLine
from orders.models import Order
from orders.saga import ORDER_SAGA, OrderSagaData
from payments.models import Charge, PaymentStepRecord, Refund
from sagas.config import saga_config
from sagas.core.state import SagaStatus
from sagas.models import Saga, SagaReply
from shipping.models import Shipment


@dataclass
class AuditReport:
    sagas: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    queued_tasks: int = 0
    queued_by_queue: dict[str, int] = field(default_factory=dict)  # e.g. {"orders": 3}
    unread_replies: int = 0
    failed_tasks: int = 0
    failed_by_func: dict[str, int] = field(default_factory=dict)  # e.g. {"sagas.tasks.…": 1}
    purged_sagas_charged: int = 0  # charges kept for sagas housekeeping purged (not violations)
    violations: list[str] = field(default_factory=list)
    # Where each side's tables were read: "sagas" (the engine, with the broker) and each service,
    # to the name of its database.
    databases: dict[str, str] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        """Sagas neither terminal nor visibly stuck."""
        parked = (SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.STUCK)
        return sum(n for status, n in self.by_status.items() if status not in parked)

    @property
    def saga_tasks(self) -> int:
        """Queued tasks that carry sagas' commands: the housekeeping queue's are not (its
        schedule queues a task every few minutes, and one claimed by a cluster that was killed
        waits there for the queue's `retry`, minutes)."""
        return sum(
            n for queue, n in self.queued_by_queue.items() if queue != settings.HOUSEKEEPING_QUEUE
        )

    @property
    def quiet(self) -> bool:
        """No saga work left: every saga finished or parked, no command queued, no reply
        unread."""
        return not self.unfinished and not self.saga_tasks and not self.unread_replies


def database_of(model: type[Model]) -> str:
    return str(connections[router.db_for_read(model)].settings_dict["NAME"])


def audit(max_listed: int = 20) -> AuditReport:
    report = AuditReport()
    report.databases = {
        "sagas": database_of(Saga),
        "orders": database_of(Order),
        "payments": database_of(Charge),
        "inventory": database_of(Product),
        "shipping": database_of(Shipment),
    }
    # The whole `data`, not the `data__total` key: on SQLite a key read comes back as a float.
    rows = list(
        Saga.objects.filter(type=ORDER_SAGA).values_list("id", "status", "reason_code", "data")
    )
    statuses = {saga_id: status for saga_id, status, _, _ in rows}
    totals = {str(saga_id): OrderSagaData.from_json(data).total for saga_id, _, _, data in rows}
    report.sagas = len(rows)
    report.by_status = dict(Counter(statuses.values()))
    report.failure_reasons = dict(
        Counter(reason for _, status, reason, _ in rows if status == SagaStatus.FAILED)
    )
    report.queued_by_queue = dict(Counter(OrmQ.objects.values_list("key", flat=True)))
    report.queued_tasks = sum(report.queued_by_queue.values())
    report.unread_replies = SagaReply.objects.count()
    report.failed_by_func = dict(Counter(Failure.objects.values_list("func", flat=True)))
    report.failed_tasks = sum(report.failed_by_func.values())

    charged: dict[str, Decimal] = defaultdict(Decimal)
    charges_per_saga: Counter[str] = Counter()
    for saga_id, amount in Charge.objects.values_list("saga_id", "amount"):
        charged[str(saga_id)] += amount
        charges_per_saga[str(saga_id)] += 1
    for saga_id, amount in Refund.objects.values_list("charge__saga_id", "amount"):
        charged[str(saga_id)] -= amount
    live_reservations = {
        str(s)
        for s in Reservation.objects.filter(status=Reservation.Status.RESERVED).values_list(
            "saga_id", flat=True
        )
    }
    live_shipments = Counter(
        str(s)
        for s in Shipment.objects.filter(status=Shipment.Status.SCHEDULED).values_list(
            "saga_id", flat=True
        )
    )
    orders = {str(s): status for s, status in Order.objects.values_list("saga_id", "status")}

    problems: list[str] = []
    for saga_id, status in statuses.items():
        key = str(saga_id)
        if status == SagaStatus.COMPLETED:
            if charges_per_saga[key] != 1 or charged[key] != totals[key]:
                problems.append(
                    f"completed {key}: net charge {charged[key]} != total {totals[key]}"
                )
            if key not in live_reservations:
                problems.append(f"completed {key}: no live reservation")
            if live_shipments[key] != 1:
                problems.append(f"completed {key}: {live_shipments[key]} live shipments")
            if orders.get(key) != Order.Status.APPROVED:
                problems.append(f"completed {key}: order is {orders.get(key)}")
        elif status == SagaStatus.FAILED:
            if charged[key] != 0:
                problems.append(f"failed {key}: net charge {charged[key]}")
            if key in live_reservations:
                problems.append(f"failed {key}: stock still reserved")
            if live_shipments[key]:
                problems.append(f"failed {key}: a shipment is live")
            if orders.get(key) not in (None, Order.Status.CANCELLED):
                problems.append(f"failed {key}: order is {orders.get(key)}")
    # A purged saga's charges stay (they are the Payment Service's); its step records go before
    # it (sagas.housekeeping). So a charge whose saga is unknown is a violation unless it is
    # older than the retention, as a purged saga's are, and the step record that made it is
    # gone too.
    unknown = set(charged) - {str(s) for s in statuses}
    cutoff = timezone.now() - saga_config().housekeeping.retention
    purgeable = {
        str(s)
        for s in Charge.objects.filter(saga_id__in=unknown, created_at__lt=cutoff)
        .exclude(saga_id__in=PaymentStepRecord.objects.values("saga_id"))
        .values_list("saga_id", flat=True)
    }
    report.purged_sagas_charged = len(purgeable)
    for key in sorted(unknown - purgeable):
        problems.append(f"charge for unknown saga {key}")

    held = dict(
        ReservationLine.objects.filter(reservation__status=Reservation.Status.RESERVED)
        .values("sku")
        .annotate(n=Sum("quantity"))
        .values_list("sku", "n")
    )
    for sku, available, received in Product.objects.values_list("sku", "available", "received"):
        if available < 0:
            problems.append(f"{sku}: negative stock {available}")
        if available + held.get(sku, 0) != received:
            problems.append(
                f"{sku}: stock not conserved: {available} available + {held.get(sku, 0)} held "
                f"!= {received} received"
            )
    report.violations = problems[:max_listed] + (
        [f"... and {len(problems) - max_listed} more"] if len(problems) > max_listed else []
    )
    return report
