"""Builders for service tests: saga payloads and commands, spelled out where the test reads them."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from inventory import services as inventory_services
from inventory.models import Product
from payments import services as payment_services
from sagas.messages import Command, Reply

OK_CARD = "4242424242424242"


def new_id() -> str:
    return str(uuid.uuid4())


def order_payload(**overrides: Any) -> dict[str, Any]:
    """The order saga's data, as every service command carries it."""
    payload: dict[str, Any] = {
        "order_id": new_id(),
        "user_id": 7,
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
        "total": "25.00",
        "currency": "EUR",
        "payment_token": "pm_unknown",
        "shipping_address": address(),
    }
    payload.update(overrides)
    return payload


def address(**overrides: Any) -> dict[str, str]:
    return {
        "name": "Ada Lovelace",
        "line1": "1 rue de la Paix",
        "city": "Paris",
        "postal_code": "75002",
        "country": "FR",
        **overrides,
    }


def command(
    name: str,
    step: str,
    *,
    compensation: bool = False,
    attempt: int = 1,
    saga_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Command:
    return Command(
        name=name,
        saga_id=saga_id or new_id(),
        step=step,
        compensation=compensation,
        attempt=attempt,
        payload=payload if payload is not None else order_payload(),
    )


def again(sent: Command, **changes: Any) -> Command:
    """The same step's command re-sent (a retry or a duplicate delivery): same saga, same key."""
    fields = {**sent.to_dict(), "attempt": sent.attempt + 1, **changes}
    return Command(**fields)


def undo(sent: Command, name: str) -> Command:
    """The compensation of the step `sent` belongs to."""
    return again(sent, name=name, compensation=True, attempt=1)


def essence(reply: Reply) -> tuple[str, str, str, dict[str, Any]]:
    """What a stored reply must repeat; the attempt number echoes whichever delivery asked."""
    return (reply.outcome.value, reply.code, reply.message, reply.data)


def product(sku: str, *, stock: int, price: str = "12.50") -> Product:
    return inventory_services.create_product(
        sku=sku, name=f"Product {sku}", price=Decimal(price), currency="EUR", stock=stock
    )


def available(sku: str) -> int:
    return Product.objects.get(sku=sku).available


def card_token(number: str = OK_CARD) -> str:
    return payment_services.tokenize_card(
        number=number, exp_month=12, exp_year=date.today().year + 2, cvc="123"
    ).token
