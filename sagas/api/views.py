"""API views: parse, call one service function, shape the answer."""

from __future__ import annotations

import time
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inventory.exceptions import ProductExists
from inventory.selectors import catalogue
from inventory.services import create_product
from orders.saga import ORDER_SAGA
from sagas.api import serializers as s
from sagas.api.errors import ApiError
from sagas.checkout import OrderRejected, place_order
from sagas.models import Saga

MAX_WAIT_SECONDS = 30


class IsStaffForWrites(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if request.method in permissions.SAFE_METHODS:
            return bool(user and user.is_authenticated)
        return bool(user and user.is_staff)


class ProductList(APIView):
    permission_classes = [IsStaffForWrites]

    def get(self, request: Request) -> Response:
        return Response(s.ProductSerializer(catalogue(), many=True).data)

    def post(self, request: Request) -> Response:
        body = s.ProductCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            product = create_product(**body.validated_data)
        except ProductExists as exists:
            raise ApiError(status.HTTP_409_CONFLICT, "conflict", str(exists)) from None
        return Response(s.ProductSerializer(product).data, status=status.HTTP_201_CREATED)


def orders_visible_to(request: Request) -> QuerySet[Saga]:
    sagas = Saga.objects.filter(type=ORDER_SAGA).order_by("-created_at")
    return sagas if request.user.is_staff else sagas.filter(owner_id=request.user.pk)


class OrderList(generics.ListAPIView):
    serializer_class = s.OrderSerializer

    def get_queryset(self) -> QuerySet[Saga]:
        return orders_visible_to(self.request)

    def post(self, request: Request) -> Response:
        body = s.OrderRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        owner_id = cast(int, request.user.pk)
        if "user_id" in data:
            if not request.user.is_staff:
                raise ApiError(
                    status.HTTP_403_FORBIDDEN,
                    "permission_denied",
                    "Only staff may order for another user.",
                )
            if not get_user_model().objects.filter(pk=data["user_id"]).exists():
                raise ApiError(status.HTTP_400_BAD_REQUEST, "invalid", "Unknown user_id.")
            owner_id = data["user_id"]
        try:
            saga = place_order(
                owner_id=owner_id,
                items=data["items"],
                payment=data["payment"],
                shipping_address=data["shipping_address"],
            )
        except OrderRejected as rejected:
            return Response(
                {
                    "code": "invalid",
                    "message": "The request has invalid fields.",
                    "fields": rejected.fields,
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            {
                "order_id": saga.correlation_id,
                "saga_id": str(saga.id),
                "status": s.order_status(saga),
            },
            status=status.HTTP_202_ACCEPTED,
        )


class OrderDetail(generics.RetrieveAPIView):
    serializer_class = s.OrderSerializer
    lookup_field = "correlation_id"
    lookup_url_kwarg = "order_id"

    def get_queryset(self) -> QuerySet[Saga]:
        return orders_visible_to(self.request)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            wait = float(request.query_params.get("wait", 0))
        except ValueError:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST, "invalid", "wait must be a number of seconds."
            ) from None
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise ApiError(
                status.HTTP_400_BAD_REQUEST,
                "invalid",
                f"wait must be between 0 and {MAX_WAIT_SECONDS}.",
            )
        saga = self.get_object()
        deadline = time.monotonic() + wait
        pause = 0.01
        # Each look is its own short query: no transaction stays open while waiting.
        while not s.is_finished(saga) and time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.25)
            saga.refresh_from_db()
        return Response(self.get_serializer(saga).data)
