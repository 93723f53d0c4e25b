"""Builders for service tests: saga payloads and commands, spelled out where the test reads them."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from inventory import services as inventory_services
from inventory.models import Product
from orders.saga import ORDER_SAGA, CardSummary, OrderSagaData, OrderSagaLine, ShippingAddress
from payments import messages as payment_messages
from payments import services as payment_services
from payments import testcards
from sagas.core.state import step_log
from sagas.messages import Command, Reply
from sagas.models import Saga
from sagas.services import start_saga
from storefront.samples import address


def new_id() -> str:
    return str(uuid.uuid4())


def order_data(**changes: Any) -> OrderSagaData:
    """The order saga's data for one line of 2 x SKU-1 at 12.50, with `changes`."""
    data = OrderSagaData(
        order_id=uuid.uuid4(),
        user_id=7,
        lines=(OrderSagaLine("SKU-1", 2, Decimal("12.50")),),
        total=Decimal("25.00"),
        currency="EUR",
        payment_token="pm_unknown",
        card=CardSummary("visa", "4242"),
        shipping_address=ShippingAddress(**address()),
    )
    return replace(data, **changes)


def order_payload(**overrides: Any) -> dict[str, Any]:
    """The order saga's data as every service command carries it: JSON, where `overrides` may
    put values the typed data would never hold."""
    return {**order_data().to_json(), **overrides}


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


def card_token(number: str = testcards.OK) -> str:
    return payment_services.tokenize_card(
        number=number, exp_month=12, exp_year=date.today().year + 2, cvc="123"
    ).token


def a_saga_waiting_for_its_charge(card: str = testcards.OK) -> Command:
    """An order saga just started (its first commands queued), and the charge it waits for."""
    data = order_data(payment_token=card_token(card))
    saga = start_saga(saga_type=ORDER_SAGA, data=data.to_json(), correlation_id=str(data.order_id))
    return Command(
        payment_messages.CHARGE, str(saga.id), "charge_payment", False, 1, data.to_json()
    )


def charge_status(command: Command) -> str:
    """Where the saga of `command` stands with its charge step."""
    return step_log(Saga.objects.get(id=command.saga_id).state)["charge_payment"]["status"]
