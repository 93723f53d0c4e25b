"""Operators' view of sagas: status, steps, replies waiting and the event timeline; actions call
the same service functions as the API and the commands."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sagas import services
from sagas.admin_kit import ReadOnlyAdmin
from sagas.exceptions import SagaError
from sagas.models import Saga, SagaEvent, SagaReply, WorkerHeartbeat


class SagaEventInline(admin.TabularInline):
    model = SagaEvent
    fields = ("at", "kind", "step", "attempt", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Saga)
class SagaAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "type",
        "status",
        "reason_code",
        "correlation_id",
        "created_at",
        "finished_at",
        "due_at",
        "lease_owner",
    )
    list_filter = ("status", "type", "reason_code")
    search_fields = ("id", "correlation_id")
    readonly_fields = [f.name for f in Saga._meta.fields]
    inlines = [SagaEventInline]
    actions = ["retry", "compensate"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry stalled steps of the selected sagas")
    def retry(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._each(request, queryset, services.retry_saga, "retried")

    @admin.action(description="Compensate the selected sagas")
    def compensate(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._each(request, queryset, services.compensate_saga, "compensating")

    def _each(self, request: HttpRequest, queryset: QuerySet[Saga], action: Any, done: str) -> None:
        ok = 0
        for saga_id in queryset.values_list("id", flat=True):
            try:
                action(saga_id=saga_id)
                ok += 1
            except SagaError as exc:
                self.message_user(request, f"{saga_id}: {exc}", messages.WARNING)
        self.message_user(request, f"{ok} saga(s) {done}.")


@admin.register(SagaReply)
class SagaReplyAdmin(admin.ModelAdmin):
    list_display = ("saga", "step", "compensation", "attempt", "outcome", "code", "received_at")
    list_filter = ("outcome", "step")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    """Which saga workers and clusters beat, from where, and when last (the alerts' source)."""

    list_display = ("role", "queue", "name", "host", "pid", "started_at", "beat_at")
    list_filter = ("role", "queue")
    search_fields = ("name", "host")
    ordering = ("role", "queue", "-beat_at")
