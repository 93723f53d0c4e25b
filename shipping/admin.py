"""Admin views of the Shipping Service's tables: read-only, since only sagas change shipments."""

from django.contrib import admin
from django.http import HttpRequest

from shipping.models import Shipment, ShippingStepRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    # Shipments change only through saga commands, so the admin shows them and nothing more.
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "order_id", "country", "city", "status", "saga_id", "created_at")
    list_filter = ("status", "country")
    search_fields = ("=order_id", "=saga_id", "postal_code")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"


@admin.register(ShippingStepRecord)
class ShippingStepRecordAdmin(ReadOnlyAdmin):
    list_display = ("saga_id", "step", "action_reply", "compensation_reply", "updated_at")
    list_filter = ("step",)
    search_fields = ("=saga_id",)
    ordering = ("-updated_at",)
