"""Inventory Service app: registers its saga step with the participant protocol."""

from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Inventory Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: handlers import models, which need a ready registry.
        from inventory import handlers, messages
        from inventory.models import InventoryStepRecord
        from sagas import participant

        participant.register(
            action=messages.RESERVE,
            compensation=messages.RELEASE,
            record=InventoryStepRecord,
            do=handlers.reserve,
            undo=handlers.release,
            lock_first=handlers.lock_stock,
        )
