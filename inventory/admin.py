"""Admin views of the Inventory Service's tables: read-only, since stock moves only by services."""

from django.contrib import admin

from inventory.models import InventoryStepRecord, Product, Reservation, ReservationLine
from sagas.admin_kit import ReadOnlyAdmin, ReadOnlyInline, StepRecordAdmin


class ReservationLineInline(ReadOnlyInline):
    model = ReservationLine


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ("sku", "name", "price", "currency", "available", "created_at")
    list_filter = ("currency",)
    search_fields = ("sku", "name")
    ordering = ("sku",)


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ("id", "order_id", "status", "saga_id", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("=order_id", "=saga_id")
    ordering = ("-created_at",)
    inlines = [ReservationLineInline]


admin.site.register(InventoryStepRecord, StepRecordAdmin)
