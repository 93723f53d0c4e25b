"""Housekeeping for months of traffic: finished sagas past the retention are purged in short
batches, with their events and replies, the services' step records and every row that hangs off
the saga by a foreign key, and then django-q2's records of tasks that succeeded before the same
cutoff; a django-q2 schedule on the engine's own queue runs the purge
(docs/architecture.md §7). The services' business rows (orders, charges, reservations,
shipments) are theirs and are kept.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import Q, QuerySet
from django.db.models.deletion import Collector
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Task

from sagas import participant
from sagas.config import saga_config
from sagas.core.state import SagaStatus
from sagas.models import Saga

log = logging.getLogger(__name__)

TERMINAL = tuple(s.value for s in SagaStatus if s.terminal)
SCHEDULE_NAME = "sagas: purge finished sagas"
PURGE_TASK = "sagas.tasks.purge_finished_sagas"
SAGA = Saga._meta.label


@dataclass
class PurgeReport:
    cutoff: datetime  # sagas that finished before this are purged
    dry_run: bool
    batches: int = 0
    rows: Counter[str] = field(default_factory=Counter)  # by model label, e.g. "sagas.SagaEvent"
    complete: bool = False  # False: the run stopped at its time limit with work left

    @property
    def sagas(self) -> int:
        return self.rows[SAGA]

    def describe(self) -> str:
        """e.g. '1000 finished saga(s) (payments.PaymentStepRecord 1000, sagas.SagaEvent 14000)'."""
        others = ", ".join(
            f"{label} {n}" for label, n in sorted(self.rows.items()) if n and label != SAGA
        )
        return f"{self.sagas} finished saga(s)" + (f" ({others})" if others else "")


def purge_finished_sagas(
    *,
    older_than: timedelta,
    batch_size: int,
    dry_run: bool = False,
    max_seconds: float | None = None,
    on_batch: Callable[[PurgeReport], None] | None = None,
) -> PurgeReport:
    """Purge sagas that finished (`completed`, `failed`) more than `older_than` ago, in batches
    of `batch_size` sagas, each its own short transaction; `on_batch` sees the running totals.

    Never a running saga's rows: each batch locks its sagas and re-checks them under the lock
    (a stuck saga is not finished and is kept). With `dry_run`, counts what would go and changes
    nothing. With `max_seconds`, stops after the batch that passes it (`complete` is False).
    """
    if batch_size < 1:
        raise ValueError("the batch size must be at least 1")
    report = PurgeReport(cutoff=timezone.now() - older_than, dry_run=dry_run)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        if dry_run:
            ids, after = _count_batch(report, batch_size, after)
        else:
            ids = _purge_batch(report, batch_size)
        if ids:
            report.batches += 1
            if on_batch is not None:
                on_batch(report)
        if len(ids) < batch_size:
            _purge_task_records(report, batch_size, dry_run)
            report.complete = True
            return report
        if deadline is not None and time.monotonic() >= deadline:
            return report


def _purge_task_records(report: PurgeReport, batch_size: int, dry_run: bool) -> None:
    """django-q2's records of tasks that succeeded before the cutoff. Successes are not kept
    (`save_limit` -1) but for a failed command task done later, whose delivery mends its failure
    record (sagas.transport.TAKE) and which nothing else would ever delete. Failures stay: they
    are the operators' list."""
    done = Task.objects.using(Conf.ORM).filter(success=True, stopped__lt=report.cutoff)
    if dry_run:
        report.rows[Task._meta.label] += done.count()
        return
    while True:
        with transaction.atomic(using=Conf.ORM):
            batch = list(done.values_list("pk", flat=True)[:batch_size])
            deleted = Task.objects.using(Conf.ORM).filter(pk__in=batch).delete()[0]
        report.rows[Task._meta.label] += deleted
        if len(batch) < batch_size:
            return


def _purgeable(using: str, cutoff: datetime) -> QuerySet[Saga]:
    # `created_at < cutoff` is implied (a saga finishes after it starts) and lets the scan walk
    # the created_at index from the oldest end, so the hot row needs no index of its own for
    # this: in-flight and stuck sagas among the oldest are the only rows passed over.
    return Saga.objects.using(using).filter(
        status__in=TERMINAL, finished_at__lt=cutoff, created_at__lt=cutoff
    )


def _purge_batch(report: PurgeReport, batch_size: int) -> list[uuid.UUID]:
    using = router.db_for_write(Saga)
    with transaction.atomic(using=using):
        # FOR UPDATE evaluates the filter again on the row's latest version and holds the row
        # to commit; SKIP LOCKED passes over sagas a worker, a reply or an operator holds.
        ids = list(
            _purgeable(using, report.cutoff)
            .order_by("created_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return ids
        # The step records go first (committed first when a service has its own database): a
        # saga that is gone never leaves step records behind, which the audit relies on to tell
        # a purged saga's charges from an unknown saga's (lab/audit.py).
        for model in participant.record_models():
            records = router.db_for_write(model)
            with transaction.atomic(using=records):
                _, deleted = model._default_manager.using(records).filter(saga_id__in=ids).delete()
            report.rows.update(deleted)
        # The collector follows every foreign key to Saga: events and replies (CASCADE), the
        # storefront's idempotency keys (CASCADE), whatever else an app hangs off a saga.
        _, deleted = Saga.objects.using(using).filter(id__in=ids).only("id").delete()
        report.rows.update(deleted)
    return ids


def _count_batch(
    report: PurgeReport, batch_size: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[list[uuid.UUID], tuple[datetime, uuid.UUID] | None]:
    """The dry run's batch: the next page of purgeable sagas and what purging it would delete,
    counted by the same collector that deletes. Locks nothing."""
    using = router.db_for_write(Saga)
    page = _purgeable(using, report.cutoff).order_by("created_at", "id")
    if after is not None:
        page = page.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
    rows = list(page.values_list("id", "created_at")[:batch_size])
    ids = [saga_id for saga_id, _ in rows]
    if not ids:
        return ids, after
    for model in participant.record_models():
        records = router.db_for_write(model)
        report.rows[model._meta.label] += (
            model._default_manager.using(records).filter(saga_id__in=ids).count()
        )
    collector = Collector(using=using, origin=None)
    collector.collect(Saga.objects.using(using).filter(id__in=ids).only("id"))
    for collected, instances in collector.data.items():
        report.rows[collected._meta.label] += len(instances)
    for related in collector.fast_deletes:
        report.rows[related.model._meta.label] += related.count()
    return ids, (rows[-1][1], rows[-1][0])


def ensure_purge_schedule(*, using: str = DEFAULT_DB_ALIAS, model: Any = None) -> Any:
    """Create the purge's django-q2 schedule, or bring it in line with the settings: run every
    SAGA_PURGE_EVERY_MINUTES by the engine's own cluster. Idempotent; runs after every
    `migrate` (sagas.apps), so a fresh deployment has it with no manual step. An operator's
    pause (Repeats 0 in the admin) is kept."""
    from django_q.models import Schedule

    model = model or Schedule  # post_migrate passes the migrated state's model
    config = saga_config().housekeeping
    wanted = {
        "func": PURGE_TASK,
        "schedule_type": Schedule.MINUTES,
        "minutes": config.every_minutes,
        "cluster": config.queue,
    }
    with transaction.atomic(using=using):
        found = list(
            model.objects.using(using).select_for_update().filter(name=SCHEDULE_NAME).order_by("id")
        )
        if not found:
            return model.objects.using(using).create(
                name=SCHEDULE_NAME, repeats=-1, next_run=timezone.now(), **wanted
            )
        schedule, *duplicates = found
        for duplicate in duplicates:  # two deployments migrating at once: one schedule only
            duplicate.delete()
        changed = [name for name, value in wanted.items() if getattr(schedule, name) != value]
        for name in changed:
            setattr(schedule, name, wanted[name])
        if changed:
            schedule.save(update_fields=changed)
        return schedule


def schedule_after_migrate(*, using: str, apps: Any) -> None:
    """The post_migrate hook: ensure the schedule where django-q2's table is (and is complete)."""
    try:
        model = apps.get_model("django_q", "Schedule")
    except LookupError:
        return
    if not router.allow_migrate_model(using, model):
        return
    if "cluster" not in {f.name for f in model._meta.get_fields()}:
        return  # django_q migrated only part of the way
    if model._meta.db_table not in connections[using].introspection.table_names():
        return
    ensure_purge_schedule(using=using, model=model)
