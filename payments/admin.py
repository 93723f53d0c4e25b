"""Admin views of the Payment Service's tables: read-only, since money moves only through sagas."""

from django.contrib import admin

from payments.models import Charge, PaymentMethod, PaymentStepRecord, Refund
from sagas.admin_kit import ReadOnlyAdmin, StepRecordAdmin


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


admin.site.register(PaymentStepRecord, StepRecordAdmin)
