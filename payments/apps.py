"""Payment Service app: registers its saga step with the participant protocol."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payment Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: handlers import models, which need a ready registry.
        from payments import handlers, messages
        from payments.models import PaymentStepRecord
        from sagas import participant

        participant.register(
            action=messages.CHARGE,
            compensation=messages.REFUND,
            record=PaymentStepRecord,
            do=handlers.charge,
            undo=handlers.refund,
        )
