"""The Inventory Service's command contract: command names and the payload fields it reads."""

from typing import TypedDict

RESERVE = "inventory.reserve"
RELEASE = "inventory.release"  # compensates RESERVE


class ReserveLinePayload(TypedDict):
    sku: str
    quantity: int


class ReservePayload(TypedDict):
    """The part of the order saga's data this service reads; other keys are ignored."""

    order_id: str
    lines: list[ReserveLinePayload]
