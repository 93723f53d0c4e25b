"""Tables owned by the Inventory Service: products and their stock, reservations, step records."""

from django.db import models
from django.db.models import Q

from sagas.participant import StepRecord


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    # What others may still buy: reservations of in-flight sagas are already taken out
    # (pessimistic view). Changed only by conditional atomic UPDATEs, never read-modify-write.
    available = models.PositiveIntegerField()
    # Every unit ever put into stock. Conservation: available + units held by live
    # reservations == received, whatever sagas ran or failed.
    received = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Stock never goes negative, whatever a buggy caller does: the database refuses.
            models.CheckConstraint(
                condition=Q(available__gte=0), name="inventory_product_available_non_negative"
            )
        ]

    def __str__(self) -> str:
        return f"{self.sku} ({self.available} available)"


class Reservation(models.Model):
    """Stock held for one saga: taken out of `available` when made, put back when released."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        RELEASED = "released", "Released"

    # One reservation per saga: a second one would be an effect applied twice.
    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"reservation {self.pk} for order {self.order_id} ({self.status})"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "sku"], name="inventory_reservationline_one_per_sku"
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class InventoryStepRecord(StepRecord):
    """Stored outcomes of the reserve step (action) and the release (compensation), per saga."""
