"""Request and response shapes of the public API. Each declares exactly the fields it reads or
writes. Prices, totals and statuses are read-only: the server computes them; a client never
sends a price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from sagas.api.countries import COUNTRY_CODES
from sagas.api.fields import (
    StrictCharField,
    StrictDecimalField,
    StrictIntegerField,
    StrictRegexField,
)
from sagas.core.state import SagaStatus
from sagas.models import Saga, SagaEvent

MAX_LINES = 100
MAX_QUANTITY = 1000
SKU_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
CURRENCY_PATTERN = r"\A[A-Z]{3}\Z"


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


# --- Products -------------------------------------------------------------------------------


class ProductSerializer(serializers.Serializer):
    sku = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    currency = serializers.CharField(read_only=True)
    available = serializers.IntegerField(
        read_only=True, help_text="Units that can be ordered now (in-flight orders excluded)."
    )


class ProductCreateSerializer(StrictSerializer):
    sku = StrictRegexField(SKU_PATTERN, max_length=64)
    name = StrictCharField(max_length=200)
    price = StrictDecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    currency = StrictRegexField(CURRENCY_PATTERN, default="EUR")
    stock = StrictIntegerField(min_value=0, max_value=10_000_000)


# --- Placing an order -----------------------------------------------------------------------


class OrderItemSerializer(StrictSerializer):
    sku = StrictRegexField(SKU_PATTERN, max_length=64)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class PaymentSerializer(StrictSerializer):
    """Card details, used once to make a token in the Payment Service and never stored."""

    card_number = StrictRegexField(
        r"\A[0-9 ]{12,32}\Z", max_length=32, help_text="12 to 19 digits; spaces are ignored."
    )
    exp_month = StrictIntegerField(min_value=1, max_value=12)
    exp_year = StrictIntegerField(min_value=2000, max_value=2100)
    cvc = StrictRegexField(r"\A[0-9]{3,4}\Z")


class AddressSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    line1 = StrictCharField(max_length=200)
    city = StrictCharField(max_length=100)
    postal_code = StrictCharField(max_length=20)
    country = StrictRegexField(
        r"\A[A-Za-z]{2}\Z", help_text="ISO 3166-1 alpha-2 code, e.g. FR (either case)."
    )

    def validate_country(self, value: str) -> str:
        code = value.upper()
        if code not in COUNTRY_CODES:
            raise serializers.ValidationError("Unknown country code (ISO 3166-1 alpha-2).")
        return code


class OrderCreateSerializer(StrictSerializer):
    items = serializers.ListField(
        child=OrderItemSerializer(), allow_empty=False, min_length=1, max_length=MAX_LINES
    )
    payment = PaymentSerializer()
    shipping_address = AddressSerializer()
    user_id = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Staff only: place the order for this user.",
    )

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = [item["sku"] for item in items]
        duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate SKUs: {', '.join(duplicates)}.")
        return items


ACCEPTED_STATUSES = [SagaStatus.PENDING.value]


class OrderAcceptedSerializer(serializers.Serializer):
    order_id = serializers.UUIDField(read_only=True)
    saga_id = serializers.UUIDField(read_only=True)
    status = serializers.ChoiceField(choices=ACCEPTED_STATUSES, read_only=True)


# --- Reading orders and sagas ---------------------------------------------------------------

SAGA_STATUSES = [status.value for status in SagaStatus]
ORDER_STATUSES = [SagaStatus.PENDING.value, SagaStatus.COMPLETED.value, SagaStatus.FAILED.value]


def order_status(saga: Saga) -> str:
    """The semantic lock: an order is pending until its saga has finished."""
    return saga.status if saga.status in ORDER_STATUSES else SagaStatus.PENDING.value


def is_finished(saga: Saga) -> bool:
    return SagaStatus(saga.status).terminal


class StepSerializer(serializers.Serializer):
    """One step of the saga as its step log holds it (`saga.state["steps"]`)."""

    name = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    compensation_attempts = serializers.IntegerField(read_only=True)


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField(read_only=True, help_text="e.g. payment_declined, out_of_stock")
    message = serializers.CharField(read_only=True)


class OrderLineSerializer(serializers.Serializer):
    sku = serializers.CharField(read_only=True)
    quantity = serializers.IntegerField(read_only=True)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)


class CardSerializer(serializers.Serializer):
    brand = serializers.CharField(read_only=True)
    last4 = serializers.CharField(read_only=True)


class ShippingAddressSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    line1 = serializers.CharField(read_only=True)
    city = serializers.CharField(read_only=True)
    postal_code = serializers.CharField(read_only=True)
    country = serializers.CharField(read_only=True)


def steps_of(saga: Saga) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "status": step["status"],
            "attempts": step["attempts"],
            "compensation_attempts": step["compensation_attempts"],
        }
        for name, step in saga.state["steps"].items()
    ]


def reason_of(saga: Saga) -> dict[str, str] | None:
    if not saga.reason_code:
        return None
    return {"code": saga.reason_code, "message": saga.reason_message}


class OrderSerializer(serializers.Serializer):
    """An order as its owner sees it, read from its saga."""

    order_id = serializers.UUIDField(read_only=True)
    saga_id = serializers.UUIDField(read_only=True)
    status = serializers.ChoiceField(choices=ORDER_STATUSES, read_only=True)
    reason = ReasonSerializer(read_only=True, allow_null=True)
    items = OrderLineSerializer(many=True, read_only=True)
    total = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    currency = serializers.CharField(read_only=True)
    card = CardSerializer(read_only=True)
    shipping_address = ShippingAddressSerializer(read_only=True)
    steps = StepSerializer(many=True, read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        data = saga.data
        view = {
            "order_id": saga.correlation_id,
            "saga_id": saga.id,
            "status": order_status(saga),
            # Only a finished order has a reason: a compensating saga is still pending.
            "reason": reason_of(saga) if saga.status == SagaStatus.FAILED else None,
            "items": data["lines"],
            "total": Decimal(data["total"]),
            "currency": data["currency"],
            "card": data["card"],
            "shipping_address": data["shipping_address"],
            "steps": steps_of(saga),
            "created_at": saga.created_at,
            "finished_at": saga.finished_at if is_finished(saga) else None,
        }
        return super().to_representation(view)


class SagaSerializer(serializers.Serializer):
    """A saga in the operators' list."""

    id = serializers.UUIDField(read_only=True)
    type = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=SAGA_STATUSES, read_only=True)
    reason = ReasonSerializer(read_only=True, allow_null=True)
    correlation_id = serializers.CharField(read_only=True, help_text="The order id of an order.")
    owner_id = serializers.IntegerField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = {
            "id": saga.id,
            "type": saga.type,
            "status": saga.status,
            "reason": reason_of(saga),
            "correlation_id": saga.correlation_id,
            "owner_id": saga.owner_id,
            "created_at": saga.created_at,
            "updated_at": saga.updated_at,
            "finished_at": saga.finished_at,
        }
        return super().to_representation(view)


class SagaEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    at = serializers.DateTimeField(read_only=True)
    kind = serializers.CharField(read_only=True, help_text="e.g. step_succeeded")
    step = serializers.CharField(read_only=True)
    attempt = serializers.IntegerField(read_only=True)
    detail = serializers.DictField(read_only=True)


class SagaStepLogSerializer(StepSerializer):
    kind = serializers.CharField(read_only=True, help_text="compensatable, pivot or retriable")
    error = serializers.CharField(read_only=True, help_text="Last refusal or fault code.")
    stalled = serializers.BooleanField(read_only=True, help_text="Waits for an operator.")


class SagaDetailSerializer(SagaSerializer):
    """A saga with its step log and its event timeline (in the order things happened)."""

    steps = SagaStepLogSerializer(many=True, read_only=True)
    events = SagaEventSerializer(many=True, read_only=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = super().to_representation(saga)
        kinds = self.context.get("step_kinds", {})
        view["steps"] = [
            {
                **step,
                "kind": kinds.get(step["name"], ""),
                "error": saga.state["steps"][step["name"]].get("error", ""),
                "stalled": saga.state["steps"][step["name"]].get("stalled", False),
            }
            for step in steps_of(saga)
        ]
        events: list[SagaEvent] = self.context["events"]
        view["events"] = [SagaEventSerializer(event).data for event in events]
        return view


class SagaActionResultSerializer(serializers.Serializer):
    """What an operator action left: the saga's status and steps. A repeat answers the same."""

    id = serializers.UUIDField(read_only=True)
    status = serializers.ChoiceField(choices=SAGA_STATUSES, read_only=True)
    reason = ReasonSerializer(read_only=True, allow_null=True)
    steps = StepSerializer(many=True, read_only=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = {
            "id": saga.id,
            "status": saga.status,
            "reason": reason_of(saga),
            "steps": steps_of(saga),
        }
        return super().to_representation(view)
