"""Admin views of the Shipping Service's tables: read-only, since only sagas change shipments."""

from django.contrib import admin

from sagas.admin_kit import ReadOnlyAdmin, StepRecordAdmin
from shipping.models import Shipment, ShippingStepRecord


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "order_id", "country", "city", "status", "saga_id", "created_at")
    list_filter = ("status", "country")
    search_fields = ("=order_id", "=saga_id", "postal_code")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"


admin.site.register(ShippingStepRecord, StepRecordAdmin)
