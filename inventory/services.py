"""The Inventory Service's local transactions: add a product, reserve and release stock.

Lock order: every transaction that changes several products updates them in ascending SKU
order, so two reservations touching the same products queue instead of deadlocking.

All or nothing: a reservation or a release runs in a transaction of its own, or in its caller's
without a savepoint (a saga command's: `sagas.participant.perform` keeps one around the effect
where a failure must leave the rest), which a failure here then leaves to roll back. A
savepoint more would cost every command two round trips.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from uuid import UUID

from django.db import IntegrityError, connections, router, transaction
from django.db.models import F

from inventory.exceptions import OutOfStock, ProductExists
from inventory.models import Product, Reservation, ReservationLine
from sagas import bulk

CENT = Decimal("0.01")

# A reservation's check and decrement of one product, written out: through the ORM it was about
# two fifths of a reservation's CPU.
TAKE_STOCK = (
    f"UPDATE {Product._meta.db_table} SET available = available - %s"
    " WHERE sku = %s AND available >= %s"
)


def create_product(*, sku: str, name: str, price: Decimal, currency: str, stock: int) -> Product:
    """Add a product to the catalogue with `stock` units available. Raises ProductExists, and
    ValueError for negative stock or a price that is negative or has sub-cent digits (the price
    column is NUMERIC(12, 2), which would round them away silently: refused, never rounded)."""
    if stock < 0:
        raise ValueError("stock cannot be negative")
    if price < 0:
        raise ValueError("price cannot be negative")
    if price != price.quantize(CENT):
        raise ValueError(f"price {price} has more than two decimal places")
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable.
        with transaction.atomic(using=router.db_for_write(Product)):
            return Product.objects.create(
                sku=sku,
                name=name,
                price=price,
                currency=currency.upper(),
                available=stock,
                received=stock,
            )
    except IntegrityError as error:
        if Product.objects.filter(sku=sku).exists():
            raise ProductExists(sku) from error
        raise


def reserve_stock(*, saga_id: UUID, order_id: UUID, quantities: Mapping[str, int]) -> Reservation:
    """Take `quantities` (SKU -> units) out of available stock for one saga, all or nothing.

    Raises OutOfStock if any SKU lacks stock; no decrement of this call can then commit.
    """
    for sku, quantity in quantities.items():
        # A non-positive quantity would turn the conditional decrement into an increment.
        if quantity < 1:
            raise ValueError(f"quantity of {sku} must be at least 1, not {quantity}")
    using = router.db_for_write(Product)
    with transaction.atomic(using=using, savepoint=False), connections[using].cursor() as cursor:
        for sku in sorted(quantities):
            # Commutative and race-free: the check and the decrement are one UPDATE, which
            # row-locks the product until this transaction ends.
            cursor.execute(TAKE_STOCK, [quantities[sku], sku, quantities[sku]])
            if not cursor.rowcount:
                raise OutOfStock(f"not enough stock for {sku}")
        reservation = Reservation(
            saga_id=saga_id, order_id=order_id, status=Reservation.Status.RESERVED
        )
        bulk.create(reservation, using=using)
        # One INSERT without bulk_create's RETURNING of ids nothing reads.
        bulk.insert(
            ReservationLine,
            ["reservation", "sku", "quantity"],
            [
                ReservationLine(reservation=reservation, sku=sku, quantity=quantities[sku])
                for sku in sorted(quantities)
            ],
            using=using,
        )
    return reservation


def lock_products(skus: set[str], *, releasing: Sequence[UUID] = ()) -> None:
    """Lock `skus`, and those of the reservations of the sagas `releasing`, in SKU order (the
    order each reservation and release locks in), in the caller's transaction: several
    reservations and releases that follow in that transaction then cannot deadlock with
    another's."""
    if releasing:
        lines = ReservationLine.objects.filter(reservation__saga_id__in=releasing)
        skus = skus | set(lines.values_list("sku", flat=True))
    if skus:
        locked = Product.objects.select_for_update().filter(sku__in=skus).order_by("sku")
        list(locked.values_list("pk", flat=True))


def release_stock(*, reservation_id: int) -> Reservation:
    """Put a reservation's units back into available stock. Releasing twice changes nothing."""
    with transaction.atomic(using=router.db_for_write(Reservation), savepoint=False):
        # Row lock first: two releases racing must not both see `reserved` and restock twice.
        reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
        if reservation.status == Reservation.Status.RELEASED:
            return reservation
        for line in reservation.lines.order_by("sku"):
            restocked = Product.objects.filter(sku=line.sku).update(
                available=F("available") + line.quantity
            )
            if not restocked:
                # Dropping the units would break stock conservation: fail loudly, so the
                # compensation is retried and then parked for an operator.
                raise LookupError(f"product {line.sku} is gone; cannot restock {line.quantity}")
        reservation.status = Reservation.Status.RELEASED
        reservation.save(update_fields=["status", "updated_at"])
    return reservation
