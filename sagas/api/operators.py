"""The operators' endpoints (staff only): list and inspect sagas, retry or compensate them through
the same service functions as the admin and the management commands."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sagas import registry, services
from sagas.api import serializers as s
from sagas.api.errors import invalid
from sagas.api.schema import errors
from sagas.core.state import SagaStatus
from sagas.models import Saga, SagaEvent

STATUSES = [status.value for status in SagaStatus]
SAGA_ID = OpenApiParameter("saga_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class SagaList(generics.ListAPIView):
    permission_classes = [permissions.IsAdminUser]
    serializer_class = s.SagaSerializer

    def get_queryset(self) -> QuerySet[Saga]:
        sagas = Saga.objects.order_by("-created_at", "id")
        params = self.request.query_params
        problems = {}
        status = params.get("status")
        if status is not None:
            if status not in STATUSES:
                problems["status"] = [f"One of: {', '.join(STATUSES)}."]
            sagas = sagas.filter(status=status)
        saga_type = params.get("type")
        if saga_type is not None:
            if not 1 <= len(saga_type) <= 64:
                problems["type"] = ["1 to 64 characters."]
            sagas = sagas.filter(type=saga_type)
        if problems:
            raise invalid(problems)
        return sagas

    @extend_schema(
        operation_id="sagas_list",
        summary="Sagas, newest first, filtered by status and type (staff)",
        parameters=[
            OpenApiParameter("status", str, enum=STATUSES),
            OpenApiParameter(
                "type",
                {"type": "string", "minLength": 1, "maxLength": 64},
                description="e.g. order",
            ),
        ],
        responses={200: s.SagaSerializer(many=True), **errors(400, 401, 403)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def saga_detail(saga: Saga) -> dict[str, Any]:
    """A saga with its step log and its event timeline, in the order things happened."""
    try:
        steps = registry.definition(saga.type, saga.version).steps
        kinds = {step.name: step.kind.value for step in steps}
    except LookupError:  # a saga type no longer registered still shows
        kinds = {}
    events = list(SagaEvent.objects.filter(saga=saga).order_by("id"))
    return s.SagaDetailSerializer(saga, context={"events": events, "step_kinds": kinds}).data


class SagaDetail(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        operation_id="sagas_retrieve",
        summary="A saga with its step log and event timeline (staff)",
        parameters=[SAGA_ID],
        responses={200: s.SagaDetailSerializer, **errors(401, 403, 404)},
    )
    def get(self, request: Request, saga_id: uuid.UUID) -> Response:
        saga = generics.get_object_or_404(Saga.objects.all(), id=saga_id)
        return Response(saga_detail(saga))


class SagaRetry(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        operation_id="sagas_retry",
        summary="Give a stuck saga's stalled steps a fresh round of attempts (staff)",
        description=(
            "Idempotent: a saga already retried and in flight again is answered 200 as it is. "
            "A saga that is not stuck and was never retried, or that has finished, cannot be "
            "retried: 409."
        ),
        parameters=[SAGA_ID],
        request=None,
        responses={200: s.SagaActionResultSerializer, **errors(401, 403, 404, 409)},
    )
    def post(self, request: Request, saga_id: uuid.UUID) -> Response:
        saga = services.retry_saga(saga_id=saga_id)
        return Response(s.SagaActionResultSerializer(saga).data)


class SagaCompensate(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        operation_id="sagas_compensate",
        summary="Turn a saga back: compensate what it did (staff)",
        description=(
            "Idempotent: a saga an operator already turned back (compensating, or failed with "
            "reason `cancelled`) is answered 200 as it is. A saga past its pivot (shipment "
            "booked), completed, or already turning back for another reason cannot be turned "
            "back by an operator: 409."
        ),
        parameters=[SAGA_ID],
        request=None,
        responses={200: s.SagaActionResultSerializer, **errors(401, 403, 404, 409)},
    )
    def post(self, request: Request, saga_id: uuid.UUID) -> Response:
        saga = services.compensate_saga(saga_id=saga_id)
        return Response(s.SagaActionResultSerializer(saga).data)
