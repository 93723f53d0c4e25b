"""Operators' view of sagas: newest first; a saga's page reads top-down as a summary, its steps
as a table, its event timeline to the millisecond, and the raw JSON folded away below. Actions
call the same service functions as the API and the commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from sagas import registry, services
from sagas.admin_kit import ReadOnlyAdmin
from sagas.core.state import step_log
from sagas.exceptions import SagaError
from sagas.models import Saga, SagaEvent, SagaReply, WorkerHeartbeat

# The event that ends each outcome of a step's latest round: its duration runs from the step's
# first command to this event (or to its latest event while it is still in flight).
STEP_ENDS = {
    "succeeded": "step_succeeded",
    "refused": "step_refused",
    "compensated": "step_compensated",
}


def moment(at: datetime | None) -> str:
    """A timestamp to the millisecond, in the current time zone."""
    if at is None:
        return "—"
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def span(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass(frozen=True)
class StepRow:
    name: str
    kind: str
    status: str
    attempts: int
    compensation_attempts: int
    error: str
    duration: str


@dataclass(frozen=True)
class EventRow:
    at: str
    elapsed: str  # since the saga's first event
    kind: str
    step: str
    attempt: int
    detail: str


def step_rows(saga: Saga, events: list[SagaEvent]) -> list[StepRow]:
    """The step log (`saga.state`) in the definition's order, with each step's kind from the
    definition and its duration from the timeline."""
    try:
        kinds = {
            step.name: step.kind.value
            for step in registry.definition(saga.type, saga.version).steps
        }
    except LookupError:  # a saga type no longer registered still shows, in the stored order
        kinds = {}
    logged = step_log(saga.state)
    rows = []
    for name in [*(n for n in kinds if n in logged), *(n for n in logged if n not in kinds)]:
        step = logged[name]
        mine = [event for event in events if event.step == name]
        sent = [event.at for event in mine if event.kind == "step_sent"]
        ends = [event.at for event in mine if event.kind == STEP_ENDS.get(step["status"])]
        end = ends[-1] if ends else (mine[-1].at if mine else None)
        status = step["status"] + (" (stalled)" if step.get("stalled") else "")
        rows.append(
            StepRow(
                name=name,
                kind=kinds.get(name, ""),
                status=status,
                attempts=step["attempts"],
                compensation_attempts=step["compensation_attempts"],
                error=step.get("error", ""),
                duration=span((end - sent[0]).total_seconds()) if sent and end else "—",
            )
        )
    return rows


def event_rows(events: list[SagaEvent]) -> list[EventRow]:
    start = events[0].at if events else None
    return [
        EventRow(
            at=moment(event.at),
            elapsed=f"+{span((event.at - start).total_seconds())}" if start else "",
            kind=event.kind,
            step=event.step,
            attempt=event.attempt,
            detail=json.dumps(event.detail, sort_keys=True) if event.detail else "",
        )
        for event in events
    ]


@admin.register(Saga)
class SagaAdmin(admin.ModelAdmin):
    # The page itself: templates/admin/sagas/saga/change_form.html.
    list_display = (
        "id",
        "type",
        "version",
        "status",
        "reason_code",
        "correlation_id",
        "created",
        "finished",
        "due",
        "lease_owner",
    )
    list_filter = ("status", "type", "version", "reason_code")
    search_fields = ("id", "correlation_id")
    ordering = ("-created_at",)
    fields = (
        "id",
        "type",
        "version",
        "status",
        "reason",
        "correlation_id",
        "owner_id",
        "created",
        "updated",
        "finished",
        "due",
        "lease",
        "fence",
    )
    readonly_fields = fields
    actions = ["retry", "compensate"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(ordering="created_at")
    def created(self, saga: Saga) -> str:
        return moment(saga.created_at)

    @admin.display(ordering="updated_at")
    def updated(self, saga: Saga) -> str:
        return moment(saga.updated_at)

    @admin.display(ordering="finished_at")
    def finished(self, saga: Saga) -> str:
        return moment(saga.finished_at)

    @admin.display(ordering="due_at")
    def due(self, saga: Saga) -> str:
        return moment(saga.due_at)

    @admin.display()
    def reason(self, saga: Saga) -> str:
        return f"{saga.reason_code}: {saga.reason_message}" if saga.reason_code else "—"

    @admin.display()
    def lease(self, saga: Saga) -> str:
        return f"{saga.lease_owner} until {moment(saga.lease_until)}" if saga.lease_owner else "—"

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Saga | None = None,
    ) -> HttpResponse:
        if obj is not None:
            events = list(SagaEvent.objects.filter(saga=obj).order_by("id"))
            context.update(
                saga_steps=step_rows(obj, events),
                saga_events=event_rows(events),
                saga_timezone=timezone.get_current_timezone_name(),
                saga_data=json.dumps(obj.data, indent=2, sort_keys=True),
                saga_state=json.dumps(obj.state, indent=2),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

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
