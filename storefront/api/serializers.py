"""Request and response shapes of the storefront's API (catalogue and orders). Each declares
exactly the fields it reads or writes. Prices, totals and statuses are read-only: the server
computes them; a client never sends a price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from orders.saga import OrderSagaData
from sagas.api.serializers import (
    FieldsMadeOnce,
    ReasonSerializer,
    StepSerializer,
    reason_of,
    steps_of,
)
from sagas.core.state import SagaStatus
from sagas.models import Saga
from storefront.api.countries import COUNTRY_CODES
from storefront.api.fields import (
    StrictCharField,
    StrictDecimalField,
    StrictIntegerField,
    StrictRegexField,
)

MAX_LINES = 100
MAX_QUANTITY = 1000
SKU_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
CURRENCY_PATTERN = r"\A[A-Z]{3}\Z"


class StrictSerializer(FieldsMadeOnce):
    """Rejects fields it does not know, so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


# --- Products -------------------------------------------------------------------------------


class ProductSerializer(FieldsMadeOnce):
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


class OrderAcceptedSerializer(FieldsMadeOnce):
    order_id = serializers.UUIDField(read_only=True)
    saga_id = serializers.UUIDField(read_only=True)
    status = serializers.ChoiceField(choices=ACCEPTED_STATUSES, read_only=True)


# --- Reading orders and sagas ---------------------------------------------------------------

ORDER_STATUSES = [SagaStatus.PENDING.value, SagaStatus.COMPLETED.value, SagaStatus.FAILED.value]


def order_status(saga: Saga) -> str:
    """The semantic lock: an order is pending until its saga has finished."""
    return saga.status if saga.status in ORDER_STATUSES else SagaStatus.PENDING.value


def is_finished(saga: Saga) -> bool:
    return SagaStatus(saga.status).terminal


class OrderLineSerializer(FieldsMadeOnce):
    sku = serializers.CharField(read_only=True)
    quantity = serializers.IntegerField(read_only=True)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)


class CardSerializer(FieldsMadeOnce):
    brand = serializers.CharField(read_only=True)
    last4 = serializers.CharField(read_only=True)


class ShippingAddressSerializer(FieldsMadeOnce):
    name = serializers.CharField(read_only=True)
    line1 = serializers.CharField(read_only=True)
    city = serializers.CharField(read_only=True)
    postal_code = serializers.CharField(read_only=True)
    country = serializers.CharField(read_only=True)


class OrderSerializer(FieldsMadeOnce):
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
        data = OrderSagaData.from_json(saga.data)
        view = {
            "order_id": saga.correlation_id,
            "saga_id": saga.id,
            "status": order_status(saga),
            # Only a finished order has a reason: a compensating saga is still pending.
            "reason": reason_of(saga) if saga.status == SagaStatus.FAILED else None,
            "items": data.lines,
            "total": data.total,
            "currency": data.currency,
            "card": data.card,
            "shipping_address": data.shipping_address,
            "steps": steps_of(saga),
            "created_at": saga.created_at,
            "finished_at": saga.finished_at if is_finished(saga) else None,
        }
        return super().to_representation(view)
