"""Admin views of the Order Service's tables: read-only, since only sagas change orders."""

from django.contrib import admin

from orders.models import Order, OrderLine, OrderStepRecord
from sagas.admin_kit import ReadOnlyAdmin, ReadOnlyInline, StepRecordAdmin


class OrderLineInline(ReadOnlyInline):
    model = OrderLine


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user_id", "status", "total", "currency", "saga_id", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=id", "=saga_id", "=user_id")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]


admin.site.register(OrderStepRecord, StepRecordAdmin)
