"""Registers the Notification Service's step and version 2 of the order saga (which uses it).

It runs after the Order Service registered version 1: both stay registered, and new orders start
with version 2, the latest."""

from django.apps import AppConfig


class NoticesConfig(AppConfig):
    name = "tests.notices"
    label = "notices"
    verbose_name = "Notification Service (tests)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import participant, registry
        from sagas.config import saga_config
        from tests.notices import handlers
        from tests.notices.models import NoticeStepRecord
        from tests.notices.saga import SEND, order_saga_v2

        participant.register(action=SEND, record=NoticeStepRecord, do=handlers.send)
        registry.register(order_saga_v2(saga_config()))
