"""Order Service through the participant protocol: create once, cancel once, approve later."""

from uuid import UUID

import pytest
from django.db import transaction

from orders import messages
from orders.exceptions import OrderStateConflict
from orders.models import Order, OrderStepRecord
from orders.services import cancel_order
from sagas.messages import Command
from sagas.participant import perform
from tests.services.builders import again, command, essence, order_payload, undo

pytestmark = pytest.mark.django_db


def create_command(**payload: object) -> Command:
    return command(messages.CREATE, "create_order", payload=order_payload(**payload))


def approve_command(created: Command) -> Command:
    """The saga's later step for the same order: same saga and payload, its own key."""
    return command(
        messages.APPROVE, "approve_order", saga_id=created.saga_id, payload=created.payload
    )


def test_create_applies_once_and_repeats_its_reply() -> None:
    sent = create_command(
        user_id=42,
        total="40.00",
        lines=[
            {"sku": "SKU-2", "quantity": 1, "unit_price": "15.00"},
            {"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"},
        ],
    )

    first = perform(sent)
    second = perform(again(sent))

    assert first.outcome == "ok"
    assert essence(second) == essence(first)
    order = Order.objects.get()
    assert first.data == {"order_id": sent.payload["order_id"], "status": "pending"}
    assert (order.user_id, str(order.total), order.currency) == (42, "40.00", "EUR")
    assert str(order.saga_id) == sent.saga_id
    assert sorted(
        (line.sku, line.quantity, str(line.unit_price)) for line in order.lines.all()
    ) == [("SKU-1", 2, "12.50"), ("SKU-2", 1, "15.00")]


def test_cancel_before_create_leaves_a_tombstone() -> None:
    sent = create_command()

    reply = perform(undo(sent, messages.CANCEL))

    assert reply.outcome == "ok"
    assert reply.data == {"undone": False, "tombstone": True}
    assert OrderStepRecord.objects.filter(saga_id=sent.saga_id).count() == 1


def test_create_after_its_cancel_is_refused_and_creates_nothing() -> None:
    sent = create_command()
    perform(undo(sent, messages.CANCEL))

    late = perform(sent)

    assert (late.outcome, late.code) == ("refused", "compensated")
    assert not Order.objects.exists()


def test_cancel_twice_cancels_once() -> None:
    sent = create_command()
    perform(sent)

    first = perform(undo(sent, messages.CANCEL))
    cancelled_at = Order.objects.get().updated_at
    second = perform(again(undo(sent, messages.CANCEL)))

    assert first.data == {"order_id": sent.payload["order_id"], "status": "cancelled"}
    assert essence(second) == essence(first)
    assert Order.objects.get().updated_at == cancelled_at


def test_cancelling_an_already_cancelled_order_changes_nothing() -> None:
    sent = create_command()
    perform(sent)
    order = cancel_order(order_id=UUID(sent.payload["order_id"]))

    again_cancelled = cancel_order(order_id=UUID(sent.payload["order_id"]))

    assert again_cancelled.status == Order.Status.CANCELLED
    assert Order.objects.get().updated_at == order.updated_at


def test_approve_marks_the_order_approved_once() -> None:
    created = create_command()
    perform(created)

    first = perform(approve_command(created))
    second = perform(again(approve_command(created)))

    assert first.data == {"order_id": created.payload["order_id"], "status": "approved"}
    assert essence(second) == essence(first)
    assert Order.objects.get().status == Order.Status.APPROVED


def test_approve_of_a_missing_order_is_a_fault_that_stores_nothing() -> None:
    created = create_command()

    with pytest.raises(Order.DoesNotExist):
        perform(approve_command(created))

    assert not OrderStepRecord.objects.exists()


def test_approving_a_cancelled_order_is_a_fault() -> None:
    created = create_command()
    perform(created)
    perform(undo(created, messages.CANCEL))

    with pytest.raises(OrderStateConflict):
        perform(approve_command(created))

    assert Order.objects.get().status == Order.Status.CANCELLED
    assert not OrderStepRecord.objects.filter(step="approve_order").exists()


def test_cancelling_an_approved_order_is_a_conflict_an_operator_must_look_at() -> None:
    created = create_command()
    perform(created)
    perform(approve_command(created))
    order = Order.objects.get()

    # Called in a transaction of the caller's, the service takes no savepoint: the caller rolls
    # back (here a savepoint of the test's own).
    with (
        pytest.raises(
            OrderStateConflict, match=f"order {order.pk} is approved, cannot become cancelled"
        ),
        transaction.atomic(),
    ):
        cancel_order(order_id=order.pk)

    assert Order.objects.get().status == Order.Status.APPROVED


@pytest.mark.parametrize(
    "payload",
    [
        {"total": "25.001"},
        {"lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.5005"}], "total": "25.00"},
    ],
    ids=["total", "unit price"],
)
def test_an_order_with_a_sub_cent_amount_is_a_fault_that_creates_nothing(
    payload: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="two decimal places"):
        perform(create_command(**payload))

    assert not Order.objects.exists()  # refused, never rounded
    assert not OrderStepRecord.objects.exists()
