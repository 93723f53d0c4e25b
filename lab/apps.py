"""The lab: what starts, loads and attacks the whole system (launcher, bench, chaos, audit)."""

from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "lab"
    verbose_name = "Lab"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Fault injection reaches the engine only through its hook, and only when asked for.
        from lab import faults

        faults.install()
