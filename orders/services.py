"""The Order Service's local transactions: create an order, cancel it, approve it.

All or nothing: each runs in a transaction of its own, or in its caller's without a savepoint
(a saga command's: `sagas.participant.perform` keeps one around the effect where a failure must
leave the rest), which a failure here then leaves to roll back. A savepoint more would cost
every command two round trips.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django.db import connections, router, transaction
from django.utils import timezone

from orders.exceptions import OrderStateConflict
from orders.models import Order, OrderLine
from sagas import bulk

CENT = Decimal("0.01")


@dataclass(frozen=True)
class LineSpec:
    sku: str
    quantity: int
    unit_price: Decimal


def create_order(
    *,
    order_id: UUID,
    saga_id: UUID,
    user_id: int,
    lines: Sequence[LineSpec],
    total: Decimal,
    currency: str,
) -> Order:
    """Record a new order as `pending`; it stays so until its saga approves or cancels it.

    Raises ValueError for an amount with sub-cent digits (a bug upstream: nothing is recorded).
    """
    total = whole_cents(total)
    prices = [whole_cents(line.unit_price) for line in lines]
    using = router.db_for_write(Order)
    with transaction.atomic(using=using, savepoint=False):
        order = Order(
            id=order_id,
            saga_id=saga_id,
            user_id=user_id,
            status=Order.Status.PENDING,
            total=total,
            currency=currency,
        )
        bulk.create(order, using=using)
        # One INSERT without bulk_create's RETURNING of ids nothing reads.
        bulk.insert(
            OrderLine,
            ["order", "sku", "quantity", "unit_price"],
            [
                OrderLine(order=order, sku=line.sku, quantity=line.quantity, unit_price=price)
                for line, price in zip(lines, prices, strict=True)
            ],
            using=using,
        )
    return order


def whole_cents(amount: Decimal) -> Decimal:
    """`amount` with exactly two decimal places; ValueError if that would change its value.

    The amount columns are NUMERIC(12, 2), which round sub-cent digits away silently: such an
    amount is refused here, never rounded.
    """
    cents = amount.quantize(CENT)
    if cents != amount:
        raise ValueError(f"amount {amount} has more than two decimal places")
    return cents


def cancel_order(*, order_id: UUID) -> Order:
    """Cancel a pending order. Cancelling a cancelled order changes nothing.

    Raises OrderStateConflict for an approved order: approval comes after the pivot, so a saga
    never compensates it, and an operator must look.
    """
    return _move(order_id=order_id, to=Order.Status.CANCELLED, forbidden_from=Order.Status.APPROVED)


def approve_order(*, order_id: UUID) -> Order:
    """Approve a pending order. Approving an approved order changes nothing.

    Raises Order.DoesNotExist if the order was never created (the saga only approves after
    `create_order` succeeded, so that is a fault) and OrderStateConflict for a cancelled order.
    """
    return _move(order_id=order_id, to=Order.Status.APPROVED, forbidden_from=Order.Status.CANCELLED)


def _move(*, order_id: UUID, to: Order.Status, forbidden_from: Order.Status) -> Order:
    using = router.db_for_write(Order)
    with transaction.atomic(using=using, savepoint=False):
        # The usual case, a pending order, in one statement: its UPDATE locks the row, checks
        # the status and writes (a read to lock, then a save, were two statements, each through
        # the query compiler). Nothing returns an order to `pending`, so a miss here is final
        # unless the order was created since, which the locked read below then sees.
        connection = connections[using]
        moved = list(
            Order.objects.using(using).raw(
                f"UPDATE {Order._meta.db_table} SET status = %s, updated_at = %s"
                " WHERE id = %s AND status = %s RETURNING *",
                [
                    to,
                    Order._meta.get_field("updated_at").get_db_prep_value(
                        timezone.now(), connection
                    ),
                    Order._meta.pk.get_db_prep_value(order_id, connection),
                    Order.Status.PENDING,
                ],
            )
        )
        if moved:
            return moved[0]
        # Row lock: an operator action and a saga command must not both read `pending`.
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status == to:
            return order
        if order.status == forbidden_from:
            raise OrderStateConflict(f"order {order_id} is {order.status}, cannot become {to}")
        order.status = to
        order.save(update_fields=["status", "updated_at"])
    return order
