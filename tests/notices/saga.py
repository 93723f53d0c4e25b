"""Version 2 of the order saga, as the Order Service would add it beside version 1 (see
`orders.saga.ORDER_SAGA_VERSIONS`): the same graph plus a confirmation to the customer once the
order is approved. Kept here, not in `orders`, because only the version-change test uses it."""

from dataclasses import replace

from orders.saga import order_saga_v1
from sagas.config import SagaConfig
from sagas.core.definition import SagaDefinition

SEND = "notices.send"


def order_saga_v2(config: SagaConfig) -> SagaDefinition:
    v1 = order_saga_v1(config)
    # Past the pivot like the approval: retried until it succeeds, never compensated.
    notify = replace(
        v1.step("approve_order"),
        name="notify_customer",
        action=SEND,
        depends_on=("approve_order",),
    )
    return replace(v1, version=2, steps=(*v1.steps, notify))
