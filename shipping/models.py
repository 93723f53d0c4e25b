"""Tables owned by the Shipping Service: shipments and its saga step records."""

from django.db import models

from sagas.participant import StepRecord


class Shipment(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        CANCELLED = "cancelled", "Cancelled"

    # One shipment per saga: a second one would be an effect applied twice.
    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    name = models.CharField(max_length=200)
    line1 = models.CharField(max_length=200)
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20)
    country = models.CharField(max_length=2)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"shipment {self.pk} for order {self.order_id} ({self.status})"


class ShippingStepRecord(StepRecord):
    """Stored outcomes of the schedule step (action) and the cancel (compensation), per saga."""
