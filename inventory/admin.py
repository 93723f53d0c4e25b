"""Admin views of the Inventory Service's tables: read-only, since stock moves only by services."""

from django.contrib import admin
from django.http import HttpRequest

from inventory.models import InventoryStepRecord, Product, Reservation, ReservationLine


class ReadOnlyAdmin(admin.ModelAdmin):
    # Editing `available` by hand would break stock conservation; products are added through
    # inventory.services.create_product (the API and seed_demo).
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReservationLineInline(admin.TabularInline):
    model = ReservationLine
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


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


@admin.register(InventoryStepRecord)
class InventoryStepRecordAdmin(ReadOnlyAdmin):
    list_display = ("saga_id", "step", "action_reply", "compensation_reply", "updated_at")
    list_filter = ("step",)
    search_fields = ("=saga_id",)
    ordering = ("-updated_at",)
