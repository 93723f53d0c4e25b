"""Tables owned by the Payment Service: payment methods, charges, refunds, its step records."""

from django.db import models
from django.db.models import Q

from sagas.participant import StepRecord


class PaymentMethod(models.Model):
    """A tokenised card, as a processor's vault would keep it: never the number or the CVC."""

    class Behaviour(models.TextChoices):
        # What the simulated processor does when this card is charged.
        OK = "ok", "Succeeds"
        DECLINED = "declined", "Declined"
        INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds"
        PROCESSING_ERROR = "processing_error", "Processing error (transient)"

    token = models.CharField(max_length=64)
    # The caller's key for this tokenisation: a repeat with the same key returns this method, so
    # tokenising is safe to retry (storefront checkout derives it from the order's
    # Idempotency-Key). NULL for a tokenisation made without one, which the unique constraint
    # lets any number of rows be (empty strings would collide).
    request_key = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False
    )
    brand = models.CharField(max_length=16)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    behaviour = models.CharField(max_length=24, choices=Behaviour.choices, default=Behaviour.OK)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Unique by constraints, not `unique=True`, which on PostgreSQL adds a second index to
        # each column for LIKE: nothing searches them so, and every order's tokenisation wrote
        # both (about 250 bytes of WAL per order).
        constraints = [
            models.UniqueConstraint(fields=["token"], name="paymentmethod_token_unique"),
            models.UniqueConstraint(
                fields=["request_key"], name="paymentmethod_request_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand} ending {self.last4}"


class Charge(models.Model):
    class Status(models.TextChoices):
        CHARGED = "charged", "Charged"
        REFUNDED = "refunded", "Refunded"

    # One charge per saga: a second one would be an effect applied twice.
    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    payment_token = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHARGED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payments_charge_amount_positive"
            )
        ]

    def __str__(self) -> str:
        return f"charge {self.pk}: {self.amount} {self.currency} ({self.status})"


class Refund(models.Model):
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Only full refunds exist, so a second refund of a charge would refund it twice.
            models.UniqueConstraint(fields=["charge"], name="payments_refund_one_per_charge")
        ]

    def __str__(self) -> str:
        return f"refund {self.pk} of charge {self.charge_id}: {self.amount}"


class PaymentStepRecord(StepRecord):
    """Stored outcomes of the charge step (action) and the refund (compensation), per saga."""
