"""The hot path's SQL helpers (sagas.bulk): a row created as its first `save()` would create it,
and psycopg keeping its parse of long statements (a decision over several sagas has more
parameters than psycopg's own limit for keeping it)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.utils import timezone
from psycopg import _queries

from inventory.models import Reservation
from orders.models import Order
from sagas import bulk

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_a_statement_of_more_parameters_than_psycopg_keeps_by_default_is_parsed_once() -> None:
    values = list(range(120))  # psycopg keeps the parse of at most 50 by default
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    before = _queries._query2pg.cache_info()

    bulk.together([], (sql, values))
    first = _queries._query2pg.cache_info()
    bulk.together([], (sql, values))
    second = _queries._query2pg.cache_info()

    assert first.misses == before.misses + 1  # parsed, and kept
    assert (second.hits, second.misses) == (first.hits + 1, first.misses)  # not parsed again
    assert second.maxsize == 256  # bounded


def test_a_statement_past_the_raised_limits_is_parsed_every_time() -> None:
    values = list(range(600))
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    before = _queries._query2pg.cache_info()

    bulk.together([], (sql, values))
    bulk.together([], (sql, values))

    assert _queries._query2pg.cache_info() == before  # neither kept nor looked up


def test_create_stores_the_row_save_would_and_sets_the_id_the_database_gave() -> None:
    before = timezone.now()
    reservation = Reservation(
        saga_id=uuid.uuid4(), order_id=uuid.uuid4(), status=Reservation.Status.RESERVED
    )

    bulk.create(reservation)

    stored = Reservation.objects.get()
    assert reservation.pk == stored.pk
    assert not reservation._state.adding
    assert (stored.saga_id, stored.order_id, stored.status) == (
        reservation.saga_id,
        reservation.order_id,
        Reservation.Status.RESERVED,
    )
    # auto_now_add and auto_now stamped, on the instance as in the row
    assert before <= stored.created_at == reservation.created_at
    assert before <= stored.updated_at == reservation.updated_at


def test_create_keeps_an_id_given_up_front() -> None:
    order = Order(
        id=uuid.uuid4(),
        saga_id=uuid.uuid4(),
        user_id=7,
        status=Order.Status.PENDING,
        total=Decimal("12.50"),
        currency="EUR",
    )

    bulk.create(order)

    stored = Order.objects.get()
    assert stored.pk == order.pk
    assert (stored.total, stored.user_id, stored.created_at) == (
        Decimal("12.50"),
        7,
        order.created_at,
    )
