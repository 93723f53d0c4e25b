"""The order saga: the business process the Order Service owns, as a step graph.

create_order, reserve_stock and charge_payment do not depend on each other (the order id is made
up front), so they run at once. schedule_shipment is the pivot: once a shipment is booked the
order goes forward, and approve_order is retried until it succeeds. If any step up to and
including the pivot fails (shipping refuses the address, say), every step that was sent is
compensated, children before parents.
"""

from __future__ import annotations

from dataclasses import replace

from sagas.config import SagaConfig
from sagas.core.definition import SagaDefinition, Step, StepKind

ORDER_SAGA = "order"


def order_saga(config: SagaConfig) -> SagaDefinition:
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
        (
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
