from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_execute, post_execute_in_worker, pre_execute

        from sagas import bulk, transport
        from sagas import checks as saga_checks
        from sagas.api import authentication

        bulk.keep_long_statements_parsed()
        checks.register(saga_checks.check_settings, saga_checks.TAG)
        checks.register(saga_checks.check_definitions, saga_checks.TAG)
        # It reads the saga table: tagged `database`, so that Django runs it only when given
        # databases to check, as it does its own database checks.
        checks.register(saga_checks.check_versions_in_flight, saga_checks.TAG, checks.Tags.database)
        # Command tasks acknowledge themselves with their replies (sagas.transport).
        pre_execute.connect(transport.take_acknowledgement, dispatch_uid="sagas.own_ack")
        post_execute_in_worker.connect(
            transport.give_back_acknowledgement, dispatch_uid="sagas.own_ack_back"
        )
        post_execute.connect(transport.mend_if_done, dispatch_uid="sagas.mend_if_done")
        # A token or user changed here is forgotten by the token cache at once.
        authentication.connect_signals()
        # After every migrate: a fresh deployment gets the housekeeping schedule unasked.
        post_migrate.connect(_schedule_housekeeping, sender=self)


def _schedule_housekeeping(sender: Any, using: str, apps: Any = None, **kwargs: Any) -> None:
    from django.apps import apps as installed

    from sagas import housekeeping

    # `migrate` passes the migrated state's apps; `flush` (test teardown) passes none.
    housekeeping.schedule_after_migrate(using=using, apps=apps or installed)
