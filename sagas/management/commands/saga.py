"""`manage.py saga list|show|retry|compensate|purge|versions`: inspect and repair sagas from a
shell."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas import housekeeping, services, versions
from sagas.config import saga_config
from sagas.core.state import SagaStatus, step_log
from sagas.exceptions import SagaError
from sagas.models import Saga

STATUSES = [s.value for s in SagaStatus]


class Command(BaseCommand):
    help = "Inspect and repair sagas: list, show, retry, compensate, purge, versions."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = sub.add_parser("list", help="list sagas, newest first")
        listing.add_argument("--status", choices=STATUSES)
        listing.add_argument("--type")
        listing.add_argument("--limit", type=int, default=20)
        show = sub.add_parser("show", help="one saga: steps and event timeline")
        show.add_argument("saga_id")
        show.add_argument("--json", action="store_true")
        for name, text in (
            ("retry", "give a stuck saga's stalled steps a fresh round"),
            ("compensate", "turn a saga back and undo what it did"),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument("saga_ids", nargs="+", metavar="saga_id")
        purge = sub.add_parser(
            "purge",
            help="delete finished sagas older than the retention, in batches (as the schedule)",
        )
        purge.add_argument(
            "--days", type=float, help="retention in days (default: SAGA_RETENTION_DAYS)"
        )
        purge.add_argument(
            "--batch-size", type=int, help="sagas per transaction (default: SAGA_PURGE_BATCH)"
        )
        purge.add_argument("--dry-run", action="store_true", help="count, change nothing")
        in_use = sub.add_parser(
            "versions", help="definition versions: registered, in flight, total sagas"
        )
        in_use.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def do_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        sagas = Saga.objects.order_by("-created_at")
        if options["status"]:
            sagas = sagas.filter(status=options["status"])
        if options["type"]:
            sagas = sagas.filter(type=options["type"])
        rows = list(sagas[: options["limit"]])
        for saga in rows:
            reason = f" {saga.reason_code}" if saga.reason_code else ""
            self.stdout.write(
                f"{saga.id}  {saga.type:<8} {saga.status:<12}{reason:<22} "
                f"{saga.created_at:%Y-%m-%d %H:%M:%S}  {saga.correlation_id}"
            )
        self.stdout.write(f"{len(rows)} saga(s) shown")

    def do_show(self, options: dict[str, Any]) -> None:
        saga = self._get(options["saga_id"])
        events = list(saga.events.order_by("id").values("at", "kind", "step", "attempt", "detail"))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "id": str(saga.id),
                        "type": saga.type,
                        "status": saga.status,
                        "reason": {"code": saga.reason_code, "message": saga.reason_message}
                        if saga.reason_code
                        else None,
                        "steps": step_log(saga.state),
                        "events": events,
                    },
                    default=str,
                    indent=2,
                )
            )
            return
        self.stdout.write(
            f"saga {saga.id} ({saga.type}) {saga.status} "
            f"{saga.reason_code or ''} {saga.reason_message or ''}".rstrip()
        )
        for name, step in step_log(saga.state).items():
            self.stdout.write(
                f"  step {name:<20} {step['status']:<13} attempts "
                f"{step['attempts']} compensations {step['compensation_attempts']}"
                f"{'  STALLED' if step['stalled'] else ''}"
            )
        for event in events:
            where = f" {event['step']}#{event['attempt']}" if event["step"] else ""
            detail = f" {event['detail']}" if event["detail"] else ""
            self.stdout.write(f"  {event['at']:%H:%M:%S.%f} {event['kind']}{where}{detail}")

    def do_retry(self, options: dict[str, Any]) -> None:
        self._each(options["saga_ids"], lambda i: services.retry_saga(saga_id=i))

    def do_compensate(self, options: dict[str, Any]) -> None:
        self._each(options["saga_ids"], lambda i: services.compensate_saga(saga_id=i))

    def do_purge(self, options: dict[str, Any]) -> None:
        config = saga_config().housekeeping
        days, batch_size = options["days"], options["batch_size"]
        if days is not None and not days > 0:
            raise CommandError("--days must be positive")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        dry_run = options["dry_run"]
        verb = "would be purged" if dry_run else "purged"

        def progress(report: housekeeping.PurgeReport) -> None:
            self.stdout.write(f"batch {report.batches}: {report.sagas} saga(s) {verb} so far")

        report = housekeeping.purge_finished_sagas(
            older_than=timedelta(days=days) if days is not None else config.retention,
            batch_size=batch_size or config.batch_size,
            dry_run=dry_run,
            on_batch=progress,
        )
        self.stdout.write(
            f"{report.describe()} {verb}: finished before {report.cutoff:%Y-%m-%d %H:%M:%S}"
        )

    def do_versions(self, options: dict[str, Any]) -> None:
        """A version may be removed from the code once it shows no saga in flight."""
        rows = versions.version_use()
        if options["json"]:
            self.stdout.write(json.dumps([asdict(row) for row in rows], indent=2))
            return
        self.stdout.write(f"{'TYPE':<12} {'VERSION':>7}  {'IN FLIGHT':>9} {'TOTAL':>9}  NOTE")
        for row in rows:
            note = "new sagas start here" if row.current else ""
            if not row.registered:
                note = "NOT REGISTERED" if row.in_flight else "not registered (none in flight)"
            self.stdout.write(
                f"{row.type:<12} {row.version:>7}  {row.in_flight:>9} {row.total:>9}  {note}".rstrip()
            )

    def _each(self, saga_ids: list[str], action: Any) -> None:
        """Act on each saga; an action refused for any of them exits non-zero, saying why."""
        refused = []
        for saga_id in saga_ids:
            try:
                saga = action(saga_id)
            except SagaError as exc:
                refused.append(f"  {saga_id}: {exc}")
            else:
                self.stdout.write(f"{saga.id}: {saga.status}")
        if refused:
            raise CommandError(
                f"{len(refused)} of {len(saga_ids)} saga(s) could not be changed:\n"
                + "\n".join(refused)
            )

    def _get(self, saga_id: str) -> Saga:
        try:
            return Saga.objects.get(id=saga_id)
        except (Saga.DoesNotExist, ValidationError, ValueError):
            raise CommandError(f"no saga {saga_id}") from None
