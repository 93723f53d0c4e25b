"""Housekeeping on PostgreSQL: which sagas the purge takes and what goes with them, batches, the
dry run, rows held by another transaction, and the django-q2 schedule that runs it."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pydoc import locate

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from django_q.scheduler import scheduler

from orders.saga import ORDER_SAGA
from sagas import checks, housekeeping, participant
from sagas.config import saga_config
from sagas.housekeeping import PurgeReport, purge_finished_sagas
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.services import start_saga
from storefront.models import IdempotencyKey
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

RETENTION = timedelta(days=30)


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql", "housekeeping tests need PostgreSQL (DATABASE_URL)"


def a_saga(status: str, *, finished_days_ago: float | None, created_days_ago: float = 40) -> Saga:
    """A saga with everything that hangs off one: events, an unread reply, a step record in
    every service, the storefront's idempotency key."""
    saga = start_saga(
        saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id=str(uuid.uuid4())
    )
    now = timezone.now()
    Saga.objects.filter(id=saga.id).update(
        status=status,
        created_at=now - timedelta(days=created_days_ago),
        finished_at=None if finished_days_ago is None else now - timedelta(days=finished_days_ago),
    )
    SagaReply.objects.create(
        saga=saga, step="charge_payment", compensation=False, attempt=1, outcome="ok"
    )
    for model in participant.record_models():
        model._default_manager.create(saga_id=saga.id, step="charge_payment")
    IdempotencyKey.objects.create(
        owner_id=7, key=str(saga.id), request_hash="h", saga=saga, status_code=202, response={}
    )
    return saga


def rows_of(saga: Saga) -> Counter[str]:
    found: Counter[str] = Counter(
        {
            "sagas.Saga": Saga.objects.filter(id=saga.id).count(),
            "sagas.SagaEvent": SagaEvent.objects.filter(saga_id=saga.id).count(),
            "sagas.SagaReply": SagaReply.objects.filter(saga_id=saga.id).count(),
            "storefront.IdempotencyKey": IdempotencyKey.objects.filter(saga_id=saga.id).count(),
        }
    )
    for model in participant.record_models():
        found[model._meta.label] = model._default_manager.filter(saga_id=saga.id).count()
    return found


def every_table() -> dict[str, int]:
    counts = {
        "sagas": Saga.objects.count(),
        "events": SagaEvent.objects.count(),
        "replies": SagaReply.objects.count(),
        "keys": IdempotencyKey.objects.count(),
    }
    for model in participant.record_models():
        counts[model._meta.label] = model._default_manager.count()
    return counts


def test_only_terminal_sagas_finished_before_the_retention_go_and_all_their_rows_with_them() -> (
    None
):
    gone = [
        a_saga("completed", finished_days_ago=40),
        a_saga("failed", finished_days_ago=31),
    ]
    kept = [
        a_saga("completed", finished_days_ago=29),  # finished, within the retention
        *[a_saga(s, finished_days_ago=None) for s in ("pending", "running", "compensating")],
        a_saga("stuck", finished_days_ago=None),  # waits for an operator, however old
    ]
    kept_rows = {saga.id: rows_of(saga) for saga in kept}
    expected = sum((rows_of(saga) for saga in gone), Counter())

    report = purge_finished_sagas(older_than=RETENTION, batch_size=500)

    assert set(Saga.objects.values_list("id", flat=True)) == {saga.id for saga in kept}
    for saga in gone:
        assert +rows_of(saga) == Counter(), f"rows left for purged saga {saga.id}"
    for saga in kept:
        assert rows_of(saga) == kept_rows[saga.id]
    assert +report.rows == expected
    assert len(expected) == 8  # the saga, its events, reply, key and four step records
    assert report.sagas == 2 and report.batches == 1 and report.complete


@pytest.mark.parametrize(("old", "batches", "seen"), [(7, 3, [3, 6, 7]), (6, 2, [3, 6])])
def test_sagas_are_purged_in_batches_of_the_given_size(
    old: int, batches: int, seen: list[int]
) -> None:
    for _ in range(old):
        a_saga("completed", finished_days_ago=40)
    recent = a_saga("completed", finished_days_ago=1)
    progress: list[int] = []

    report = purge_finished_sagas(
        older_than=RETENTION, batch_size=3, on_batch=lambda r: progress.append(r.sagas)
    )

    assert progress == seen
    assert (report.batches, report.sagas, report.complete) == (batches, old, True)
    assert list(Saga.objects.values_list("id", flat=True)) == [recent.id]


def test_a_dry_run_counts_exactly_what_the_purge_deletes_and_changes_nothing() -> None:
    for _ in range(5):
        a_saga("completed", finished_days_ago=40)
    a_saga("running", finished_days_ago=None)
    before = every_table()
    seen: list[int] = []

    dry = purge_finished_sagas(
        older_than=RETENTION, batch_size=2, dry_run=True, on_batch=lambda r: seen.append(r.sagas)
    )

    assert every_table() == before
    assert seen == [2, 4, 5]
    real = purge_finished_sagas(older_than=RETENTION, batch_size=2)
    assert dry.rows == real.rows and dry.sagas == 5
    assert every_table()["sagas"] == 1


def a_task_record(success: bool, stopped_days_ago: float) -> str:
    """django-q2's record of a command task, as its monitor saves it."""
    stopped = timezone.now() - timedelta(days=stopped_days_ago)
    task_id = uuid.uuid4().hex
    Task.objects.create(
        id=task_id,
        name=f"orders:{task_id}:1",
        func="sagas.transport.execute",
        args=([],),
        kwargs={},
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=success,
        attempt_count=1,
    )
    return task_id


def test_the_records_of_tasks_that_succeeded_before_the_cutoff_go_and_failures_stay() -> None:
    old_success = [a_task_record(True, 40) for _ in range(3)]
    kept = [a_task_record(True, 29), a_task_record(False, 40), a_task_record(False, 1)]
    a_saga("completed", finished_days_ago=40)

    dry = purge_finished_sagas(older_than=RETENTION, batch_size=2, dry_run=True)
    assert Task.objects.count() == 6
    report = purge_finished_sagas(older_than=RETENTION, batch_size=2)

    assert sorted(Task.objects.values_list("id", flat=True)) == sorted(kept)
    assert dry.rows["django_q.Task"] == report.rows["django_q.Task"] == len(old_success)
    assert report.sagas == 1


def test_a_run_with_a_time_limit_stops_after_its_batch_and_the_next_run_goes_on() -> None:
    for _ in range(5):
        a_saga("failed", finished_days_ago=40)

    first = purge_finished_sagas(older_than=RETENTION, batch_size=2, max_seconds=0)
    assert (first.sagas, first.complete) == (2, False)
    second = purge_finished_sagas(older_than=RETENTION, batch_size=2)
    assert (second.sagas, second.complete) == (3, True)


def test_a_saga_another_transaction_holds_is_passed_over_and_purged_once_released() -> None:
    held, free = (a_saga("completed", finished_days_ago=40) for _ in range(2))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # a saga worker or an operator holding the row
        with psycopg.connect(_dsn(), autocommit=False) as other:
            other.execute("SELECT 1 FROM sagas_saga WHERE id = %s FOR UPDATE", [held.id])
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        report = purge_finished_sagas(older_than=RETENTION, batch_size=10)
        assert report.sagas == 1
        assert list(Saga.objects.values_list("id", flat=True)) == [held.id]
        assert rows_of(held)["sagas.SagaEvent"] > 0
    finally:
        release.set()
        holder.join()
    assert purge_finished_sagas(older_than=RETENTION, batch_size=10).sagas == 1
    assert not Saga.objects.filter(id__in=[held.id, free.id]).exists()


def test_the_purge_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="batch size"):
        purge_finished_sagas(older_than=RETENTION, batch_size=0)


def test_a_report_describes_each_kind_of_row() -> None:
    report = PurgeReport(cutoff=timezone.now(), dry_run=False)
    report.rows.update({"sagas.Saga": 2, "sagas.SagaEvent": 9, "sagas.SagaReply": 0})
    assert report.describe() == "2 finished saga(s) (sagas.SagaEvent 9)"


# --- the schedule -------------------------------------------------------------------------


def test_migrate_leaves_the_purge_schedule_on_the_engines_own_cluster() -> None:
    schedule = Schedule.objects.get(name=housekeeping.SCHEDULE_NAME)

    assert schedule.cluster == settings.HOUSEKEEPING_QUEUE == "housekeeping"
    assert schedule.cluster not in settings.SERVICE_QUEUES
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.minutes == settings.SAGA_PURGE_EVERY_MINUTES
    assert schedule.repeats == -1
    assert callable(locate(schedule.func))


def test_ensuring_the_schedule_again_follows_the_settings_and_keeps_an_operators_pause() -> None:
    Schedule.objects.filter(name=housekeeping.SCHEDULE_NAME).update(repeats=0, minutes=99)

    housekeeping.ensure_purge_schedule()
    housekeeping.ensure_purge_schedule()

    schedule = Schedule.objects.get(name=housekeeping.SCHEDULE_NAME)
    assert (schedule.minutes, schedule.repeats) == (settings.SAGA_PURGE_EVERY_MINUTES, 0)


def test_only_the_housekeeping_cluster_runs_the_due_schedule_and_only_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule = Schedule.objects.get(name=housekeeping.SCHEDULE_NAME)
    Schedule.objects.filter(id=schedule.id).update(next_run=timezone.now() - timedelta(minutes=1))
    OrmQ.objects.all().delete()

    monkeypatch.setattr(Conf, "CLUSTER_NAME", "orders")  # a service cluster's sentinel
    scheduler(broker=get_broker("orders"))
    assert OrmQ.objects.count() == 0

    # Two housekeeping clusters (two hosts) look at the same moment: both wait on the row
    # lock, then one creates the task and the other finds the schedule no longer due.
    monkeypatch.setattr(Conf, "CLUSTER_NAME", "housekeeping")
    with psycopg.connect(_dsn(), autocommit=False) as holder:
        holder.execute("SELECT 1 FROM django_q_schedule WHERE id = %s FOR UPDATE", [schedule.id])
        threads = [threading.Thread(target=_run_scheduler) for _ in range(2)]
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(2)
        holder.commit()
    for thread in threads:
        thread.join(30)

    assert list(OrmQ.objects.values_list("key", flat=True)) == ["housekeeping"]
    assert Schedule.objects.get(id=schedule.id).next_run > timezone.now()


def test_settings_out_of_range_stop_the_workers_at_startup() -> None:
    saga_config.cache_clear()
    try:
        with override_settings(SAGA_RETENTION_DAYS=0, SAGA_PURGE_BATCH=0):
            saga_config.cache_clear()
            found = [(e.id, e.msg) for e in checks.check_settings()]
    finally:
        saga_config.cache_clear()
    assert ("sagas.E005", "SAGA_RETENTION_DAYS must be positive") in found
    assert ("sagas.E005", "SAGA_PURGE_BATCH must be at least 1") in found


def _run_scheduler() -> None:
    try:
        scheduler(broker=get_broker("housekeeping"))
    finally:
        connection.close()


def _wait_for_lock_waiters(n: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with psycopg.connect(_dsn(), autocommit=True) as probe:
            waiting = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
        if waiting and waiting[0] >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} schedulers never waited on the schedule's row lock")


def _dsn() -> str:
    params = connection.get_connection_params()
    return (
        f"host={params.get('host', '')} port={params.get('port', '')} "
        f"dbname={params['dbname']} user={params.get('user', '')}"
    )
