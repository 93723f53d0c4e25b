"""`manage.py migrate_all`: `migrate` every configured database, `default` first, then each
service's own (ORDERS_DATABASE_URL ...; sagaproject/routers.py decides which tables go where).
With no service database configured it is exactly `manage.py migrate`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Apply migrations to every configured database (default, then each service's own)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive")

    def handle(self, *args: Any, **options: Any) -> None:
        for alias in settings.DATABASES:  # `default` is always first
            if options["verbosity"]:
                self.stdout.write(f"database {alias}:")
            call_command(
                "migrate",
                database=alias,
                interactive=options["interactive"],
                verbosity=options["verbosity"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
