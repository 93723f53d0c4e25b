"""Inventory Service command handlers: read the saga payload, call one service, shape the reply."""

from collections import Counter
from typing import Any, cast
from uuid import UUID

from inventory import services
from inventory.messages import ReservePayload
from sagas.messages import Command


def reserve(command: Command) -> dict[str, Any]:
    payload = cast(ReservePayload, command.payload)
    # Repeated SKUs are summed so each product is decremented once, in lock order; each line is
    # checked first so that a negative line cannot hide inside a positive sum.
    quantities: Counter[str] = Counter()
    for line in payload["lines"]:
        quantity = int(line["quantity"])
        if quantity < 1:
            raise ValueError(f"quantity of {line['sku']} must be at least 1, not {quantity}")
        quantities[line["sku"]] += quantity
    reservation = services.reserve_stock(
        saga_id=UUID(command.saga_id), order_id=UUID(payload["order_id"]), quantities=quantities
    )
    return {"reservation_id": reservation.pk, "units": sum(quantities.values())}


def release(command: Command, action_data: dict[str, Any]) -> dict[str, Any]:
    reservation = services.release_stock(reservation_id=int(action_data["reservation_id"]))
    return {"reservation_id": reservation.pk, "status": reservation.status}
