"""Tables owned by the Order Service: orders, their lines, and its saga step records."""

from django.db import models

from sagas.participant import StepRecord


class Order(models.Model):
    """An order. It stays `pending` until its saga finishes (a semantic lock for readers)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        CANCELLED = "cancelled", "Cancelled"

    # The id is chosen up front by whoever starts the saga, so independent steps can use it.
    id = models.UUIDField(primary_key=True)
    user_id = models.BigIntegerField(db_index=True)  # the auth user, by value: no cross-app FK
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    saga_id = models.UUIDField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"order {self.id} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class OrderStepRecord(StepRecord):
    """Stored outcomes of the `create_order` and `approve_order` steps, one row per saga step."""
