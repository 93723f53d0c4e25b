"""Admin views of the Payment Service's tables: read-only, since money moves only through sagas."""

from django.contrib import admin
from django.http import HttpRequest

from payments.models import Charge, PaymentMethod, PaymentStepRecord, Refund


class ReadOnlyAdmin(admin.ModelAdmin):
    # Editing a charge or refund by hand would break charges - refunds = 0 for failed sagas.
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ("token", "brand", "last4", "exp_month", "exp_year", "behaviour", "created_at")
    list_filter = ("brand", "behaviour")
    search_fields = ("=token", "=last4")
    ordering = ("-created_at",)


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = ("id", "order_id", "amount", "currency", "status", "saga_id", "created_at")
    list_filter = ("status", "currency")
    search_fields = ("=order_id", "=saga_id", "=payment_token")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "charge", "amount", "created_at")
    list_select_related = ("charge",)
    ordering = ("-created_at",)


@admin.register(PaymentStepRecord)
class PaymentStepRecordAdmin(ReadOnlyAdmin):
    list_display = ("saga_id", "step", "action_reply", "compensation_reply", "updated_at")
    list_filter = ("step",)
    search_fields = ("=saga_id",)
    ordering = ("-updated_at",)
