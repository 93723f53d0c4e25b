"""The lab: what starts, loads and attacks the whole system (launcher, bench, chaos, audit)."""

from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "lab"
    verbose_name = "Lab"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Fault injection reaches the engine only through its hook, and the chained order saga
        # only through the registry, and each only when its environment variable asks for it.
        from lab import faults, sequential

        faults.install()
        sequential.install()
