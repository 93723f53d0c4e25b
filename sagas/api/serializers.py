"""Request and response shapes of the public API. Prices, totals and statuses are read-only:
the server computes them; a client never sends a price."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from sagas.api.countries import COUNTRY_CODES
from sagas.models import Saga

MAX_LINES = 100
MAX_QUANTITY = 1000


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ProductSerializer(serializers.Serializer):
    sku = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    currency = serializers.CharField(read_only=True)
    available = serializers.IntegerField(read_only=True)


class ProductCreateSerializer(StrictSerializer):
    sku = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64)
    name = serializers.CharField(max_length=200)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)
    currency = serializers.RegexField(r"^[A-Z]{3}$", default="EUR")
    stock = serializers.IntegerField(min_value=0, max_value=10_000_000)


class OrderItemSerializer(StrictSerializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class PaymentSerializer(StrictSerializer):
    card_number = serializers.CharField(max_length=32, trim_whitespace=True)
    exp_month = serializers.IntegerField(min_value=1, max_value=12)
    exp_year = serializers.IntegerField(min_value=2000, max_value=2100)
    cvc = serializers.RegexField(r"^[0-9]{3,4}$")


class AddressSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20)
    country = serializers.CharField(min_length=2, max_length=2)

    def validate_country(self, value: str) -> str:
        code = value.upper()
        if code not in COUNTRY_CODES:
            raise serializers.ValidationError("Unknown country code (ISO 3166-1 alpha-2).")
        return code


class OrderRequestSerializer(StrictSerializer):
    items = serializers.ListField(
        child=OrderItemSerializer(), allow_empty=False, max_length=MAX_LINES
    )
    payment = PaymentSerializer()
    shipping_address = AddressSerializer()
    user_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Staff only: place the order for this user."
    )

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        skus = [item["sku"] for item in items]
        duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Duplicate SKUs: {', '.join(duplicates)}.")
        return items


class StepSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    compensation_attempts = serializers.IntegerField()


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


def order_status(saga: Saga) -> str:
    """The semantic lock: an order is pending until its saga has finished."""
    return saga.status if saga.status in ("completed", "failed") else "pending"


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


class OrderSerializer(serializers.Serializer):
    """An order as its owner sees it, read from its saga."""

    order_id = serializers.CharField(source="correlation_id", read_only=True)
    saga_id = serializers.UUIDField(source="id", read_only=True)
    status = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_status(self, saga: Saga) -> str:
        return order_status(saga)

    def get_reason(self, saga: Saga) -> dict[str, str] | None:
        if saga.status != "failed":
            return None
        return {"code": saga.reason_code, "message": saga.reason_message}

    def get_items(self, saga: Saga) -> list[dict[str, Any]]:
        return list(saga.data["lines"])

    def get_total(self, saga: Saga) -> str:
        return str(saga.data["total"])

    def get_currency(self, saga: Saga) -> str:
        return str(saga.data["currency"])

    def get_steps(self, saga: Saga) -> list[dict[str, Any]]:
        return steps_of(saga)


def is_finished(saga: Saga) -> bool:
    return order_status(saga) != "pending"
