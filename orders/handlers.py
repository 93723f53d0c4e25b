"""Order Service command handlers: read the saga payload, call one service, shape the reply."""

from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from orders import services
from orders.messages import OrderPayload
from sagas.messages import Command


def create(command: Command) -> dict[str, Any]:
    payload = cast(OrderPayload, command.payload)
    order = services.create_order(
        order_id=UUID(payload["order_id"]),
        saga_id=UUID(command.saga_id),
        user_id=int(payload["user_id"]),
        lines=[
            services.LineSpec(
                sku=line["sku"],
                quantity=int(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
            )
            for line in payload["lines"]
        ],
        total=Decimal(payload["total"]),  # the service refuses sub-cent digits
        currency=payload["currency"],
    )
    return {"order_id": str(order.id), "status": order.status}


def cancel(command: Command, action_data: dict[str, Any]) -> dict[str, Any]:
    order = services.cancel_order(order_id=UUID(action_data["order_id"]))
    return {"order_id": str(order.id), "status": order.status}


def approve(command: Command) -> dict[str, Any]:
    payload = cast(OrderPayload, command.payload)
    order = services.approve_order(order_id=UUID(payload["order_id"]))
    return {"order_id": str(order.id), "status": order.status}
