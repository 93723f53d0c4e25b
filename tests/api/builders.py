"""Builders for API tests: users with token clients, catalogue products, order bodies, and the
counts that show whether a request created anything."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django_q.models import OrmQ
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.services import create_product
from payments.models import PaymentMethod
from sagas.models import Saga
from storefront import samples
from storefront.models import IdempotencyKey

_names = itertools.count(1)


def user(*, staff: bool = False, name: str = "") -> User:
    username = name or f"{'staff' if staff else 'user'}{next(_names)}-{uuid.uuid4().hex[:6]}"
    # No password (an unusable one): API users authenticate by token, and hashing is slow.
    return User.objects.create_user(username=username, password=None, is_staff=staff)


def client_for(who: User) -> APIClient:
    """A client that authenticates as `who` with a DRF token, like an API user does."""
    token, _ = Token.objects.get_or_create(user=who)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def anonymous() -> APIClient:
    return APIClient()


def product(sku: str = "MUG-002", *, stock: int = 100, price: str = "12.50") -> Product:
    """The catalogue product `sku`, added if it is not there yet."""
    existing = Product.objects.filter(sku=sku).first()
    if existing is not None:
        return existing
    return create_product(
        sku=sku, name=f"Product {sku}", price=Decimal(price), currency="EUR", stock=stock
    )


def order_body(*, sku: str = "MUG-002", quantity: int = 2, **overrides: Any) -> dict[str, Any]:
    """A valid order for one line of `sku` (the product must exist)."""
    return {**samples.order_body(sku=sku, quantity=quantity), **overrides}


def place(client: APIClient, body: dict[str, Any] | None = None, **headers: Any) -> Any:
    """POST an order; `headers` as HTTP_... META names."""
    return client.post("/api/orders/", body or order_body(), format="json", **headers)


def created_rows() -> dict[str, int]:
    """What placing an order creates: a saga, queued commands, a card token, a key."""
    return {
        "sagas": Saga.objects.count(),
        "queued": OrmQ.objects.count(),
        "payment_methods": PaymentMethod.objects.count(),
        "idempotency_keys": IdempotencyKey.objects.count(),
    }
