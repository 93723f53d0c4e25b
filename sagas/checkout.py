"""Placing an order: price the lines from the catalogue, tokenise the card in the Payment
Service, and start the order saga. Nothing here waits on a service's queue."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from inventory.selectors import products_by_sku
from orders.saga import ORDER_SAGA
from payments.exceptions import InvalidCard
from payments.services import tokenize_card
from sagas.models import Saga
from sagas.services import start_saga


class OrderRejected(Exception):
    """The order cannot be placed as asked; `fields` maps request fields to messages."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__("the order is invalid")
        self.fields = fields


def place_order(
    *,
    owner_id: int,
    items: list[dict[str, Any]],
    payment: dict[str, Any],
    shipping_address: dict[str, str],
) -> Saga:
    skus = [item["sku"] for item in items]
    products = products_by_sku(skus)
    unknown = [sku for sku in skus if sku not in products]
    if unknown:
        raise OrderRejected({"items": [f"unknown SKU: {', '.join(sorted(unknown))}"]})
    currencies = {products[sku]["currency"] for sku in skus}
    if len(currencies) > 1:
        raise OrderRejected({"items": ["all items must be priced in one currency"]})
    lines = [
        {
            "sku": item["sku"],
            "quantity": item["quantity"],
            "unit_price": str(products[item["sku"]]["price"]),
        }
        for item in items
    ]
    total = sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal("0"))
    try:
        # The card number and CVC stop here: only the token travels on.
        method = tokenize_card(
            number=payment["card_number"],
            exp_month=payment["exp_month"],
            exp_year=payment["exp_year"],
            cvc=payment["cvc"],
        )
    except InvalidCard as invalid:
        errors = {
            ("card_number" if name == "number" else name): messages
            for name, messages in invalid.field_errors.items()
        }
        raise OrderRejected({"payment": errors}) from None
    order_id = uuid.uuid4()
    data = {
        "order_id": str(order_id),
        "user_id": owner_id,
        "lines": lines,
        "total": str(total),
        "currency": currencies.pop(),
        "payment_token": method.token,
        "card": {"brand": method.brand, "last4": method.last4},
        "shipping_address": shipping_address,
    }
    return start_saga(
        saga_type=ORDER_SAGA, data=data, correlation_id=str(order_id), owner_id=owner_id
    )
