"""Tests of the database-per-service mode itself. They need the four service databases
configured (`make test-multidb` sets ORDERS_DATABASE_URL ... SHIPPING_DATABASE_URL); in the
one-database suite they are skipped with that reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if set(settings.SERVICE_DATABASE_URLS) == set(settings.SERVICE_APPS):
        return
    skip = pytest.mark.skip(
        reason="needs a database per service: run `make test-multidb` "
        "(it sets ORDERS_, PAYMENTS_, INVENTORY_ and SHIPPING_DATABASE_URL)"
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)
