"""Payment Service command handlers: read the saga payload, call one service, shape the reply."""

from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from payments import services
from payments.messages import ChargePayload
from sagas.messages import Command


def charge(command: Command) -> dict[str, Any]:
    payload = cast(ChargePayload, command.payload)
    done = services.charge_payment(
        saga_id=UUID(command.saga_id),
        order_id=UUID(payload["order_id"]),
        payment_token=payload["payment_token"],
        amount=Decimal(payload["total"]),  # the service refuses sub-cent digits
        currency=payload["currency"],
    )
    return {"charge_id": done.pk, "amount": str(done.amount)}


def refund(command: Command, action_data: dict[str, Any]) -> dict[str, Any]:
    done = services.refund_charge(charge_id=int(action_data["charge_id"]))
    return {"refund_id": done.pk, "charge_id": done.charge_id, "amount": str(done.amount)}
