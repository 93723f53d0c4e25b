"""`GET /api/orders/{order_id}/?wait=N`: wait for an order's outcome without holding a thread.

The server is ASGI: a sync view sleeping in a loop would hold one of the few sync threads for up
to 30 s per waiting client. This async view runs the ordinary DRF detail view once (in a thread,
for authentication, permissions, visibility and the answer's shape), and only if the order is
still pending and the client asked to wait, polls the saga's status with short async queries,
sleeping in the event loop between them with backoff. No transaction stays open while waiting.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer

from sagas.api.errors import ApiError
from sagas.core.state import SagaStatus
from sagas.models import Saga
from storefront.api import serializers as s
from storefront.api.views import OrderDetail, wait_seconds

FIRST_PAUSE = 0.02
MAX_PAUSE = 0.5
TERMINAL = [SagaStatus.COMPLETED.value, SagaStatus.FAILED.value]

_detail = OrderDetail.as_view()


@csrf_exempt
async def order_detail(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    response = await sync_to_async(_detail)(request, order_id=order_id)
    if response.status_code != 200 or response.data["status"] != SagaStatus.PENDING:
        return response  # an error, or already finished
    try:
        wait = wait_seconds(request.GET.get("wait"))
    except ApiError:  # pragma: no cover - the detail view has already refused it
        return response
    if wait <= 0:
        return response
    saga = await _until_finished(uuid.UUID(response.data["saga_id"]), time.monotonic() + wait)
    if saga is None:  # purged while waiting: answer what was seen
        return response
    body = JSONRenderer().render(s.OrderSerializer(saga).data)
    return HttpResponse(body, content_type="application/json")


async def _until_finished(saga_id: uuid.UUID, deadline: float) -> Saga | None:
    """The saga once it has finished, or as it is at the deadline."""
    pause = FIRST_PAUSE
    sagas = Saga.objects.filter(id=saga_id)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 1.5, MAX_PAUSE)
        status = await sagas.values_list("status", flat=True).afirst()
        if status is None or status in TERMINAL:
            break
    return await sagas.afirst()


# The schema generator reads the DRF view behind this function.
order_detail.cls = OrderDetail  # type: ignore[attr-defined]
order_detail.initkwargs = {}  # type: ignore[attr-defined]
