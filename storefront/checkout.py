"""Placing an order: price the lines from the catalogue, tokenise the card in the Payment
Service, and start the order saga, at most once per Idempotency-Key. Nothing here waits on a
service's queue, and no transaction spans two services' databases (docs/architecture.md §8)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, router, transaction

from inventory.selectors import products_by_sku
from orders.saga import (
    ORDER_SAGA,
    CardSummary,
    OrderSagaData,
    OrderSagaLine,
    ShippingAddress,
)
from payments.exceptions import InvalidCard
from payments.services import tokenize_card
from sagas.core.state import SagaStatus
from sagas.services import start_saga
from storefront.models import IdempotencyKey

# Every amount column downstream (order total, charge) is NUMERIC(12, 2).
MAX_ORDER_TOTAL = Decimal("9999999999.99")
ACCEPTED = 202


class OrderRejected(Exception):
    """The order cannot be placed as asked; `fields` maps request fields to messages."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__("the order is invalid")
        self.fields = fields


class IdempotencyKeyReused(Exception):
    """The key was first used with a different request body."""


@dataclass(frozen=True)
class Idempotency:
    """A client's Idempotency-Key, scoped to the user who sent it, and its request's digest."""

    owner_id: int
    key: str
    request_hash: str


@dataclass(frozen=True)
class PlacedOrder:
    """The answer to an order request; `replayed` is true when it is a stored first answer."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def place_order(
    *,
    owner_id: int,
    items: list[dict[str, Any]],
    payment: dict[str, Any],
    shipping_address: dict[str, str],
    idempotency: Idempotency | None = None,
) -> PlacedOrder:
    """Start an order saga and answer with its ids; `pending` until the saga finishes.

    The card is tokenised first, in the Payment Service's transaction (its database may be
    another one; when it is the saga database, it is this one), under a request key derived
    from the Idempotency-Key: a retried request gets the same token back. Then the key row is
    inserted in the transaction that starts the saga: of two concurrent requests with one key,
    the second blocks on the unique constraint until the first commits, then finds and returns
    the stored answer, so one saga starts. A request that starts no saga (a concurrent twin won,
    a crash) may leave an orphan token behind in a database of the Payment Service's own:
    harmless, it is never charged. Rejections (OrderRejected) store no key: a corrected
    request may reuse it. Raises OrderRejected or IdempotencyKeyReused.
    """
    # One transaction of the saga database for the whole of it: the reads, the card's token
    # (within it when the Payment Service's tables are there too), the key and the saga's start
    # commit once.
    with transaction.atomic(using=router.db_for_write(IdempotencyKey)):
        if idempotency is not None:
            stored = stored_answer(idempotency)
            if stored is not None:
                return stored
        lines, total, currency = priced_lines(items)
        order_id, saga_id = uuid.uuid4(), uuid.uuid4()
        method = _tokenize(payment, request_key=_tokenize_key(idempotency, order_id))
        body = {
            "order_id": str(order_id),
            "saga_id": str(saga_id),
            "status": SagaStatus.PENDING.value,
        }
        try:
            key_row = None if idempotency is None else _claim_key(idempotency, body)
        except _KeyTaken:
            assert idempotency is not None
            stored = stored_answer(idempotency)
            if stored is None:  # the first request was rejected and rolled back meanwhile
                return place_order(
                    owner_id=owner_id,
                    items=items,
                    payment=payment,
                    shipping_address=shipping_address,
                    idempotency=idempotency,
                )
            return stored
        data = OrderSagaData(
            order_id=order_id,
            user_id=owner_id,
            lines=lines,
            total=total,
            currency=currency,
            payment_token=method.token,
            card=CardSummary(brand=method.brand, last4=method.last4),
            shipping_address=ShippingAddress(**shipping_address),
        )
        saga = start_saga(
            saga_type=ORDER_SAGA,
            data=data.to_json(),
            correlation_id=str(order_id),
            owner_id=owner_id,
            saga_id=saga_id,
        )
        if key_row is not None:
            IdempotencyKey.objects.filter(pk=key_row.pk).update(saga=saga)
    return PlacedOrder(ACCEPTED, body)


def stored_answer(idempotency: Idempotency) -> PlacedOrder | None:
    """The first answer given under this key, or None if the key is new.

    Raises IdempotencyKeyReused if the key was first used with a different body.
    """
    row = (
        IdempotencyKey.objects.filter(owner_id=idempotency.owner_id, key=idempotency.key)
        .only("request_hash", "status_code", "response")
        .first()
    )
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyKeyReused(idempotency.key)
    return PlacedOrder(row.status_code, dict(row.response), replayed=True)


def priced_lines(items: list[dict[str, Any]]) -> tuple[tuple[OrderSagaLine, ...], Decimal, str]:
    """The order lines priced from the catalogue, their total and currency (never the client's)."""
    skus = [item["sku"] for item in items]
    products = products_by_sku(skus)
    unknown = [sku for sku in skus if sku not in products]
    if unknown:
        raise OrderRejected({"items": [f"Unknown SKU: {', '.join(sorted(unknown))}."]})
    currencies = {products[sku]["currency"] for sku in skus}
    if len(currencies) > 1:
        raise OrderRejected({"items": ["All items must be priced in one currency."]})
    lines = tuple(
        OrderSagaLine(item["sku"], item["quantity"], products[item["sku"]]["price"])
        for item in items
    )
    total = sum((line.unit_price * line.quantity for line in lines), Decimal("0"))
    # A charge must be positive and fit its column; otherwise the saga would fault, not refuse.
    if not Decimal("0") < total <= MAX_ORDER_TOTAL:
        raise OrderRejected(
            {"items": [f"The order total must be above 0 and at most {MAX_ORDER_TOTAL}."]}
        )
    return lines, total, currencies.pop()


class _KeyTaken(Exception):
    """Another request holds (or held) this idempotency key."""


def _claim_key(idempotency: Idempotency, body: dict[str, Any]) -> IdempotencyKey:
    """Insert the key row with the answer it will give. Call inside the saga's transaction
    (the storefront's table lives in the saga database).

    On PostgreSQL the insert waits while a concurrent transaction holds the same key.
    """
    try:
        # A savepoint: the outer transaction stays usable to roll back.
        with transaction.atomic(using=router.db_for_write(IdempotencyKey)):
            return IdempotencyKey.objects.create(
                owner_id=idempotency.owner_id,
                key=idempotency.key,
                request_hash=idempotency.request_hash,
                status_code=ACCEPTED,
                response=body,
            )
    except IntegrityError:
        raise _KeyTaken from None


def _tokenize_key(idempotency: Idempotency | None, order_id: uuid.UUID) -> str:
    """The Payment Service's request key for this checkout's card: the same for every retry of
    one request (owner, Idempotency-Key and body digest), fresh for a request without a key."""
    if idempotency is None:
        return f"order:{order_id}"
    scoped = f"{idempotency.owner_id}\0{idempotency.key}\0{idempotency.request_hash}"
    return "idem:" + hashlib.sha256(scoped.encode()).hexdigest()[:59]


def _tokenize(payment: dict[str, Any], request_key: str) -> Any:
    try:
        # The card number and CVC stop here: only the token travels on.
        return tokenize_card(
            number=payment["card_number"],
            exp_month=payment["exp_month"],
            exp_year=payment["exp_year"],
            cvc=payment["cvc"],
            request_key=request_key,
        )
    except InvalidCard as invalid:
        errors = {
            ("card_number" if name == "number" else name): messages
            for name, messages in invalid.field_errors.items()
        }
        raise OrderRejected({"payment": errors}) from None
