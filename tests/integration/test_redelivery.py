"""A command's reply must reach its saga whatever dies on the way. When the service shares the
saga database, the effect, its stored reply and the reply's landing commit as one transaction: a
worker that dies before the commit leaves nothing, and the redelivery performs the command. With
a database per service (make test-multidb) the effect and its stored reply commit first, in the
service's database, and the reply lands in a second transaction of the saga database: a worker
that dies in between is healed by the queue's redelivery, which answers from the stored reply
and does nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
from django.db import connection, router, transaction
from django.test import override_settings
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from payments import messages, testcards
from payments.models import Charge, PaymentStepRecord
from sagas import cluster, outbox, store, transport
from sagas.broker import PostgresBroker, channel
from sagas.core.state import step_log
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaReply
from sagas.notify import Listener
from tests.services.builders import (
    a_saga_waiting_for_its_charge,
    card_token,
    charge_status,
    order_data,
)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class WorkerDied(Exception):
    """The worker process dies here: nothing after this point runs."""


def test_a_worker_that_dies_before_the_reply_lands_is_healed_by_redelivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = a_saga_waiting_for_its_charge()
    task = [command.to_dict()]  # what django-q2 queued, and delivers again after the crash

    def die(replies: list[Reply]) -> list[str]:
        raise WorkerDied

    monkeypatch.setattr(store, "land", die)
    with pytest.raises(WorkerDied):
        transport.execute(task)

    stored = PaymentStepRecord.objects.filter(saga_id=command.saga_id).first()
    if router.db_for_write(PaymentStepRecord) == router.db_for_write(Saga):
        # One transaction: the charge died with the reply.
        assert stored is None and not Charge.objects.filter(saga_id=command.saga_id).exists()
    else:
        # Committed in the Payment Service: the charge and its stored reply.
        charge = Charge.objects.get(saga_id=command.saga_id)
        assert stored is not None and stored.action_reply is not None
        assert stored.action_reply["outcome"] == Outcome.OK
        assert stored.action_reply["data"] == {"charge_id": charge.pk, "amount": "25.00"}
    assert not SagaReply.objects.exists()

    monkeypatch.undo()
    transport.execute(task)  # the redelivery

    saga = Saga.objects.get(id=command.saga_id)
    assert step_log(saga.state)["charge_payment"]["status"] == "succeeded"  # the reply landed
    assert Charge.objects.filter(saga_id=command.saga_id).count() == 1  # charged once
    if stored is not None:  # answered from the stored reply
        reply = PaymentStepRecord.objects.get(saga_id=command.saga_id).action_reply
        assert reply == stored.action_reply


def test_a_reply_for_a_saga_the_saga_database_does_not_know_is_dropped_not_delivered() -> None:
    # The two databases never share a transaction, so nothing stops a service from answering a
    # saga id that is not (or no longer) in the saga database: delivery drops such a reply.
    data = order_data(payment_token=card_token(testcards.OK))
    ghost = Command(messages.CHARGE, str(uuid.uuid4()), "charge_payment", False, 1, data.to_json())

    transport.execute([ghost.to_dict()])

    assert Charge.objects.filter(saga_id=ghost.saga_id).count() == 1
    assert not SagaReply.objects.exists()


def test_a_refusal_in_a_batch_is_answered_and_the_other_commands_commit() -> None:
    # The batch runs first without savepoints; the refusal sends it round again with them.
    paid = a_saga_waiting_for_its_charge(testcards.OK)
    declined = a_saga_waiting_for_its_charge(testcards.DECLINED)

    assert transport.execute([paid.to_dict(), declined.to_dict()]) == 2

    assert Charge.objects.filter(saga_id=paid.saga_id).count() == 1
    assert not Charge.objects.filter(saga_id=declined.saga_id).exists()
    assert charge_status(paid) == "succeeded"
    assert charge_status(declined) == "refused"
    refused = PaymentStepRecord.objects.get(saga_id=declined.saga_id).action_reply
    assert refused is not None and refused["code"] == "payment_declined"


@pytest.fixture
def own_task(monkeypatch: pytest.MonkeyPatch) -> Callable[[Command], int]:
    """Queue `command` as its task and make it the task this worker executes."""

    def queue(command: Command) -> int:
        with transaction.atomic():
            outbox.enqueue([command])
        task_id = OrmQ.objects.latest("id").pk
        monkeypatch.setattr(transport, "_own_tasks", [task_id])
        return task_id

    return queue


def test_a_task_whose_queue_row_is_gone_does_nothing(own_task: Callable[[Command], int]) -> None:
    command = a_saga_waiting_for_its_charge(testcards.OK)
    OrmQ.objects.filter(pk=own_task(command)).delete()  # done by another worker meanwhile

    assert transport.execute([command.to_dict()]) == 0

    assert not Charge.objects.filter(saga_id=command.saga_id).exists()
    assert charge_status(command) == "running"  # sent, no reply landed


def test_a_task_whose_queue_row_another_worker_holds_does_nothing(
    own_task: Callable[[Command], int],
) -> None:
    command = a_saga_waiting_for_its_charge(testcards.OK)
    task_id = own_task(command)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SELECT id FROM django_q_ormq WHERE id = %s FOR UPDATE", [task_id])

        assert transport.execute([command.to_dict()]) == 0

    assert not Charge.objects.filter(saga_id=command.saga_id).exists()
    assert OrmQ.objects.filter(pk=task_id).exists()  # the holder rolled back: still queued


def test_a_task_takes_its_queue_row_in_the_transaction_that_executes_it(
    own_task: Callable[[Command], int],
) -> None:
    command = a_saga_waiting_for_its_charge(testcards.OK)
    task_id = own_task(command)

    assert transport.execute([command.to_dict()]) == 1

    assert not OrmQ.objects.filter(pk=task_id).exists()
    assert Charge.objects.filter(saga_id=command.saga_id).count() == 1
    assert charge_status(command) == "succeeded"


def queued_lock(command: Command) -> float:
    """Seconds from now until the task queued for `command` can be claimed."""
    with transaction.atomic():
        outbox.enqueue([command])
    return (OrmQ.objects.latest("id").lock - timezone.now()).total_seconds()


def listening(*queues: str) -> dict[str, Listener]:
    """Listeners on the queues' channels, connected (a first wait connects)."""
    listeners = {queue: Listener(channel(queue)) for queue in queues}
    for listener in listeners.values():
        assert listener.wait(0) == [""]  # a new connection: "look", nothing heard yet
    return listeners


def test_each_queue_is_notified_with_its_task_and_the_tasks_row_id() -> None:
    listeners = listening("orders", "inventory", "payments", "shipping")
    try:
        a_saga_waiting_for_its_charge(testcards.OK)  # its three first steps
        heard = {
            queue: listener.wait(5) for queue, listener in listeners.items() if queue != "shipping"
        }
        assert listeners["shipping"].wait(0.2) == []
    finally:
        for listener in listeners.values():
            listener.close()

    queued = OrmQ.objects.values_list("id", "key", "payload")
    assert heard == {key: [f"{pk} {payload}"] for pk, key, payload in queued}


def test_many_commands_for_a_queue_go_as_small_tasks_each_notified_with_its_own_row() -> None:
    # A saga worker deciding many sagas at once: a task is redelivered whole, so it stays small.
    def command(name: str) -> Command:
        return Command(name, str(uuid.uuid4()), "charge_payment", False, 1, {})

    sent = [command("payments.charge") for _ in range(outbox.COMMANDS_PER_TASK * 2 + 1)]
    sent.append(command("orders.create"))
    listeners = listening("payments", "orders")
    try:
        with transaction.atomic():
            outbox.enqueue(sent)
        heard = {queue: listener.wait(5) for queue, listener in listeners.items()}
        heard["payments"] += listeners["payments"].wait(0.5)  # the rest, if any came apart
    finally:
        for listener in listeners.values():
            listener.close()

    queued = list(OrmQ.objects.order_by("id"))
    batches = {task.pk: [c["saga_id"] for c in task.task["args"][0]] for task in queued}
    assert [(task.key, len(batches[task.pk])) for task in queued] == [
        ("orders", 1),
        ("payments", outbox.COMMANDS_PER_TASK),
        ("payments", outbox.COMMANDS_PER_TASK),
        ("payments", 1),
    ]
    assert [saga for task in queued for saga in batches[task.pk]] == [
        c.saga_id for c in sent[-1:] + sent[:-1]
    ]
    assert {queue: sorted(notes) for queue, notes in heard.items()} == {
        queue: sorted(f"{task.pk} {task.payload}" for task in queued if task.key == queue)
        for queue in ("payments", "orders")
    }


def test_a_task_too_large_to_carry_is_notified_bare_and_queued_claimable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "MAX_NOTIFY_PAYLOAD", 20)
    listeners = listening("payments")
    try:
        a_saga_waiting_for_its_charge(testcards.OK)
        heard = listeners["payments"].wait(5)
    finally:
        listeners["payments"].close()

    assert heard == [""]  # a bare wake-up: the pusher claims the task
    (lock,) = OrmQ.objects.filter(key="payments").values_list("lock", flat=True)
    assert lock <= timezone.now()


def test_a_task_its_notification_carries_is_queued_as_claimed_for_retry() -> None:
    command = a_saga_waiting_for_its_charge(testcards.OK)

    assert 0 < queued_lock(command) <= Conf.RETRY


@override_settings(PGBOUNCER_TRANSACTION_MODE=True, DATABASE_LISTEN_URL="")
def test_where_no_pusher_hears_notifications_a_task_is_queued_claimable() -> None:
    # Behind a transaction-mode pooler without DATABASE_LISTEN_URL, the pushers claim every task.
    command = a_saga_waiting_for_its_charge(testcards.OK)

    assert queued_lock(command) <= 0


def test_a_pushers_first_look_takes_the_carried_tasks_its_periodic_looks_leave() -> None:
    # A task carried to a pusher now gone (or sent while its connection was down) is taken at
    # the next pusher's first look, not left waiting for `retry`.
    command = a_saga_waiting_for_its_charge(testcards.OK)
    queued = list(OrmQ.objects.filter(key=command.queue).values_list("id", flat=True))
    broker = PostgresBroker(list_key=command.queue)

    assert broker._claim() == []  # a periodic look: the carried task's lock has not expired
    taken = broker.dequeue()  # the first look

    assert taken is not None and sorted(pk for pk, _ in taken) == sorted(queued)


def test_the_tasks_a_pusher_hands_on_are_recorded_for_the_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A carried task is claimed for `retry`, never claimable before: the watchdog learns of it
    # from the pusher (sagas.cluster), which records when it first handed tasks on.
    watched = cluster.Progress.new()
    watched.taken.value = watched.handed_on.value = before = watched.taken.value - 100
    monkeypatch.setattr(cluster, "progress", watched)
    command = a_saga_waiting_for_its_charge(testcards.OK)
    broker = PostgresBroker(list_key=command.queue)
    broker._all = False  # a periodic look: nothing to hand on

    assert broker.dequeue() is None
    assert watched.handed_on.value == before

    broker._all = True  # the first look takes the carried task
    assert broker.dequeue() is not None
    assert watched.handed_on.value > before
