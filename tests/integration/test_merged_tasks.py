"""Tasks that wait together at a pusher go on as one task, performed in one transaction
(docs/architecture.md §3, "Merged under load")."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django_q import monitor
from django_q.conf import Conf
from django_q.models import Failure, OrmQ, Task
from django_q.signals import post_execute
from django_q.signing import SignedPackage
from prometheus_client import REGISTRY

from inventory import messages as inventory_messages
from payments.models import Charge
from sagas import broker, cluster, store, transport
from sagas.broker import PostgresBroker
from sagas.config import saga_config
from sagas.messages import Command, Outcome, Reply
from sagas.participant import lock_first
from tests.services.builders import (
    a_saga_waiting_for_its_charge,
    available,
    charge_status,
    command,
    order_payload,
    product,
    undo,
)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def charge_tasks(count: int) -> tuple[list[Command], list[tuple[int, str]]]:
    """`count` sagas waiting for their charge, and the payments queue's tasks for them: the
    rows as their notifications carry them."""
    commands = [a_saga_waiting_for_its_charge() for _ in range(count)]
    rows = OrmQ.objects.filter(key="payments").order_by("id").values_list("id", "payload")
    return commands, list(rows)


def delivered() -> tuple[float, float]:
    """`saga_service_tasks_per_delivery` so far: how many deliveries, how many tasks."""
    count = REGISTRY.get_sample_value("saga_service_tasks_per_delivery_count") or 0.0
    return count, REGISTRY.get_sample_value("saga_service_tasks_per_delivery_sum") or 0.0


def run_merged(task: tuple[int, str]) -> int:
    """What a worker does with a task the pusher handed on (its row and payload): how many
    commands it performed."""
    done = worker_runs(handed(task))
    assert done["success"], done["result"]
    return int(done["result"])


def handed(task: tuple[int, str]) -> dict[str, Any]:
    """`task` (its row and payload) as its pusher hands it to a worker."""
    return {**SignedPackage.loads(task[1]), "ack_id": task[0]}


def worker_runs(package: dict[str, Any]) -> dict[str, Any]:
    """What a django-q2 worker does with a command task, merged or not, up to the result it
    hands the monitor: its hooks before and after, the body between."""
    body = transport.execute_tasks if package["func"] == broker.MERGED_TASKS else transport.execute
    transport.take_acknowledgement(None, package["func"], package)
    try:
        package["result"] = body(*package["args"])
        package["success"] = True
    except Exception as exc:
        package["result"], package["success"] = repr(exc), False
    package["stopped"] = timezone.now()
    transport.give_back_acknowledgement(None, package["func"], package)
    return package


def fails(monkeypatch: pytest.MonkeyPatch, task: tuple[int, str]) -> dict[str, Any]:
    """A delivery of `task` (its row and payload) whose landing fails, as its worker ends it."""

    def landing_fails(replies: list[Reply]) -> list[str]:
        raise TimeoutError

    with monkeypatch.context() as patched:
        patched.setattr(store, "land", landing_fails)
        return worker_runs(handed(task))


@pytest.fixture
def carried_to_a_pusher() -> Iterator[Callable[[list[tuple[int, str]]], PostgresBroker]]:
    """The payments queue's broker, listening, past its first look, to which the notifications
    of these (already queued) tasks have just carried them."""
    pushers: list[PostgresBroker] = []

    def pusher(rows: list[tuple[int, str]]) -> PostgresBroker:
        pushers.append(listening := PostgresBroker(list_key="payments"))
        assert listening._listener.wait(0) == [""]  # connected: a first look, nothing heard
        listening._all = False  # periodic looks from here: only what notifications carry
        listening._take([f"{pk} {payload}" for pk, payload in rows])
        return listening

    yield pusher
    for listening in pushers:
        listening._listener.close()


def test_tasks_that_wait_together_at_a_pusher_go_on_as_one(
    carried_to_a_pusher: Callable[[list[tuple[int, str]]], PostgresBroker],
) -> None:
    _, rows = charge_tasks(3)
    pusher = carried_to_a_pusher(rows)

    (task,) = pusher.dequeue() or []

    package = SignedPackage.loads(task[1])
    assert package["func"] == broker.MERGED_TASKS
    assert task[0] == rows[0][0]
    assert list(package["args"][0]) == rows


def test_a_task_that_arrives_alone_goes_on_alone(
    carried_to_a_pusher: Callable[[list[tuple[int, str]]], PostgresBroker],
) -> None:
    _, rows = charge_tasks(1)

    assert carried_to_a_pusher(rows).dequeue() == rows


def test_merged_tasks_take_their_rows_and_land_their_replies_in_one_transaction() -> None:
    commands, rows = charge_tasks(3)
    (task,) = broker.merged(rows, "payments")
    statements: list[str] = []

    def seen(run: Any, sql: str, *rest: Any) -> Any:
        statements.append(sql)
        return run(sql, *rest)

    deliveries = delivered()
    with connection.execute_wrapper(seen):
        assert run_merged(task) == 3

    assert delivered() == (deliveries[0] + 1, deliveries[1] + 3)  # one delivery of three tasks

    assert not OrmQ.objects.filter(key="payments").exists()
    assert [charge_status(sent) for sent in commands] == ["succeeded"] * 3
    assert [Charge.objects.filter(saga_id=sent.saga_id).count() for sent in commands] == [1] * 3
    # One DELETE took all three rows: the statement that acknowledges them together.
    assert statements.count(transport.TAKE) == 1


def test_a_merged_task_whose_row_is_gone_is_left_out() -> None:
    commands, rows = charge_tasks(2)
    OrmQ.objects.filter(pk=rows[0][0]).delete()  # done by another worker meanwhile

    assert run_merged(broker.merged(rows, "payments")[0]) == 1

    assert not Charge.objects.filter(saga_id=commands[0].saga_id).exists()
    assert charge_status(commands[0]) == "running"
    assert charge_status(commands[1]) == "succeeded"


def test_merged_tasks_that_fail_together_run_each_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    commands, rows = charge_tasks(2)
    land = store.land
    landed: list[int] = []

    def land_but_not_two_sagas_at_once(replies: list[Reply]) -> list[str]:
        landed.append(len(replies))
        if len(replies) > 1:  # as a deadlock would end the transaction
            raise OperationalError("deadlock detected")
        return land(replies)

    monkeypatch.setattr(store, "land", land_but_not_two_sagas_at_once)

    assert run_merged(broker.merged(rows, "payments")[0]) == 2

    assert landed == [2, 1, 1]
    assert not OrmQ.objects.filter(key="payments").exists()
    assert [charge_status(sent) for sent in commands] == ["succeeded"] * 2
    assert [Charge.objects.filter(saga_id=sent.saga_id).count() for sent in commands] == [1] * 2


def test_a_merged_task_that_fails_alone_comes_back_after_retry_as_a_task_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The merged task does not fail: django-q2 would keep its failure for ever, since the tasks
    # inside come back under their own ids.
    commands, rows = charge_tasks(2)
    OrmQ.objects.filter(pk__in=[pk for pk, _ in rows]).update(lock=timezone.now())
    land = store.land
    stuck = commands[0].saga_id

    def the_first_saga_cannot_land(replies: list[Reply]) -> list[str]:
        if any(reply.saga_id == stuck for reply in replies):
            raise OperationalError("deadlock detected")
        return land(replies)

    monkeypatch.setattr(store, "land", the_first_saga_cannot_land)

    assert run_merged(broker.merged(rows, "payments")[0]) == 1

    (left,) = OrmQ.objects.filter(key="payments")
    assert left.pk == rows[0][0]
    assert left.lock > timezone.now() + timedelta(seconds=Conf.RETRY - 5)
    assert not Charge.objects.filter(saga_id=stuck).exists()
    assert charge_status(commands[0]) == "running"
    assert charge_status(commands[1]) == "succeeded"


def test_a_task_that_fails_comes_back_after_retry_and_its_success_mends_the_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands, rows = charge_tasks(1)
    OrmQ.objects.filter(pk=rows[0][0]).update(lock=timezone.now())

    failed = fails(monkeypatch, rows[0])

    # django-q2's own rules apply to it again (attempts, acknowledging failures), and its row
    # comes back after retry.
    assert failed["ack_id"] == rows[0][0] and not failed["success"]
    (row,) = OrmQ.objects.filter(key="payments")
    assert row.lock > timezone.now() + timedelta(seconds=Conf.RETRY - 5)
    assert row.payload == rows[0][1]
    monitor.save_task(failed, None)
    assert Failure.objects.count() == 1

    done = worker_runs(handed((row.pk, row.payload)))

    assert done["success"] and charge_status(commands[0]) == "succeeded"
    monitor.save_task(done, None)
    assert not Failure.objects.exists()  # the failed list holds no task that was done


def test_the_delivery_that_does_a_failed_task_mends_its_failure_as_it_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whichever delivery it is (this one holds the payload from before the failure, as a
    # duplicate would), and with no save of its result by the monitor (one whose connection is
    # cut drops it: django-q2 logs "Could not save task result").
    commands, (task,) = charge_tasks(1)
    OrmQ.objects.filter(pk=task[0]).update(lock=timezone.now())

    failed = fails(monkeypatch, task)
    monitor.save_task(failed, None)
    assert Failure.objects.count() == 1

    done = worker_runs(handed(task))

    assert done["success"] and charge_status(commands[0]) == "succeeded"
    assert not Failure.objects.exists()
    (record,) = Task.objects.all()
    assert (record.id, record.success, record.attempt_count) == (failed["id"], True, 2)


def test_merged_tasks_cut_by_the_timeout_leave_no_failure_and_come_back_each_alone() -> None:
    _, rows = charge_tasks(2)
    (task,) = broker.merged(rows, "payments")
    package = handed(task)
    transport.take_acknowledgement(None, package["func"], package)
    # django-q2's timeout strikes (a SystemExit) before the body's transaction commits.
    package.update(result="Task exceeded maximum timeout value", success=False)
    package["stopped"] = timezone.now()
    transport.give_back_acknowledgement(None, package["func"], package)

    monitor_saves(package)

    assert not Failure.objects.exists()  # no failure under the merged task's id, never mended
    left = OrmQ.objects.filter(key="payments").order_by("id")
    assert [row.pk for row in left] == [pk for pk, _ in rows]
    assert all(row.lock > timezone.now() + timedelta(seconds=Conf.RETRY - 5) for row in left)


def test_a_failure_recorded_after_a_duplicate_delivery_did_the_task_is_mended_by_the_monitor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The duplicate took the deferred row before the monitor saved the failure: its statement
    # had nothing to mend. The monitor, once it has saved the failure, finds the row gone.
    commands, (task,) = charge_tasks(1)

    failed = fails(monkeypatch, task)
    assert OrmQ.objects.filter(pk=task[0]).exists()  # deferred
    assert worker_runs(handed(task))["success"]

    monitor_saves(failed)

    assert charge_status(commands[0]) == "succeeded"
    assert not Failure.objects.exists()


def test_a_failure_whose_task_is_still_to_do_or_failed_for_good_stays_on_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, rows = charge_tasks(2)

    to_do, for_good = (fails(monkeypatch, row) for row in rows)
    # The second has failed `max_attempts` times: the monitor deletes its row (acknowledges it).
    Task.objects.create(
        id=for_good["id"],
        name=for_good["name"],
        func=for_good["func"],
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
        attempt_count=Conf.MAX_ATTEMPTS - 1,
    )
    OrmQ.objects.filter(pk=rows[1][0]).delete()
    del for_good["ack_id"]  # acknowledged: deleted above

    monitor_saves(to_do)
    monitor_saves(for_good)

    assert sorted(Failure.objects.values_list("id", flat=True)) == sorted(
        [to_do["id"], for_good["id"]]
    )


def monitor_saves(task: dict[str, Any]) -> None:
    """What django-q2's monitor does with a result from its workers: save it, acknowledge it
    (here: nothing to acknowledge for a failure), then send `post_execute`."""
    monitor.save_task(task, None)
    task.pop("ack_id", None)
    post_execute.send(sender="django_q", task=task)


def test_a_delivery_that_finds_the_task_done_mends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its row gone, it did not do the task: a failure recorded for it stands until the delivery
    # that does it commits (or was mended when that one committed).
    _, (task,) = charge_tasks(1)

    failed = fails(monkeypatch, task)
    monitor.save_task(failed, None)
    OrmQ.objects.filter(pk=task[0]).delete()

    assert worker_runs(handed(task))["result"] == 0
    assert Failure.objects.count() == 1


def test_a_task_whose_connection_was_cut_after_its_commit_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's connection is gone when its hook looks at the task's rows: it takes another.
    commands, rows = charge_tasks(1)

    def cut_after_the_commit(what: str) -> None:
        if what == "executed":  # as an operator's pg_terminate_backend would
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with monkeypatch.context() as patched:
        patched.setattr(cluster, "mark", cut_after_the_commit)
        done = worker_runs(handed(rows[0]))

    assert done["success"] and "ack_id" not in done
    assert charge_status(commands[0]) == "succeeded"
    monitor.save_task(done, None)
    assert not Failure.objects.exists()


def test_a_task_whose_commit_went_through_though_its_worker_saw_an_error_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands, rows = charge_tasks(1)

    def cut_after_the_commit(what: str) -> None:
        if what == "executed":  # the task's transaction has committed
            raise OperationalError("terminating connection due to administrator command")

    with monkeypatch.context() as patched:
        patched.setattr(cluster, "mark", cut_after_the_commit)
        done = worker_runs(handed(rows[0]))

    assert done["success"] and "ack_id" not in done
    assert charge_status(commands[0]) == "succeeded"
    assert not OrmQ.objects.filter(key="payments").exists()
    monitor.save_task(done, None)
    assert not Failure.objects.exists()  # nothing on the failed list that nothing would mend


@pytest.mark.parametrize("holder_commits", [True, False], ids=["it commits", "it rolls back"])
def test_a_failed_task_whose_row_a_duplicate_delivery_holds_waits_for_its_end(
    monkeypatch: pytest.MonkeyPatch, holder_commits: bool
) -> None:
    # A duplicate delivery of the task has taken its row (deleted, not yet committed) when this
    # delivery fails. Its end decides: committed, the task is done and nothing stays on the
    # failed list; rolled back, the row is deferred.
    _, rows = charge_tasks(1)
    pk, payload = rows[0]
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("DELETE FROM django_q_ormq WHERE id = %s", [pk])

        with ThreadPoolExecutor(1) as pool:
            failing = pool.submit(in_a_thread, lambda: fails(monkeypatch, rows[0]))
            wait_for(lambda: waiting_for_a_lock(other), "the failed task waits for the row")
            assert not failing.done()
            other.commit() if holder_commits else other.rollback()
            failed = failing.result(timeout=10)

    monitor.save_task(failed, None)
    if holder_commits:
        assert failed["success"] and "ack_id" not in failed
        assert not OrmQ.objects.filter(key="payments").exists() and not Failure.objects.exists()
    else:
        assert not failed["success"] and failed["ack_id"] == pk
        (row,) = OrmQ.objects.filter(key="payments")
        assert row.lock > timezone.now() + timedelta(seconds=Conf.RETRY - 5)
        assert row.payload == payload
        assert Failure.objects.count() == 1


def test_a_failed_task_whose_row_stays_held_past_the_wait_leaves_it_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The wait is short (django-q2's guard waits with it): past it, the failure stands, and the
    # row comes back at the next claim as it is.
    _, rows = charge_tasks(1)
    pk = rows[0][0]
    before = OrmQ.objects.get(pk=pk)
    monkeypatch.setattr(transport, "ROW_WAIT_MS", 50)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SELECT id FROM django_q_ormq WHERE id = %s FOR UPDATE", [pk])

        failed = fails(monkeypatch, rows[0])

    assert not failed["success"] and failed["ack_id"] == pk
    after = OrmQ.objects.get(pk=pk)
    assert (after.lock, after.payload) == (before.lock, before.payload)
    assert "could not defer a failed task" in caplog.text


def in_a_thread(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    finally:
        connection.close()


def waiting_for_a_lock(holder: psycopg.Connection) -> bool:
    """Whether some session waits for a lock that `holder`'s session holds (asked in a
    transaction of its own: a transaction sees one snapshot of the sessions' activity)."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as watcher:
        waiting = watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            [holder.info.backend_pid],
        ).fetchall()
    return bool(waiting)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.02)


def reserve(sku: str) -> Command:
    lines = [{"sku": sku, "quantity": 1, "unit_price": "12.50"}]
    return command(inventory_messages.RESERVE, "reserve_stock", payload=order_payload(lines=lines))


def test_batches_that_reserve_in_opposite_orders_do_not_deadlock() -> None:
    # Each batch holds its first product while the other batch takes its own first product:
    # without one lock order for the whole transaction, they would deadlock.
    product("SKU-A", stock=10)
    product("SKU-B", stock=10)
    both_started = threading.Barrier(2, timeout=2)

    def hold_a_while(sent: Command, run: transport.Perform) -> Reply:
        reply = run(None)
        if sent.payload["lines"][0]["sku"] == first_of[threading.get_ident()]:
            # The other batch may wait for this one's locks instead: serialised, as it should be.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_started.wait()
        return reply

    first_of: dict[int, str] = {}

    def batch(skus: tuple[str, str]) -> list[Any]:
        first_of[threading.get_ident()] = skus[0]
        replies: list[Reply] = []
        try:
            with transaction.atomic():
                sent = [reserve(sku) for sku in skus]
                lock_first(sent)
                replies = [transport._run(one) for one in sent]
            return [reply.outcome for reply in replies]
        finally:
            connection.close()

    transport.set_command_hook(hold_a_while)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(pool.map(batch, [("SKU-A", "SKU-B"), ("SKU-B", "SKU-A")]))
    finally:
        transport.set_command_hook(None)

    assert outcomes == [[Outcome.OK, Outcome.OK]] * 2
    assert (available("SKU-A"), available("SKU-B")) == (8, 8)


def test_a_batch_locks_the_products_its_releases_restock() -> None:
    product("SKU-A", stock=10)
    product("SKU-B", stock=10)
    product("SKU-C", stock=10)
    reserved = reserve("SKU-C")
    transport._run(reserved)
    batch = [reserve("SKU-A"), undo(reserved, inventory_messages.RELEASE)]

    with transaction.atomic():
        lock_first(batch)
        locked = held_by_another()

    assert locked == {"SKU-A": True, "SKU-B": False, "SKU-C": True}


def held_by_another() -> dict[str, bool]:
    """Which products another session finds locked (NOWAIT)."""
    held = {}
    with psycopg.connect(**connection.get_connection_params()) as other:
        for sku in ("SKU-A", "SKU-B", "SKU-C"):
            try:
                with other.transaction():
                    other.execute(
                        "SELECT 1 FROM inventory_product WHERE sku = %s FOR UPDATE NOWAIT", [sku]
                    )
                held[sku] = False
            except psycopg.errors.LockNotAvailable:
                held[sku] = True
    return held


def test_merged_tasks_queued_again_by_an_operator_leave_their_own_row_to_the_monitor() -> None:
    # A failed merged task is kept (django-q2's failures); resubmitted, it is queued as a task
    # of its own, whose row no merged task's body takes: the monitor acknowledges it.
    commands, rows = charge_tasks(2)
    task = broker.merged(rows, "payments")[0]
    package = {**SignedPackage.loads(task[1]), "ack_id": 10**9}  # its row as a task of its own

    done = worker_runs(package)

    assert (done["success"], done["result"]) == (True, 2)
    assert done["ack_id"] == 10**9
    assert [charge_status(sent) for sent in commands] == ["succeeded"] * 2


def test_with_merging_off_tasks_that_wait_together_go_on_one_by_one(
    carried_to_a_pusher: Callable[[list[tuple[int, str]]], PostgresBroker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "saga_config", lambda: replace(saga_config(), merge_tasks=1))
    _, rows = charge_tasks(2)
    pusher = carried_to_a_pusher(rows)

    assert [pusher.dequeue(), pusher.dequeue()] == [rows[:1], rows[1:]]


def test_where_tasks_have_lately_been_slow_a_pusher_merges_fewer(
    carried_to_a_pusher: Callable[[list[tuple[int, str]]], PostgresBroker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "progress", cluster.Progress.new())
    monkeypatch.setattr(Conf, "TIMEOUT", 10)
    cluster.tasks_took(2.4, 2)  # 1.2 s a task: two fit in a quarter of Q_TIMEOUT, three do not
    _, rows = charge_tasks(3)
    pusher = carried_to_a_pusher(rows)

    (first,) = pusher.dequeue() or []
    assert SignedPackage.loads(first[1])["args"][0] == rows[:2]
    assert pusher.dequeue() == rows[2:]

    cluster.tasks_took(30, 1)  # slower still: each task alone
    assert cluster.merge_size() == 1


def test_workers_record_how_long_tasks_take_for_the_pusher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "progress", watched := cluster.Progress.new())
    _, rows = charge_tasks(2)

    def slow(sent: Command, run: transport.Perform) -> Reply:
        time.sleep(0.1)
        return run(None)

    transport.set_command_hook(slow)
    try:
        assert run_merged(broker.merged(rows, "payments")[0]) == 2
    finally:
        transport.set_command_hook(None)

    assert 0.1 <= watched.task_seconds.value < 1  # a task each, of one command
    # A moving average: a fifth of the way to each new figure.
    watched.task_seconds.value = 1.0
    cluster.tasks_took(6.0, 1)
    assert watched.task_seconds.value == pytest.approx(2.0)
