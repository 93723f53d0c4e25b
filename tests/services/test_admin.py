"""The services' admin pages render, stay read-only, and survive any search term."""

import pytest
from django.apps import apps
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from tests.services.builders import product

pytestmark = pytest.mark.django_db

SERVICE_MODELS = [
    model
    for label in ("orders", "payments", "inventory", "shipping")
    for model in apps.get_app_config(label).get_models()
    if model._meta.model_name not in {"orderline", "reservationline"}  # shown inline
]


@pytest.mark.parametrize("model", SERVICE_MODELS, ids=lambda model: model._meta.label)
@pytest.mark.parametrize("query", ["", "not-a-uuid", "42"])
def test_the_changelist_renders_for_any_search(
    admin_client: Client, model: type[Model], query: str
) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    response = admin_client.get(url, {"q": query} if query else {})

    assert response.status_code == 200


def test_stock_cannot_be_edited_in_the_admin(admin_client: Client) -> None:
    item = product("SKU-1", stock=3)
    url = reverse("admin:inventory_product_change", args=[item.pk])

    response = admin_client.post(
        url, {"sku": "SKU-1", "name": "x", "price": "1.00", "currency": "EUR", "available": "999"}
    )

    assert response.status_code == 403
    item.refresh_from_db()
    assert item.available == 3
