"""The storefront's table: the clients' Idempotency-Keys for placing orders."""

from __future__ import annotations

from django.db import models

from sagas.models import Saga


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key for order creation (Stripe's semantics, scoped per user).

    Inserted in the transaction that starts the saga, so exactly one of two concurrent requests
    with the same key starts one; the other finds the stored answer.
    """

    owner_id = models.BigIntegerField()
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)  # sha256 of the canonical request body
    # CASCADE: the engine's housekeeping purges a finished saga past the retention and, with
    # it, the keys that answer with that saga (Stripe forgets keys after a day; these outlive
    # their saga by nothing). The engine does not know this model: its delete collector does.
    saga = models.ForeignKey(Saga, null=True, blank=True, on_delete=models.CASCADE)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner_id", "key"], name="idempotency_key_per_owner")
        ]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.key}"
