from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import checks as saga_checks

        checks.register(saga_checks.check_settings, saga_checks.TAG)
        checks.register(saga_checks.check_definitions, saga_checks.TAG)
        # After every migrate: a fresh deployment gets the housekeeping schedule unasked.
        post_migrate.connect(_schedule_housekeeping, sender=self)


def _schedule_housekeeping(sender: Any, using: str, apps: Any = None, **kwargs: Any) -> None:
    from django.apps import apps as installed

    from sagas import housekeeping

    # `migrate` passes the migrated state's apps; `flush` (test teardown) passes none.
    housekeeping.schedule_after_migrate(using=using, apps=apps or installed)
