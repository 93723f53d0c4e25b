"""Shipping Service command handlers: read the saga payload, call one service, shape the reply."""

from typing import Any, cast
from uuid import UUID

from sagas.messages import Command
from shipping import services
from shipping.messages import SchedulePayload


def schedule(command: Command) -> dict[str, Any]:
    payload = cast(SchedulePayload, command.payload)
    address = payload["shipping_address"]
    shipment = services.schedule_shipment(
        saga_id=UUID(command.saga_id),
        order_id=UUID(payload["order_id"]),
        address=services.Address(
            name=address["name"],
            line1=address["line1"],
            city=address["city"],
            postal_code=address["postal_code"],
            country=address["country"],
        ),
    )
    return {"shipment_id": shipment.pk}


def cancel(command: Command, action_data: dict[str, Any]) -> dict[str, Any]:
    shipment = services.cancel_shipment(shipment_id=int(action_data["shipment_id"]))
    return {"shipment_id": shipment.pk, "status": shipment.status}
