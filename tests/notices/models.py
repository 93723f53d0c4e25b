"""The Notification Service's tables: the notices it sent, and its saga step records."""

from __future__ import annotations

from django.db import models

from sagas.participant import StepRecord


class Notice(models.Model):
    """An order confirmation sent to a customer; one per saga (the step runs at most once)."""

    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField()
    sent_at = models.DateTimeField(auto_now_add=True)

    # Declared: the type checker runs with the project's settings, which do not install this app.
    objects: models.Manager[Notice] = models.Manager()

    def __str__(self) -> str:
        return f"notice for order {self.order_id}"


class NoticeStepRecord(StepRecord):
    class Meta(StepRecord.Meta):
        pass
