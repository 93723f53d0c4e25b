"""The users' endpoints (catalogue, orders): parse, call one service function, shape the answer."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.exceptions import ProductExists
from inventory.selectors import catalogue
from inventory.services import create_product
from orders.saga import ORDER_SAGA
from sagas.api.config import api_config
from sagas.api.errors import ApiError, invalid
from sagas.api.permissions import IsStaffForWrites
from sagas.api.schema import error, errors
from sagas.core.state import SagaStatus
from sagas.models import Saga
from storefront import samples
from storefront.api import serializers as s
from storefront.api.idempotency import (
    IDEMPOTENCY_KEY,
    REPLAYED_HEADER,
    idempotency_key,
    request_digest,
)
from storefront.api.throttles import OrderCreationThrottle
from storefront.checkout import (
    Idempotency,
    IdempotencyKeyReused,
    OrderRejected,
    place_order,
)

ORDER_EXAMPLE = samples.order_body()


class ProductList(APIView):
    permission_classes = [IsStaffForWrites]

    @extend_schema(
        operation_id="products_list",
        summary="The catalogue",
        responses={200: s.ProductSerializer(many=True), **errors(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(s.ProductSerializer(catalogue(), many=True).data)

    @extend_schema(
        operation_id="products_create",
        summary="Add a product with its initial stock (staff)",
        request=s.ProductCreateSerializer,
        responses={
            201: s.ProductSerializer,
            **errors(400, 401, 403, 413, 415),
            409: error(
                409,
                "A product with this SKU is already in the catalogue.",
                {
                    "code": "product_exists",
                    "message": "a product with SKU 'MUG-009' already exists",
                },
            ),
        },
        examples=[
            OpenApiExample(
                "mug",
                request_only=True,
                value={"sku": "MUG-009", "name": "Mug", "price": "12.50", "stock": 100},
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = s.ProductCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            product = create_product(**body.validated_data)
        except ProductExists as exists:
            raise ApiError(status.HTTP_409_CONFLICT, "product_exists", str(exists)) from None
        return Response(s.ProductSerializer(product).data, status=status.HTTP_201_CREATED)


def orders_visible_to(request: Request) -> QuerySet[Saga]:
    """Staff see every order; a user only their own (another's is simply not found)."""
    sagas = Saga.objects.filter(type=ORDER_SAGA).order_by("-created_at", "id")
    return sagas if request.user.is_staff else sagas.filter(owner_id=request.user.pk)


class OrderList(generics.ListAPIView):
    serializer_class = s.OrderSerializer
    throttle_classes = [OrderCreationThrottle]

    def get_queryset(self) -> QuerySet[Saga]:
        return orders_visible_to(self.request)

    @extend_schema(
        operation_id="orders_list",
        summary="Your orders, newest first (staff: everyone's)",
        responses={200: s.OrderSerializer(many=True), **errors(400, 401)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="orders_create",
        summary="Place an order",
        description=(
            "Validates the order, prices it from the catalogue, tokenises the card and starts "
            "the order saga; answers at once, without waiting on any service. Poll "
            "`GET /api/orders/{order_id}/?wait=N` for the outcome. The card number and CVC "
            "are never stored, logged or echoed."
        ),
        request=s.OrderCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, REPLAYED_HEADER],
        responses={
            202: OpenApiResponse(s.OrderAcceptedSerializer, description="The saga has started."),
            **errors(400, 401, 403, 413, 415, 422, 429, 503),
        },
        examples=[
            OpenApiExample("an order", request_only=True, value=ORDER_EXAMPLE),
            OpenApiExample(
                "accepted",
                response_only=True,
                status_codes=[202],
                value={
                    "order_id": "4f7c1c2e-7d55-4b8e-9a51-0b1f5f6d8c11",
                    "saga_id": "b0a4d5a2-93f3-4a1e-8c36-1c1f1e5e9d42",
                    "status": SagaStatus.PENDING.value,
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key(request)
        body = s.OrderCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        requester_id = cast(int, request.user.pk)
        try:
            placed = place_order(
                owner_id=self._owner_id(request, data),
                items=data["items"],
                payment=data["payment"],
                shipping_address=data["shipping_address"],
                idempotency=Idempotency(requester_id, key, request_digest(request.data))
                if key
                else None,
            )
        except OrderRejected as rejected:
            raise invalid(rejected.fields) from None
        except IdempotencyKeyReused:
            raise ApiError(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body.",
            ) from None
        headers = {"Idempotent-Replayed": "true"} if placed.replayed else None
        # Through the serializer, so a replay (stored as jsonb, keys reordered) reads the same.
        answer = s.OrderAcceptedSerializer(placed.body).data
        return Response(answer, status=placed.status_code, headers=headers)

    def _owner_id(self, request: Request, data: dict[str, Any]) -> int:
        if "user_id" not in data:
            return cast(int, request.user.pk)
        if not request.user.is_staff:
            raise ApiError(
                status.HTTP_403_FORBIDDEN,
                "permission_denied",
                "Only staff may order for another user.",
            )
        if not get_user_model().objects.filter(pk=data["user_id"]).exists():
            raise invalid({"user_id": ["Unknown user."]})
        return cast(int, data["user_id"])


WAIT = OpenApiParameter(
    "wait",
    {"type": "number", "minimum": 0, "maximum": 30},
    description=(
        "Long-poll: answer as soon as the order is completed or failed, or after this many "
        "seconds (at most 30) with the order as it is then."
    ),
)


def wait_seconds(raw: str | None) -> float:
    """The `wait` query parameter in seconds. Raises a 400 ApiError when malformed."""
    if raw is None or raw == "":
        return 0.0
    limit = api_config().max_wait_seconds
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    # `not <=` also refuses NaN.
    if not 0 <= seconds <= limit:
        raise invalid({"wait": [f"A number of seconds from 0 to {limit}."]})
    return seconds


class OrderDetail(generics.RetrieveAPIView):
    """One order. Routed through `storefront.api.longpoll.order_detail`, which waits when asked."""

    serializer_class = s.OrderSerializer

    def get_queryset(self) -> QuerySet[Saga]:
        return orders_visible_to(self.request)

    def get_object(self) -> Saga:
        order_id = self.kwargs["order_id"]
        saga = self.get_queryset().filter(correlation_id=str(order_id)).first()
        if saga is None:
            raise ApiError(status.HTTP_404_NOT_FOUND, "not_found", "No such order.")
        return saga

    @extend_schema(
        operation_id="orders_retrieve",
        summary="An order, its status and its steps; optionally wait for the outcome",
        description=(
            "`status` is `pending` until the saga has finished, then `completed` or `failed` "
            "(with a `reason`). With `?wait=N` the answer comes as soon as the order has "
            "finished, or after N seconds."
        ),
        parameters=[
            OpenApiParameter("order_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            WAIT,
        ],
        responses={200: s.OrderSerializer, **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait_seconds(request.query_params.get("wait"))
        return super().get(request, *args, **kwargs)
