"""Shipping Service app: registers its saga step with the participant protocol."""

from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "shipping"
    verbose_name = "Shipping Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: handlers import models, which need a ready registry.
        from sagas import participant
        from shipping import handlers, messages
        from shipping.models import ShippingStepRecord

        participant.register(
            action=messages.SCHEDULE,
            compensation=messages.CANCEL,
            record=ShippingStepRecord,
            do=handlers.schedule,
            undo=handlers.cancel,
        )
