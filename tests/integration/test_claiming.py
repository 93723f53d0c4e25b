"""Claiming, leases and fencing on PostgreSQL with real connections from several threads."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orders.saga import ORDER_SAGA
from sagas import store, transport
from sagas.core.state import step_log
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.services import compensate_saga, retry_saga, start_saga
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql", "claim tests need PostgreSQL (set DATABASE_URL)"


def due_sagas(n: int) -> list[uuid.UUID]:
    ids = [
        start_saga(
            saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id=str(uuid.uuid4())
        ).id
        for _ in range(n)
    ]
    Saga.objects.filter(id__in=ids).update(due_at=timezone.now() - timedelta(seconds=1))
    return ids


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread (its own connection), all released at once."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, threading.Event]:
    """Start `call` in a thread of its own (its own connection); the event is set once it has
    returned."""
    done = threading.Event()

    def run() -> None:
        try:
            call()
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def reply_for(saga_id: uuid.UUID, step: str = "create_order") -> Reply:
    return Reply(str(saga_id), step, False, 1, Outcome.OK)


def in_the_inbox(replies: list[Reply]) -> None:
    """Replies waiting in their sagas' inboxes, as when they landed on sagas a worker held."""
    SagaReply.objects.bulk_create([SagaReply.from_reply(reply) for reply in replies])


def test_concurrent_workers_claim_disjoint_sagas() -> None:
    ids = set(due_sagas(40))
    claims = in_threads(*[lambda n=n: store.claim(f"w{n}", 15, 30) for n in range(4)])
    claimed = [set(c) for c in claims]
    assert sum(len(c) for c in claimed) == 40
    assert set().union(*claimed) == ids
    for a in range(4):
        for b in range(a + 1, 4):
            assert not claimed[a] & claimed[b]


def test_a_leased_saga_is_not_claimed_again_until_its_lease_expires() -> None:
    [saga_id] = due_sagas(1)
    assert saga_id in store.claim("a", 10, lease_seconds=30)
    assert store.claim("b", 10, lease_seconds=30) == {}
    Saga.objects.filter(id=saga_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    taken = store.claim("b", 10, lease_seconds=30)
    assert list(taken) == [saga_id]
    assert Saga.objects.get(id=saga_id).lease_owner == "b"


def test_a_worker_whose_lease_was_taken_over_cannot_commit() -> None:
    [saga_id] = due_sagas(1)
    stale = store.claim("a", 10, lease_seconds=30)
    transport.deliver([reply_for(saga_id)])
    # Worker a pauses past its lease; worker b takes the saga over with a new fence.
    Saga.objects.filter(id=saga_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    fresh = store.claim("b", 10, lease_seconds=30)
    assert fresh[saga_id] == stale[saga_id] + 1
    events_before = SagaEvent.objects.filter(saga_id=saga_id).count()

    assert store.process("a", stale) == 0  # a wakes up: its fence is stale, nothing is written
    assert SagaReply.objects.filter(saga_id=saga_id).count() == 1
    assert SagaEvent.objects.filter(saga_id=saga_id).count() == events_before
    assert step_log(Saga.objects.get(id=saga_id).state)["create_order"]["status"] == "running"

    assert store.process("b", fresh) == 1  # the rightful holder applies the reply
    saga = Saga.objects.get(id=saga_id)
    assert step_log(saga.state)["create_order"]["status"] == "succeeded"
    assert (saga.lease_owner, saga.lease_until) == ("", None)
    assert SagaReply.objects.filter(saga_id=saga_id).count() == 0


def test_the_fence_alone_stops_a_stale_worker_that_shares_its_name_with_the_new_holder() -> None:
    # Two processes started with the same --name (a restart while the old one still runs, a
    # copied unit file): the lease owner cannot tell them apart, only the fencing token can.
    [saga_id] = due_sagas(1)
    stale = store.claim("worker", 10, lease_seconds=30)
    transport.deliver([reply_for(saga_id)])
    Saga.objects.filter(id=saga_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    fresh = store.claim("worker", 10, lease_seconds=30)
    assert fresh[saga_id] == stale[saga_id] + 1
    assert Saga.objects.get(id=saga_id).lease_owner == "worker"  # the owner check passes
    events_before = SagaEvent.objects.filter(saga_id=saga_id).count()

    assert store.process("worker", stale) == 0  # refused on the fence alone
    assert SagaReply.objects.filter(saga_id=saga_id).count() == 1
    assert SagaEvent.objects.filter(saga_id=saga_id).count() == events_before
    saga = Saga.objects.get(id=saga_id)
    assert step_log(saga.state)["create_order"]["status"] == "running"
    assert saga.lease_until is not None  # the new holder's lease stands

    assert store.process("worker", fresh) == 1
    assert step_log(Saga.objects.get(id=saga_id).state)["create_order"]["status"] == "succeeded"


def test_the_owner_stops_a_worker_whose_claim_was_lost_in_a_crash_and_whose_fence_came_back() -> (
    None
):
    # Claims commit without waiting for the WAL flush: a crash can lose one, and the next claim
    # then hands out the same fence number again. Only the owner tells the two holders apart.
    [saga_id] = due_sagas(1)
    before = Saga.objects.values("fence", "lease_owner", "lease_until").get(id=saga_id)
    lost = store.claim("worker-a", 10, lease_seconds=30)
    transport.deliver([reply_for(saga_id)])
    Saga.objects.filter(id=saga_id).update(**before)  # the claim's commit never reached disk
    taken = store.claim("worker-b", 10, lease_seconds=30)
    assert taken[saga_id] == lost[saga_id]
    events_before = SagaEvent.objects.filter(saga_id=saga_id).count()

    assert store.process("worker-a", lost) == 0
    assert SagaEvent.objects.filter(saga_id=saga_id).count() == events_before
    assert store.process("worker-b", taken) == 1


def test_a_reply_delivered_while_a_worker_holds_the_saga_is_decided_after_its_commit() -> None:
    [saga_id] = due_sagas(1)
    claimed = store.claim("a", 10, lease_seconds=30)
    delivered = threading.Event()

    def deliver_late() -> None:
        # Finds the row locked by the processing transaction: the reply waits in the inbox, and
        # the delivery decides it once the worker has committed.
        try:
            transport.deliver([reply_for(saga_id, "reserve_stock")])
            delivered.set()
        finally:
            connection.close()

    thread = threading.Thread(target=deliver_late)
    original_record = store.record

    def record_then_let_the_reply_in(*args: Any, **kwargs: Any) -> None:
        original_record(*args, **kwargs)
        thread.start()
        assert not delivered.wait(0.5), "delivery must wait for the worker's row lock"

    store.record = record_then_let_the_reply_in
    try:
        assert store.process("a", claimed) == 1
    finally:
        store.record = original_record
    thread.join(10)
    assert delivered.is_set()
    assert not SagaReply.objects.filter(saga_id=saga_id).exists()
    assert step_log(Saga.objects.get(id=saga_id).state)["reserve_stock"]["status"] == "succeeded"


def test_a_reply_for_a_saga_nobody_holds_is_decided_where_it_lands() -> None:
    [saga_id] = due_sagas(1)  # started: its first commands are out
    Saga.objects.filter(id=saga_id).update(due_at=None)
    fence = Saga.objects.get(id=saga_id).fence

    transport.deliver([reply_for(saga_id, "reserve_stock")])

    saga = Saga.objects.get(id=saga_id)
    assert step_log(saga.state)["reserve_stock"]["status"] == "succeeded"
    assert not SagaReply.objects.filter(saga_id=saga_id).exists()  # never went to the inbox
    assert saga.fence == fence + 1  # a worker whose lease ran out cannot decide it as well


def test_a_reply_landing_on_a_saga_nobody_holds_decides_its_inbox_too() -> None:
    # Replies left in the inbox (their worker's lease ran out before it decided) are decided
    # with the next reply, where it lands, and consumed.
    [saga_id] = due_sagas(1)
    Saga.objects.filter(id=saga_id).update(due_at=None)
    in_the_inbox([reply_for(saga_id, "create_order"), reply_for(saga_id, "charge_payment")])

    transport.deliver([reply_for(saga_id, "reserve_stock")])

    steps = step_log(Saga.objects.get(id=saga_id).state)
    first = ("create_order", "charge_payment", "reserve_stock")
    assert [steps[step]["status"] for step in first] == ["succeeded"] * 3
    assert steps["schedule_shipment"]["status"] == "running"  # all three in: the pivot is sent
    assert not SagaReply.objects.filter(saga_id=saga_id).exists()


def test_a_reply_for_a_leased_saga_waits_in_its_inbox_for_the_worker() -> None:
    [saga_id] = due_sagas(1)
    claimed = store.claim("b", 10, lease_seconds=30)  # b holds the lease, has not processed yet

    transport.deliver([reply_for(saga_id, "reserve_stock")])

    assert SagaReply.objects.filter(saga_id=saga_id).count() == 1
    saga = Saga.objects.get(id=saga_id)
    assert step_log(saga.state)["reserve_stock"]["status"] != "succeeded"
    assert saga.due_at is not None and saga.due_at <= timezone.now()
    assert store.process("b", claimed) == 1  # b's lease and fence still hold: it decides
    assert step_log(Saga.objects.get(id=saga_id).state)["reserve_stock"]["status"] == "succeeded"
    assert not SagaReply.objects.filter(saga_id=saga_id).exists()


def test_a_reply_is_the_same_reply_after_the_inbox() -> None:
    reply = Reply(str(uuid.uuid4()), "charge_payment", True, 3, Outcome.REFUSED, "c", "m", {"k": 1})

    assert SagaReply.from_reply(reply).to_reply() == reply


def test_a_saga_the_engine_cannot_process_is_parked_stuck_and_a_retry_puts_it_back_to_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (saga_id,) = due_sagas(1)

    def bug(*args: Any) -> Any:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr(store, "decide", bug)
        assert store.process("w", store.claim("w", 10, 30)) == 1
    parked = Saga.objects.get(id=saga_id)
    assert (parked.status, parked.state["status"], parked.due_at) == ("stuck", "stuck", None)
    assert SagaEvent.objects.filter(saga_id=saga_id, kind="engine_error").exists()

    retried = retry_saga(saga_id=saga_id)

    # Back at work, and due now: a worker looks at it again at once.
    assert (retried.status, retried.state["status"]) == ("running", "running")
    assert retried.due_at is not None and retried.due_at <= timezone.now()
    events = SagaEvent.objects.filter(saga_id=saga_id).order_by("id")
    assert list(events.values_list("kind", flat=True))[-2:] == ["engine_error", "saga_running"]


def test_a_batch_decides_the_free_saga_at_once_and_the_locked_one_after_its_lock() -> None:
    free_id, held_id = due_sagas(2)
    Saga.objects.filter(id__in=[free_id, held_id]).update(due_at=None)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # a worker deciding `held_id` right now
        with transaction.atomic():
            Saga.objects.select_for_update(no_key=True).get(id=held_id)
            holding.set()
            release.wait(10)

    holder, _ = in_background(hold)
    assert holding.wait(10)
    deliverer, delivered = in_background(
        lambda: transport.deliver(
            [reply_for(free_id, "reserve_stock"), reply_for(held_id, "reserve_stock")]
        )
    )

    def step(saga_id: uuid.UUID) -> str:
        return str(step_log(Saga.objects.get(id=saga_id).state)["reserve_stock"]["status"])

    deadline = timezone.now() + timedelta(seconds=10)
    while step(free_id) != "succeeded" and timezone.now() < deadline:
        threading.Event().wait(0.05)
    assert step(free_id) == "succeeded"  # committed while the other saga is still locked
    assert step(held_id) != "succeeded" and not delivered.is_set()
    assert SagaReply.objects.filter(saga_id=held_id).count() == 1  # safe in its inbox meanwhile
    release.set()
    holder.join(10)
    deliverer.join(10)
    assert delivered.is_set()
    assert step(held_id) == "succeeded"
    assert not SagaReply.objects.filter(saga_id__in=[free_id, held_id]).exists()


def test_a_landing_that_waited_for_the_row_decides_what_the_holder_put_in_the_inbox() -> None:
    # The holder (a landing that found the saga leased) puts a reply in the inbox and commits
    # while a second landing waits for the row: the waiter's lock statement began before that
    # commit, so its snapshot does not show the reply; it must read the inbox all the same,
    # once the lock is its own, or the reply would wait for the saga's next timer.
    [saga_id] = due_sagas(1)
    Saga.objects.filter(id=saga_id).update(due_at=None)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            Saga.objects.select_for_update(no_key=True).get(id=saga_id)
            holding.set()
            release.wait(10)
            in_the_inbox([reply_for(saga_id, "create_order")])

    holder, _ = in_background(hold)
    assert holding.wait(10)
    deliverer, delivered = in_background(
        lambda: transport.deliver([reply_for(saga_id, "reserve_stock")])
    )
    waiting = timezone.now() + timedelta(seconds=10)
    while not _waits_for_a_lock() and timezone.now() < waiting:
        threading.Event().wait(0.02)
    assert _waits_for_a_lock() and not delivered.is_set()
    release.set()
    holder.join(10)
    deliverer.join(10)

    assert delivered.is_set()
    steps = step_log(Saga.objects.get(id=saga_id).state)
    assert [steps[s]["status"] for s in ("create_order", "reserve_stock")] == ["succeeded"] * 2
    assert not SagaReply.objects.filter(saga_id=saga_id).exists()


def _waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])


def test_a_worker_sleeps_until_the_earliest_timer_of_any_saga_and_not_at_all_when_one_is_due() -> (
    None
):
    assert store.seconds_until_due() == float("inf")  # no saga: nothing will ever fall due

    soon, later = due_sagas(2)
    Saga.objects.filter(id=soon).update(due_at=timezone.now() + timedelta(seconds=5))
    Saga.objects.filter(id=later).update(due_at=timezone.now() + timedelta(seconds=50))
    Saga.objects.create(type=ORDER_SAGA, data={}, state={}, correlation_id="finished", due_at=None)
    assert 4 < store.seconds_until_due() <= 5

    Saga.objects.filter(id=later).update(due_at=timezone.now() - timedelta(seconds=3))
    assert store.seconds_until_due() == 0.0  # overdue: at once, never a negative sleep


def test_one_batch_records_the_events_and_commands_of_every_saga_it_processed(
    sent: list[Command],
) -> None:
    first, second = due_sagas(2)
    in_the_inbox(
        [
            Reply(str(saga_id), "charge_payment", False, 1, Outcome.REFUSED, "payment_declined")
            for saga_id in (first, second)
        ]
    )
    sent.clear()  # the starts' own commands
    assert store.process("w", store.claim("w", 10, 30)) == 2
    assert {command.saga_id for command in sent} == {
        str(first),
        str(second),
    }  # both turn back: compensations out
    for saga_id in (first, second):
        assert SagaEvent.objects.filter(saga_id=saga_id, kind="step_refused").exists()


def test_a_parked_saga_keeps_its_replies_for_when_it_is_repaired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (saga_id,) = due_sagas(1)
    in_the_inbox([reply_for(saga_id)])

    def bug(*args: Any) -> Any:
        raise RuntimeError("x" * 600)

    monkeypatch.setattr(store, "decide", bug)
    store.process("w", store.claim("w", 10, 30))

    assert SagaReply.objects.filter(saga_id=saga_id).count() == 1
    [error] = SagaEvent.objects.filter(saga_id=saga_id, kind="engine_error")
    assert error.detail == {"error": repr(RuntimeError("x" * 600))[:500]}


def test_an_operators_decision_clears_the_lease_and_moves_the_fence_one_up() -> None:
    (saga_id,) = due_sagas(1)
    claimed = store.claim("worker", 10, lease_seconds=30)

    compensate_saga(saga_id=saga_id)

    saga = Saga.objects.get(id=saga_id)
    assert (saga.lease_owner, saga.lease_until, saga.fence) == ("", None, claimed[saga_id] + 1)
    assert store.process("worker", claimed) == 0  # the worker decided from the state before


def test_a_repeated_operators_decision_on_a_row_stored_in_an_older_form_writes_nothing() -> None:
    # Rows written before the compact form hold each step as a dict of its fields: a repeat is
    # judged on the state, not on its stored form, so it leaves a worker that holds the saga alone.
    (saga_id,) = due_sagas(1)
    compensate_saga(saga_id=saga_id)
    saga = Saga.objects.get(id=saga_id)
    saga.state = {**saga.state, "steps": step_log(saga.state)}  # the older form
    saga.due_at = timezone.now()  # for the worker to claim it
    saga.save(update_fields=["state", "due_at"])
    claimed = store.claim("worker", 10, lease_seconds=30)

    compensate_saga(saga_id=saga_id)

    assert Saga.objects.get(id=saga_id).fence == claimed[saga_id]
    assert store.process("worker", claimed) == 1
