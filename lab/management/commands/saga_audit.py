"""`manage.py saga_audit`: check the cross-service invariants; exit 1 on any violation."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lab.audit import audit


class Command(BaseCommand):
    help = "Reconcile sagas with the services' tables (money, stock, shipments); exit 1 on a violation."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit()
        if options["json"]:
            self.stdout.write(json.dumps({**asdict(report), "unfinished": report.unfinished}))
        else:
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items()))
            self.stdout.write(
                f"sagas {report.sagas} ({statuses or 'none'}); unfinished {report.unfinished}; "
                f"queued tasks {report.queued_tasks}; unread replies {report.unread_replies}; "
                f"failed tasks {report.failed_tasks}; violations {len(report.violations)}"
            )
            if len(set(report.databases.values())) > 1:
                self.stdout.write(
                    "read from: " + ", ".join(f"{k} {v}" for k, v in report.databases.items())
                )
            for violation in report.violations:
                self.stdout.write(f"  violation: {violation}")
        if report.violations:
            raise CommandError(f"{len(report.violations)} invariant violation(s)")
