"""Order Service app: registers its saga steps with the participant protocol."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Order Service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: handlers import models, which need a ready registry.
        from orders import handlers, messages
        from orders.models import OrderStepRecord
        from orders.saga import order_saga_versions
        from sagas import participant, registry
        from sagas.config import saga_config

        participant.register(
            action=messages.CREATE,
            compensation=messages.CANCEL,
            record=OrderStepRecord,
            do=handlers.create,
            undo=handlers.cancel,
        )
        # Approval runs after the saga's pivot: it is retried until it succeeds, never undone.
        participant.register(action=messages.APPROVE, record=OrderStepRecord, do=handlers.approve)
        # Every version an order in flight may still use, not only the current one.
        for definition in order_saga_versions(saga_config()):
            registry.register(definition)
