"""Admin views of the Order Service's tables: read-only, since only sagas change orders."""

from django.contrib import admin
from django.http import HttpRequest

from orders.models import Order, OrderLine, OrderStepRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    # Orders change only through saga commands, so the admin shows them and nothing more.
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user_id", "status", "total", "currency", "saga_id", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=id", "=saga_id", "=user_id")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]


@admin.register(OrderStepRecord)
class OrderStepRecordAdmin(ReadOnlyAdmin):
    list_display = ("saga_id", "step", "action_reply", "compensation_reply", "updated_at")
    list_filter = ("step",)
    search_fields = ("=saga_id",)
    ordering = ("-updated_at",)
