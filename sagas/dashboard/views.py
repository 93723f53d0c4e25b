"""The dashboard's pages (staff only, signed in through the admin): the live overview, a saga's
timeline, and the operator actions, which call the same service functions as the API and the
commands (docs/architecture.md §7)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from sagas import registry, services
from sagas.config import dashboard_config
from sagas.core.state import SagaStatus, step_log
from sagas.core.transition import CANCELLED, SERVICE_UNAVAILABLE
from sagas.dashboard import feed, timeline
from sagas.dashboard.feed import Filters
from sagas.exceptions import SagaActionRejected, SagaNotFound
from sagas.models import Saga, SagaEvent

ACTIONS = {"retry": services.retry_saga, "compensate": services.compensate_saga}
ACTIONABLE = (SagaStatus.STUCK.value, SagaStatus.FAILED.value)
PLACEHOLDER = uuid.UUID(int=0)  # stands for a saga id in URLs the page's script fills in


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", _page(request, detail=None))


@staff_member_required
def saga_detail(request: HttpRequest, saga_id: uuid.UUID) -> HttpResponse:
    saga = get_object_or_404(Saga, id=saga_id)
    detail = _detail(saga)
    if request.GET.get("fragment"):
        return render(request, "dashboard/_detail.html", {"detail": detail})
    return render(request, "dashboard/index.html", _page(request, detail=detail))


@staff_member_required
@require_POST
def saga_action(request: HttpRequest, saga_id: uuid.UUID, action: str) -> HttpResponse:
    try:
        saga = ACTIONS[action](saga_id=saga_id)
    except SagaNotFound:
        return _answer(request, saga_id, ok=False, message=f"No saga {saga_id}.", status=404)
    except SagaActionRejected as refused:
        return _answer(request, saga_id, ok=False, message=f"Refused: {refused}", status=409)
    verb = "Retry" if action == "retry" else "Compensation"
    message = f"{verb} accepted: the saga is now {saga.status}."
    return _answer(request, saga_id, ok=True, message=message, status=200, saga_status=saga.status)


def _answer(
    request: HttpRequest,
    saga_id: uuid.UUID,
    *,
    ok: bool,
    message: str,
    status: int,
    saga_status: str = "",
) -> HttpResponse:
    """JSON for the page's script; otherwise (no script) back to the saga with a message."""
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": ok, "message": message, "status": saga_status}, status=status)
    messages.add_message(request, messages.SUCCESS if ok else messages.ERROR, message)
    return redirect(reverse("dashboard-saga", args=[saga_id]))


def _page(request: HttpRequest, detail: dict[str, Any] | None) -> dict[str, Any]:
    config = dashboard_config()
    filters = Filters.from_params(request.GET)
    return {
        "filters": filters,
        "statuses": feed.STATUSES,
        "counts": feed.counts(),
        "sagas": feed.recent(filters, config.recent),
        "reasons": _known_reasons(),
        "actionable": ACTIONABLE,
        "detail": detail,
        "placeholder": PLACEHOLDER,
        "config": json.dumps(
            {
                "socket": "/ws/dashboard/",
                "filters": filters.params(),
                "statuses": feed.STATUSES,
                "actionable": list(ACTIONABLE),
                "maxRows": 100,
                "frameSeconds": config.frame_seconds,
                "placeholder": str(PLACEHOLDER),
                "detailUrl": reverse("dashboard-saga", args=[PLACEHOLDER]),
            }
        ),
    }


def _known_reasons() -> list[str]:
    """Reason codes seen in the last day, plus the engine's own, for the reason filter."""
    since = timezone.now() - timedelta(days=1)
    seen = (
        SagaEvent.objects.filter(kind="saga_failed", at__gte=since)
        .values_list("detail__code", flat=True)
        .distinct()
    )
    return sorted({SERVICE_UNAVAILABLE, CANCELLED, *(code for code in seen if code)})


def _detail(saga: Saga) -> dict[str, Any]:
    try:
        definition = registry.definition(saga.type, saga.version)
    except LookupError:  # a saga type no longer registered still shows
        definition = None
    events = [
        timeline.Event(at, kind, step, attempt, detail or {})
        for at, kind, step, attempt, detail in SagaEvent.objects.filter(saga=saga)
        .order_by("id")
        .values_list("at", "kind", "step", "attempt", "detail")
    ]
    end = saga.finished_at or timezone.now()
    return {
        # The version only here: the live rows stay as small as they were.
        "saga": {**feed.summary(saga), "version": saga.version},
        "created_at": saga.created_at,
        "finished_at": saga.finished_at,
        "timeline": timeline.build(
            definition=definition,
            steps=step_log(saga.state) if "steps" in saga.state else {},
            events=events,
            end=end,
        ),
        "events": events,
        "actionable": saga.status in ACTIONABLE,
    }
