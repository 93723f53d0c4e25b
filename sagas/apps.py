from django.apps import AppConfig
from django.core import checks


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import checks as saga_checks

        checks.register(saga_checks.check_settings, saga_checks.TAG)
        checks.register(saga_checks.check_definitions, saga_checks.TAG)
        # It reads the saga table: tagged `database`, so that Django runs it only when given
        # databases to check, as it does its own database checks.
        checks.register(saga_checks.check_versions_in_flight, saga_checks.TAG, checks.Tags.database)
