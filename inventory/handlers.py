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


def lock_stock(commands: list[Command]) -> None:
    """Lock the products that these commands, run in one transaction, will change: reserved
    ones from the payloads, released ones from their sagas' reservations (what a line that a
    handler refuses names is locked all the same, and does no harm)."""
    skus: set[str] = set()
    for command in commands:
        lines = None if command.compensation else command.payload.get("lines")
        if isinstance(lines, list):
            skus.update(
                line["sku"]
                for line in lines
                if isinstance(line, dict) and isinstance(line.get("sku"), str)
            )
    releasing = [UUID(command.saga_id) for command in commands if command.compensation]
    services.lock_products(skus, releasing=releasing)
