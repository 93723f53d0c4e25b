"""A sample order: the body `POST /api/orders/` takes, with a test card. It is the API's
documented example, and what the lab's load and the tests place; each part can be varied."""

from __future__ import annotations

from datetime import date
from typing import Any

from payments import testcards


def payment(*, card: str = testcards.OK, **overrides: Any) -> dict[str, Any]:
    return {
        "card_number": card,
        "exp_month": 12,
        # Two years ahead: valid whenever it runs, never too far ahead to be believed.
        "exp_year": date.today().year + 2,
        "cvc": "123",
        **overrides,
    }


def address(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Ada Lovelace",
        "line1": "1 rue de la Paix",
        "city": "Paris",
        "postal_code": "75002",
        "country": "FR",
        **overrides,
    }


def order_body(
    *, sku: str = "MUG-002", quantity: int = 2, card: str = testcards.OK, country: str = "FR"
) -> dict[str, Any]:
    """An order for `quantity` of one product, paid with `card`, shipped to `country`."""
    return {
        "items": [{"sku": sku, "quantity": quantity}],
        "payment": payment(card=card),
        "shipping_address": address(country=country),
    }
