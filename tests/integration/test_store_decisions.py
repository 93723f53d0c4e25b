"""What the store writes for a decision (docs/architecture.md §3, §9): the saga row's timers and
finish time, its events as the transition function logged them, every command of every input,
and an operator's rejection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from inventory.messages import ReservePayload
from orders.messages import OrderPayload
from orders.saga import ORDER_SAGA
from payments.messages import ChargePayload
from sagas import registry, store, transport
from sagas.core.state import SagaState
from sagas.exceptions import SagaActionRejected
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.services import compensate_saga, retry_saga, start_saga
from shipping.messages import SchedulePayload
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def started() -> Saga:
    return start_saga(saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id="o-1")


def processed(saga: Saga, *replies: Reply) -> Saga:
    """A saga worker reads `replies` from the saga's inbox (where they wait when they land on a
    saga a worker holds) and its timers."""
    SagaReply.objects.bulk_create([SagaReply.from_reply(reply) for reply in replies])
    Saga.objects.filter(id=saga.id).update(due_at=timezone.now())
    store.process("w", store.claim("w", 10, 30))
    return Saga.objects.get(id=saga.id)


def ok(saga: Saga, step: str) -> Reply:
    return Reply(str(saga.id), step, False, 1, Outcome.OK)


def test_a_started_saga_is_due_at_its_first_reply_deadline() -> None:
    before = timezone.now()
    saga = Saga.objects.get(id=started().id)
    deadline = timedelta(seconds=registry.latest(ORDER_SAGA).steps[0].deadline)
    assert saga.due_at is not None
    assert before + deadline <= saga.due_at <= timezone.now() + deadline
    assert saga.finished_at is None


def test_the_commands_an_early_input_decided_are_sent_though_a_later_one_decides_none(
    sent: list[Command],
) -> None:
    saga = started()
    sent.clear()  # the start's own commands
    # Three replies, then the worker's Tick: the last reply sends the pivot, the Tick nothing.
    processed(
        saga, *(ok(saga, step) for step in ("create_order", "reserve_stock", "charge_payment"))
    )
    assert [command.name for command in sent] == ["shipping.schedule"]


def test_events_are_written_with_the_attempt_and_detail_the_decision_logged() -> None:
    saga = started()
    processed(saga, Reply(str(saga.id), "charge_payment", False, 1, Outcome.FAULT, "E", "boom"))
    failed = SagaEvent.objects.get(saga_id=saga.id, kind="step_failed")
    assert (failed.step, failed.attempt, failed.detail) == (
        "charge_payment",
        1,
        {"code": "E", "message": "boom"},
    )
    retry = SagaEvent.objects.get(saga_id=saga.id, kind="retry_scheduled")
    assert retry.attempt == 1 and retry.detail["delay"] > 0


def test_a_finished_saga_records_when_it_finished_once() -> None:
    saga = started()
    compensate_saga(saga_id=saga.id)
    done = processed(
        saga,
        *(
            Reply(str(saga.id), step, True, 1, Outcome.OK)
            for step in ("create_order", "reserve_stock", "charge_payment")
        ),
    )
    assert done.status == "failed" and done.finished_at is not None
    again = processed(done, ok(saga, "create_order"))  # a late reply: nothing changes
    assert again.finished_at == done.finished_at


def test_an_operator_action_that_cannot_apply_is_rejected_and_writes_nothing() -> None:
    saga = started()
    compensate_saga(saga_id=saga.id)
    processed(
        saga,
        Reply(str(saga.id), "create_order", True, 1, Outcome.OK),
        Reply(str(saga.id), "reserve_stock", True, 1, Outcome.OK),
        Reply(str(saga.id), "charge_payment", True, 1, Outcome.OK),
    )
    events = SagaEvent.objects.filter(saga_id=saga.id).count()
    with pytest.raises(SagaActionRejected):
        retry_saga(saga_id=saga.id)
    assert SagaEvent.objects.filter(saga_id=saga.id).count() == events


@pytest.mark.parametrize(
    ("step", "contract"),
    [
        ("create_order", OrderPayload),
        ("reserve_stock", ReservePayload),
        ("charge_payment", ChargePayload),
        ("schedule_shipment", SchedulePayload),
        ("approve_order", OrderPayload),
    ],
)
def test_each_step_carries_the_keys_its_service_reads_of_the_order(
    step: str, contract: type
) -> None:
    definition = registry.latest(ORDER_SAGA)
    carried = definition.step(step).payload_of(order_data().to_json())
    assert set(carried) <= set(contract.__annotations__)
    wanted = {"order_id"} if step == "approve_order" else set(contract.__annotations__)
    assert set(carried) == wanted


def test_the_commands_sent_carry_only_their_steps_share_of_the_data(
    sent: list[Command],
) -> None:
    saga = started()
    by_step = {command.step: command.payload for command in sent}
    assert set(by_step) == {"create_order", "reserve_stock", "charge_payment"}
    assert set(by_step["reserve_stock"]) == {"order_id", "lines"}
    assert by_step["charge_payment"] == {
        key: saga.data[key] for key in ("order_id", "payment_token", "total", "currency")
    }
    assert (
        "card" not in by_step["create_order"] and "shipping_address" not in by_step["create_order"]
    )


def landed(saga: Saga, step: str) -> Saga:
    """A service worker lands the step's reply on the saga, which nobody holds."""
    transport.deliver([ok(saga, step)])
    return Saga.objects.get(id=saga.id)


def past_the_first_steps() -> Saga:
    """A started saga whose three first steps succeeded: the pivot is sent, with a deadline
    later than theirs, which the row still holds."""
    saga = started()
    for step in ("create_order", "reserve_stock", "charge_payment"):
        landed(saga, step)
    return saga


def hot_updates_of_sagas() -> int:
    """HOT updates of the saga table by the current transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'sagas_saga'"
        )
        return cursor.fetchone()[0]


def test_a_decision_keeps_a_due_time_still_ahead_rather_than_move_it_later(
    sent: list[Command],
) -> None:
    saga = started()
    first_deadline = Saga.objects.get(id=saga.id).due_at
    assert first_deadline is not None
    landed(saga, "create_order")
    landed(saga, "reserve_stock")
    sent.clear()
    with transaction.atomic():
        hot = hot_updates_of_sagas()
        after = landed(saga, "charge_payment")
        # The pivot went out with a deadline of its own, later than the first steps' one.
        assert [command.step for command in sent] == ["schedule_shipment"]
        next_due = SagaState.from_json(after.state).due
        assert next_due is not None and next_due > first_deadline.timestamp()
        # The row keeps the earlier time, so no indexed column changed: a HOT update.
        assert after.due_at == first_deadline
        assert hot_updates_of_sagas() == hot + 1


def test_a_worker_that_looks_before_anything_is_due_writes_the_true_due_time(
    sent: list[Command],
) -> None:
    saga = past_the_first_steps()
    sent.clear()
    events = SagaEvent.objects.filter(saga_id=saga.id).count()
    looked = processed(saga)  # due now: the first steps' deadline, which no longer applies
    true_due = SagaState.from_json(looked.state).due
    assert looked.due_at is not None and looked.due_at.timestamp() == true_due
    assert looked.due_at > timezone.now()
    assert sent == [] and SagaEvent.objects.filter(saga_id=saga.id).count() == events
    assert looked.status == "running" and looked.lease_owner == ""


def test_a_worker_writes_the_true_due_time_though_its_clock_has_not_reached_the_stored_one() -> (
    None
):
    saga = past_the_first_steps()
    # Claimed by the database's clock while this host's is behind it: the stored time is still
    # ahead here. Keeping it would leave the saga due, to be claimed again and again.
    ahead = timezone.now() + timedelta(seconds=2)
    Saga.objects.filter(id=saga.id).update(
        due_at=ahead, lease_owner="w", lease_until=ahead, fence=F("fence") + 1
    )
    store.process("w", {saga.id: Saga.objects.get(id=saga.id).fence})
    looked = Saga.objects.get(id=saga.id)
    true_due = SagaState.from_json(looked.state).due
    assert true_due is not None and true_due > ahead.timestamp()
    assert looked.due_at is not None and looked.due_at.timestamp() == true_due
    assert looked.lease_owner == ""
