"""A database per service: each service app's tables are read, written and migrated in its own
database; the engine, the broker, the storefront and Django's own apps stay in default."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connections, router
from django.db.models import Model
from django.test import Client
from django_q.models import OrmQ

from orders.models import Order
from sagas.models import Saga, SagaEvent, SagaReply
from storefront.models import IdempotencyKey
from tests.dashboard.builders import in_another_process

pytestmark = pytest.mark.django_db(databases="__all__")

SERVICES = ("orders", "payments", "inventory", "shipping")
STAY_IN_DEFAULT: list[type[Model]] = [
    Saga,
    SagaReply,
    SagaEvent,
    OrmQ,
    IdempotencyKey,
    User,
    ContentType,
    Session,
]


def tables(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


def test_each_service_app_reads_and_writes_its_own_database() -> None:
    for service in SERVICES:
        for model in apps.get_app_config(service).get_models():
            assert router.db_for_read(model) == service, model
            assert router.db_for_write(model) == service, model


def test_the_engine_the_broker_the_storefront_and_django_stay_in_default() -> None:
    for model in STAY_IN_DEFAULT:
        assert router.db_for_read(model) == "default", model
        assert router.db_for_write(model) == "default", model


def test_the_five_databases_are_five_distinct_test_databases() -> None:
    names = {str(connections[alias].settings_dict["NAME"]) for alias in ("default", *SERVICES)}
    assert len(names) == 5
    assert all(name.startswith("test_") for name in names), names


def test_a_process_a_test_starts_uses_the_five_test_databases() -> None:
    shown = in_another_process(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.db import connections as c; "
        "print(*(f'{a}={c[a].settings_dict[\"NAME\"]}' for a in c))",
    )

    assert dict(pair.split("=") for pair in shown.split()) == {
        alias: str(connections[alias].settings_dict["NAME"]) for alias in ("default", *SERVICES)
    }


def test_each_database_holds_its_owners_tables_and_no_others() -> None:
    prefixes = tuple(f"{service}_" for service in SERVICES)
    for service in SERVICES:
        own = {model._meta.db_table for model in apps.get_app_config(service).get_models()}
        assert tables(service) == own | {"django_migrations"}, service
    in_default = tables("default")
    assert not [table for table in in_default if table.startswith(prefixes)]
    assert {"sagas_saga", "sagas_sagareply", "django_q_ormq", "storefront_idempotencykey"} <= (
        in_default
    )


def test_a_relation_across_two_databases_is_refused() -> None:
    assert router.allow_relation(Order(), Saga()) is False
    assert router.allow_relation(Order(), Order()) is True
    assert router.allow_relation(Saga(), IdempotencyKey()) is True  # both in default


def test_readiness_names_a_service_database_with_pending_migrations() -> None:
    client = Client()
    assert client.get("/readyz").status_code == 200
    # Forget the payments migrations in the Payment Service's database only (rolled back after
    # the test).
    with connections["payments"].cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'payments'")

    answer = client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json()["database"] == "payments"
    assert answer.json()["migrations_pending"] >= 1
