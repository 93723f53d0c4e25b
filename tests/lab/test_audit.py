"""The cross-service audit: a consistent world passes, and each invariant it checks is flagged
when one violation of it is planted, and only that one. The tests read the report's violations,
never the audit's internals. With a database per service (make test-multidb) every service's
rows are planted in, and read from, its own database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connections, models, router
from django.utils import timezone
from django_q.models import Failure, OrmQ

from inventory.models import Product, Reservation
from inventory.services import create_product, release_stock, reserve_stock
from lab.audit import AuditReport, audit
from orders.models import Order
from orders.saga import ORDER_SAGA
from orders.services import LineSpec, approve_order, cancel_order, create_order
from payments.models import Charge, PaymentStepRecord
from payments.services import charge_payment, refund_charge, tokenize_card
from sagas.core.state import SagaStatus
from sagas.housekeeping import purge_finished_sagas
from sagas.models import Saga, SagaReply
from shipping.models import Shipment
from shipping.services import Address, cancel_shipment, schedule_shipment
from tests.services.builders import order_data

pytestmark = pytest.mark.django_db(databases="__all__")

SKU = "MUG-002"
PRICE = Decimal("12.50")
ADDRESS = Address("Ada Lovelace", "1 rue de la Paix", "Paris", "75002", "FR")


# --- builders: one saga and its effects in every service, as the services record them --------


@dataclass(frozen=True)
class Placed:
    """A saga and the ids of what its steps did."""

    saga_id: uuid.UUID
    order_id: uuid.UUID
    total: Decimal
    reservation: Reservation | None = None
    charge: Charge | None = None
    shipment: Shipment | None = None

    @property
    def key(self) -> str:
        return str(self.saga_id)


def stocked(units: int = 10) -> Product:
    return create_product(sku=SKU, name="Mug", price=PRICE, currency="EUR", stock=units)


def card() -> str:
    return tokenize_card(
        number="4242424242424242", exp_month=12, exp_year=date.today().year + 2, cvc="123"
    ).token


def saga_row(status: SagaStatus, total: Decimal, reason: str = "") -> uuid.UUID:
    saga = Saga.objects.create(
        type=ORDER_SAGA,
        status=status.value,
        reason_code=reason,
        data=order_data(total=total).to_json(),
        state={},
        correlation_id=str(uuid.uuid4()),
    )
    return saga.id


def do_every_step(status: SagaStatus, quantity: int = 2, reason: str = "") -> Placed:
    """A saga whose four effects were all applied: an order, a reservation, a charge, a shipment."""
    total = PRICE * quantity
    saga_id, order_id = saga_row(status, total, reason), uuid.uuid4()
    create_order(
        order_id=order_id,
        saga_id=saga_id,
        user_id=1,
        lines=[LineSpec(SKU, quantity, PRICE)],
        total=total,
        currency="EUR",
    )
    return Placed(
        saga_id,
        order_id,
        total,
        reservation=reserve_stock(saga_id=saga_id, order_id=order_id, quantities={SKU: quantity}),
        charge=charge_payment(
            saga_id=saga_id, order_id=order_id, payment_token=card(), amount=total, currency="EUR"
        ),
        shipment=schedule_shipment(saga_id=saga_id, order_id=order_id, address=ADDRESS),
    )


def completed_saga() -> Placed:
    placed = do_every_step(SagaStatus.COMPLETED)
    approve_order(order_id=placed.order_id)
    return placed


def failed_saga() -> Placed:
    """A saga that turned back after doing everything before approval, and undid all of it."""
    placed = do_every_step(SagaStatus.FAILED, reason="cancelled")
    assert placed.reservation and placed.charge and placed.shipment
    cancel_shipment(shipment_id=placed.shipment.pk)
    refund_charge(charge_id=placed.charge.pk)
    release_stock(reservation_id=placed.reservation.pk)
    cancel_order(order_id=placed.order_id)
    return placed


def drop_check_constraints(model: type[models.Model]) -> None:
    """Drop `model`'s CHECK constraints for the rest of the test's transaction.

    PostgreSQL DDL is transactional: the test's rollback restores them. This is the only way to
    plant what the database itself refuses (negative stock), to show that the audit would still
    see it if a constraint were ever lost.
    """
    connection = connections[router.db_for_write(model)]  # the owning service's database
    assert connection.vendor == "postgresql", "dropping constraints needs PostgreSQL"
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
            [table],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')


def drop_unique_constraint(model: type[models.Model], column: str) -> None:
    """Drop the unique constraint on `model`'s `column` for the rest of the test's transaction."""
    connection = connections[router.db_for_write(model)]  # the owning service's database
    assert connection.vendor == "postgresql", "dropping constraints needs PostgreSQL"
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conname FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.conrelid = %s::regclass AND c.contype = 'u' AND a.attname = %s
            """,
            [table, column],
        )
        names = [name for (name,) in cursor.fetchall()]
        assert names, f"no unique constraint on {table}.{column}"
        for name in names:
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')


def only_violation(report: AuditReport) -> str:
    assert len(report.violations) == 1, report.violations
    return report.violations[0].lower()


# --- a consistent world -------------------------------------------------------------------


def test_a_consistent_world_has_no_violations() -> None:
    stocked()
    completed_saga()
    failed_saga()
    saga_row(SagaStatus.FAILED, Decimal("5.00"), reason="payment_declined")  # refused: nothing done

    report = audit()

    assert report.violations == []
    assert report.by_status == {"completed": 1, "failed": 2}
    assert report.failure_reasons == {"cancelled": 1, "payment_declined": 1}


# --- one planted violation per check: each is flagged, and alone ----------------------------

Plant = Callable[[], str]  # plants one violation in a consistent world; returns its subject


def completed_net_charge_differs_from_the_total() -> str:
    placed = completed_saga()
    Saga.objects.filter(id=placed.saga_id).update(data=order_data(total=placed.total + 1).to_json())
    return placed.key


def completed_charged_twice() -> str:
    # Two charges whose net still equals the total: only the count of charges can tell.
    placed = completed_saga()
    drop_unique_constraint(Charge, "saga_id")
    second = charge_payment(
        saga_id=placed.saga_id,
        order_id=placed.order_id,
        payment_token=card(),
        amount=placed.total,
        currency="EUR",
    )
    refund_charge(charge_id=second.pk)
    return placed.key


def completed_without_a_live_reservation() -> str:
    placed = completed_saga()
    assert placed.reservation is not None
    release_stock(reservation_id=placed.reservation.pk)  # stock restored: still conserved
    return placed.key


def completed_without_a_live_shipment() -> str:
    placed = completed_saga()
    assert placed.shipment is not None
    cancel_shipment(shipment_id=placed.shipment.pk)
    return placed.key


def completed_with_a_pending_order() -> str:
    placed = do_every_step(SagaStatus.COMPLETED)  # never approved
    return placed.key


def failed_with_a_net_charge() -> str:
    placed = do_every_step(SagaStatus.FAILED, reason="cancelled")
    assert placed.reservation and placed.shipment
    cancel_shipment(shipment_id=placed.shipment.pk)
    release_stock(reservation_id=placed.reservation.pk)
    cancel_order(order_id=placed.order_id)  # everything undone but the charge
    return placed.key


def failed_still_reserving_stock() -> str:
    placed = do_every_step(SagaStatus.FAILED, reason="cancelled")
    assert placed.charge and placed.shipment
    cancel_shipment(shipment_id=placed.shipment.pk)
    refund_charge(charge_id=placed.charge.pk)
    cancel_order(order_id=placed.order_id)  # everything undone but the reservation
    return placed.key


def failed_with_a_live_shipment() -> str:
    placed = do_every_step(SagaStatus.FAILED, reason="cancelled")
    assert placed.charge and placed.reservation
    refund_charge(charge_id=placed.charge.pk)
    release_stock(reservation_id=placed.reservation.pk)
    cancel_order(order_id=placed.order_id)  # everything undone but the shipment
    return placed.key


def failed_with_an_approved_order() -> str:
    placed = failed_saga()
    Order.objects.filter(id=placed.order_id).update(status=Order.Status.APPROVED)
    return placed.key


def failed_with_a_pending_order() -> str:
    placed = failed_saga()
    Order.objects.filter(id=placed.order_id).update(status=Order.Status.PENDING)
    return placed.key


def a_charge_for_an_unknown_saga() -> str:
    stray = uuid.uuid4()
    charge_payment(
        saga_id=stray, order_id=uuid.uuid4(), payment_token=card(), amount=PRICE, currency="EUR"
    )
    return str(stray)


def negative_stock() -> str:
    # The database refuses negative stock; drop its CHECKs in this transaction to plant it, and
    # keep stock conserved (received moves with available) so that only this check speaks.
    drop_check_constraints(Product)
    Product.objects.filter(sku=SKU).update(
        available=models.F("available") - 9, received=models.F("received") - 9
    )
    assert Product.objects.get(sku=SKU).available == -1
    return SKU


def stock_not_conserved() -> str:
    Product.objects.filter(sku=SKU).update(available=models.F("available") + 1)
    return SKU


PLANTED: list[tuple[Plant, str]] = [
    (completed_net_charge_differs_from_the_total, "charge"),
    (completed_charged_twice, "charge"),
    (completed_without_a_live_reservation, "reservation"),
    (completed_without_a_live_shipment, "shipment"),
    (completed_with_a_pending_order, "order"),
    (failed_with_a_net_charge, "charge"),
    (failed_still_reserving_stock, "reserved"),
    (failed_with_a_live_shipment, "shipment"),
    (failed_with_an_approved_order, "order"),
    (failed_with_a_pending_order, "order"),
    (a_charge_for_an_unknown_saga, "unknown saga"),
    (negative_stock, "negative"),
    (stock_not_conserved, "conserved"),
]


@pytest.mark.parametrize(("plant", "names"), PLANTED, ids=[plant.__name__ for plant, _ in PLANTED])
def test_the_audit_flags_each_planted_violation_alone(plant: Plant, names: str) -> None:
    stocked()
    completed_saga()  # bystanders that must stay unflagged
    failed_saga()
    assert audit().violations == []

    subject = plant()

    violation = only_violation(audit())
    assert subject.lower() in violation
    assert names in violation


def test_violations_beyond_the_listed_maximum_are_summarised() -> None:
    stocked()
    for _ in range(3):
        Saga.objects.filter(id=completed_saga().saga_id).update(
            data=order_data(total=Decimal("1.00")).to_json()
        )

    report = audit(max_listed=2)

    assert len(report.violations) == 3
    assert report.violations[-1] == "... and 1 more"


# --- housekeeping: what remains of a purged saga ------------------------------------------


def test_a_purged_sagas_charge_is_counted_apart_unless_its_step_record_is_still_there() -> None:
    stocked()
    old = completed_saga()
    long_ago = timezone.now() - timedelta(days=40)
    Saga.objects.filter(id=old.saga_id).update(created_at=long_ago, finished_at=long_ago)
    Charge.objects.filter(saga_id=old.saga_id).update(created_at=long_ago)
    PaymentStepRecord.objects.create(saga_id=old.saga_id, step="charge_payment")
    assert purge_finished_sagas(older_than=timedelta(days=30), batch_size=10).sagas == 1

    report = audit()
    assert (report.violations, report.purged_sagas_charged) == ([], 1)

    # The step record that made the charge outlived its saga: the purge did not do this.
    PaymentStepRecord.objects.create(saga_id=old.saga_id, step="charge_payment")
    violation = only_violation(audit())
    assert old.key in violation and "unknown saga" in violation


def test_violations_up_to_the_listed_maximum_are_all_listed_and_twenty_by_default() -> None:
    for _ in range(5):
        saga_row(SagaStatus.COMPLETED, PRICE)  # four problems each: no charge, reservation, ...
    assert len(audit(max_listed=20).violations) == 20

    saga_row(SagaStatus.COMPLETED, PRICE)
    report = audit()
    assert len(report.violations) == 21
    assert report.violations[-1] == "... and 4 more"


def test_the_report_counts_sagas_and_what_is_left_in_the_queues() -> None:
    stocked()
    placed = completed_saga()
    saga_row(SagaStatus.FAILED, PRICE, reason="payment_declined")
    OrmQ.objects.create(key="orders", payload="a task", lock=timezone.now())
    # A late duplicate waiting in the inbox, as when it landed while a worker held the saga.
    SagaReply.objects.create(
        saga_id=placed.saga_id, step="approve_order", compensation=False, attempt=1, outcome="ok"
    )
    Failure.objects.create(
        id=uuid.uuid4().hex,
        name="t",
        func="f",
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
    )

    report = audit()

    assert (report.sagas, report.queued_tasks, report.unread_replies, report.failed_tasks) == (
        2,
        1,
        1,
        1,
    )
    assert report.failed_by_func == {"f": 1}
    assert not report.quiet


def test_sold_out_stock_and_a_product_nobody_reserved_are_no_violation() -> None:
    stocked(units=2)
    create_product(sku="CUP-001", name="Cup", price=PRICE, currency="EUR", stock=3)
    completed_saga()  # takes both mugs
    assert Product.objects.get(sku=SKU).available == 0

    assert audit().violations == []


def test_each_violation_names_what_the_tables_hold() -> None:
    stocked()
    placed = completed_saga()
    Order.objects.filter(id=placed.order_id).update(status=Order.Status.PENDING)
    Product.objects.filter(sku=SKU).update(available=models.F("available") + 1)

    assert sorted(audit().violations) == [
        f"{SKU}: stock not conserved: 9 available + 2 held != 10 received",
        f"completed {placed.key}: order is pending",
    ]


def test_a_system_with_only_housekeeping_queued_is_quiet_and_a_saga_command_is_not() -> None:
    stocked()
    completed_saga()
    OrmQ.objects.create(key="housekeeping", payload="a purge run", lock=timezone.now())

    report = audit()
    assert (report.queued_tasks, report.saga_tasks) == (1, 0)
    assert report.quiet

    OrmQ.objects.create(key="payments", payload="a command", lock=timezone.now())
    report = audit()
    assert (report.queued_tasks, report.saga_tasks) == (2, 1)
    assert not report.quiet
