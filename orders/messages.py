"""The Order Service's command contract: command names and the payload fields it reads."""

from typing import TypedDict

CREATE = "orders.create"
CANCEL = "orders.cancel"  # compensates CREATE
APPROVE = "orders.approve"  # retriable: no compensation


class OrderLinePayload(TypedDict):
    sku: str
    quantity: int
    unit_price: str  # decimal string, e.g. "12.50"


class OrderPayload(TypedDict):
    """The part of the order saga's data this service reads; other keys are ignored."""

    order_id: str
    user_id: int
    lines: list[OrderLinePayload]
    total: str  # decimal string
    currency: str
