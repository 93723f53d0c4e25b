"""The order saga: the business process the Order Service owns, as a step graph, and the data
it carries.

create_order, reserve_stock and charge_payment do not depend on each other (the order id is made
up front), so they run at once. schedule_shipment is the pivot: once a shipment is booked the
order goes forward, and approve_order is retried until it succeeds. If any step up to and
including the pivot fails (shipping refuses the address, say), every step that was sent is
compensated, children before parents.

The saga is versioned (docs/architecture.md §10): `ORDER_SAGA_VERSIONS` holds every version an
order in flight may still use, and the Order Service registers them all; new orders start with
the last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from sagas.config import SagaConfig
from sagas.core.definition import SagaDefinition, Step, StepKind
from sagas.messages import money

ORDER_SAGA = "order"


@dataclass(frozen=True)
class OrderSagaLine:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class CardSummary:
    """What is kept of a card once it is tokenised: never its number or its CVC."""

    brand: str
    last4: str


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class OrderSagaData:
    """The order saga's data: stored in `Saga.data` and sent with every command, of which each
    service reads its part (its `messages.py` says which).

    As JSON, ids and amounts are strings, so money never passes through a float; `to_json` and
    `from_json` keep the shape every stored saga already has.
    """

    order_id: UUID
    user_id: int
    lines: tuple[OrderSagaLine, ...]
    total: Decimal
    currency: str
    payment_token: str
    card: CardSummary
    shipping_address: ShippingAddress

    def to_json(self) -> dict[str, Any]:
        address = self.shipping_address
        return {
            "order_id": str(self.order_id),
            "user_id": self.user_id,
            "lines": [
                {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price)}
                for line in self.lines
            ],
            "total": str(self.total),
            "currency": self.currency,
            "payment_token": self.payment_token,
            "card": {"brand": self.card.brand, "last4": self.card.last4},
            "shipping_address": {
                "name": address.name,
                "line1": address.line1,
                "city": address.city,
                "postal_code": address.postal_code,
                "country": address.country,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderSagaData:
        return cls(
            order_id=UUID(data["order_id"]),
            user_id=int(data["user_id"]),
            lines=tuple(
                OrderSagaLine(line["sku"], int(line["quantity"]), money(line["unit_price"]))
                for line in data["lines"]
            ),
            total=money(data["total"]),
            currency=data["currency"],
            payment_token=data["payment_token"],
            card=CardSummary(**data["card"]),
            shipping_address=ShippingAddress(**data["shipping_address"]),
        )


# What each step's commands carry of the order (OrderSagaData's keys): what its service's
# handler reads (orders/messages.py, payments/messages.py, ...); compensations read the action's
# stored result instead. Nothing more travels through the queues.
PAYLOADS: dict[str, tuple[str, ...]] = {
    "create_order": ("order_id", "user_id", "lines", "total", "currency"),
    "reserve_stock": ("order_id", "lines"),
    "charge_payment": ("order_id", "payment_token", "total", "currency"),
    "schedule_shipment": ("order_id", "shipping_address"),
    "approve_order": ("order_id",),
}


def order_saga_v1(config: SagaConfig) -> SagaDefinition:
    """Version 1: the three independent steps, the shipment as the pivot, then the approval.

    A version's step graph never changes once orders use it (they are decided by it to the end);
    the settings it reads (retry policies, deadlines) may, as they do for every version.
    """

    def step(
        name: str,
        action: str,
        compensation: str | None = None,
        *,
        depends_on: tuple[str, ...] = (),
        kind: StepKind = StepKind.COMPENSATABLE,
    ) -> Step:
        return Step(
            name,
            action,
            compensation,
            depends_on,
            kind,
            retry=config.retry,
            compensation_retry=config.compensation_retry,
            deadline=config.step_deadline,
            payload=PAYLOADS[name],
        )

    first = ("create_order", "reserve_stock", "charge_payment")
    approve = step(
        "approve_order",
        "orders.approve",
        depends_on=("schedule_shipment",),
        kind=StepKind.RETRIABLE,
    )
    return SagaDefinition(
        ORDER_SAGA,
        version=1,
        steps=(
            step("create_order", "orders.create", "orders.cancel"),
            step("reserve_stock", "inventory.reserve", "inventory.release"),
            step("charge_payment", "payments.charge", "payments.refund"),
            step(
                "schedule_shipment",
                "shipping.schedule",
                "shipping.cancel",
                depends_on=first,
                kind=StepKind.PIVOT,
            ),
            # After the pivot the order must go forward: many more attempts before it parks as stuck.
            replace(
                approve, retry=replace(config.retry, max_attempts=config.retry.max_attempts * 4)
            ),
        ),
    )


# Every version of the order saga that an order in flight may still use, oldest first; new
# orders start with the last. To change the saga, add a version beside the others, e.g.
#
#     def order_saga_v2(config: SagaConfig) -> SagaDefinition:
#         v1 = order_saga_v1(config)
#         return replace(v1, version=2, steps=(*v1.steps, Step("notify_customer", ...)))
#
#     ORDER_SAGA_VERSIONS = (order_saga_v1, order_saga_v2)
#
# deploy, and remove order_saga_v1 once `manage.py saga versions` shows no order of version 1 in
# flight (the check sagas.E004 refuses a deploy that removes it sooner).
ORDER_SAGA_VERSIONS: tuple[Callable[[SagaConfig], SagaDefinition], ...] = (order_saga_v1,)


def order_saga_versions(config: SagaConfig) -> list[SagaDefinition]:
    """Every registered version, oldest first."""
    return [build(config) for build in ORDER_SAGA_VERSIONS]


def order_saga(config: SagaConfig) -> SagaDefinition:
    """The current version: the one new orders start with."""
    return ORDER_SAGA_VERSIONS[-1](config)
