"""Read-only views of the Inventory Service's catalogue, as plain dicts for the API and others."""

from collections.abc import Iterable
from decimal import Decimal
from typing import TypedDict, cast

from inventory.models import Product


class ProductView(TypedDict):
    sku: str
    name: str
    price: Decimal
    currency: str
    available: int  # already excludes stock reserved by in-flight sagas


_FIELDS = ("sku", "name", "price", "currency", "available")


def catalogue() -> list[ProductView]:
    return [cast(ProductView, row) for row in Product.objects.order_by("sku").values(*_FIELDS)]


def products_by_sku(skus: Iterable[str]) -> dict[str, ProductView]:
    """The products among `skus`, keyed by SKU; unknown SKUs are simply absent."""
    rows = Product.objects.filter(sku__in=set(skus)).values(*_FIELDS)
    return {row["sku"]: cast(ProductView, row) for row in rows}
