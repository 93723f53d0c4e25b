"""Placing and reading orders: 202 at once, server-side prices, a user's own orders, long-poll."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from payments.models import PaymentMethod
from sagas.models import Saga
from storefront.api.longpoll import order_detail
from tests.api.builders import (
    client_for,
    created_rows,
    order_body,
    place,
    product,
    user,
)

pytestmark = pytest.mark.django_db


def finish(saga: Saga, status: str, reason_code: str = "", reason_message: str = "") -> None:
    """Stand in for the saga workers: mark the saga finished as they would."""
    state = dict(saga.state, status=status, reason_code=reason_code or None)
    Saga.objects.filter(pk=saga.pk).update(
        status=status, state=state, reason_code=reason_code, reason_message=reason_message
    )


def test_placing_an_order_answers_202_and_starts_one_pending_saga_with_queued_commands() -> None:
    product("MUG-002", price="12.50")
    before = created_rows()

    answer = place(client_for(user()), order_body(sku="MUG-002", quantity=3))

    assert answer.status_code == 202
    assert set(answer.json()) == {"order_id", "saga_id", "status"}
    assert answer.json()["status"] == "pending"
    saga = Saga.objects.get(id=answer.json()["saga_id"])
    assert saga.correlation_id == answer.json()["order_id"]
    after = created_rows()
    assert after["sagas"] == before["sagas"] + 1
    assert after["queued"] > before["queued"]  # the first commands are in the outbox
    assert after["payment_methods"] == before["payment_methods"] + 1


def test_the_server_prices_the_order_from_the_catalogue_in_decimal() -> None:
    product("MUG-002", price="12.10")
    owner = user()
    answer = place(client_for(owner), order_body(sku="MUG-002", quantity=3))

    order = client_for(owner).get(f"/api/orders/{answer.json()['order_id']}/").json()

    assert order["total"] == "36.30"  # 3 x 12.10 exactly, not 36.299999...
    assert order["currency"] == "EUR"
    assert order["items"] == [{"sku": "MUG-002", "quantity": 3, "unit_price": "12.10"}]
    saga = Saga.objects.get(id=answer.json()["saga_id"])
    assert Decimal(saga.data["total"]) == Decimal("36.30")


def test_the_saga_data_keeps_the_shape_every_stored_saga_has() -> None:
    """Stored sagas are read back by the order API and the audit: the JSON must not drift."""
    product("MUG-002", price="12.10")
    owner = user()

    answer = place(client_for(owner), order_body(sku="MUG-002", quantity=3))

    saga = Saga.objects.get(id=answer.json()["saga_id"])
    method = PaymentMethod.objects.get()
    assert saga.data == {
        "order_id": answer.json()["order_id"],
        "user_id": owner.pk,
        "lines": [{"sku": "MUG-002", "quantity": 3, "unit_price": "12.10"}],
        "total": "36.30",
        "currency": "EUR",
        "payment_token": method.token,
        "card": {"brand": "visa", "last4": "4242"},
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "1 rue de la Paix",
            "city": "Paris",
            "postal_code": "75002",
            "country": "FR",
        },
    }


def test_a_client_sent_price_is_refused_not_used() -> None:
    product("MUG-002", price="12.50")
    body = order_body()
    body["items"][0]["unit_price"] = "0.01"
    before = created_rows()

    answer = place(client_for(user()), body)

    assert answer.status_code == 400
    assert answer.json()["fields"]["items"]["0"]["unit_price"] == ["Unknown field."]
    assert created_rows() == before


def test_an_order_reads_as_pending_with_its_steps_until_its_saga_finishes() -> None:
    product()
    owner = user()
    order_id = place(client_for(owner)).json()["order_id"]

    order = client_for(owner).get(f"/api/orders/{order_id}/").json()

    assert order["status"] == "pending"
    assert order["reason"] is None
    assert order["finished_at"] is None
    assert order["card"] == {"brand": "visa", "last4": "4242"}
    names = {step["name"] for step in order["steps"]}
    assert {"create_order", "reserve_stock", "charge_payment"} <= names
    assert all(
        set(step) == {"name", "status", "attempts", "compensation_attempts"}
        for step in order["steps"]
    )


def test_a_compensating_saga_still_reads_as_a_pending_order() -> None:
    product()
    owner = user()
    saga_id = place(client_for(owner)).json()["saga_id"]
    Saga.objects.filter(id=saga_id).update(status="compensating", reason_code="out_of_stock")

    order = client_for(owner).get("/api/orders/").json()["results"][0]

    assert order["status"] == "pending"
    assert order["reason"] is None


def test_a_failed_order_shows_its_reason() -> None:
    product()
    owner = user()
    saga_id = place(client_for(owner)).json()["saga_id"]
    finish(Saga.objects.get(id=saga_id), "failed", "payment_declined", "the card was declined")

    order = client_for(owner).get("/api/orders/").json()["results"][0]

    assert order["status"] == "failed"
    assert order["reason"] == {"code": "payment_declined", "message": "the card was declined"}


def test_the_order_list_is_paginated_newest_first() -> None:
    product()
    owner = user()
    client = client_for(owner)
    ids = [place(client).json()["order_id"] for _ in range(3)]

    page = client.get("/api/orders/", {"limit": 2}).json()

    assert page["count"] == 3
    assert [order["order_id"] for order in page["results"]] == ids[::-1][:2]
    assert page["next"] is not None


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "201", "1.5"])
def test_a_malformed_page_size_is_refused(limit: str) -> None:
    answer = client_for(user()).get("/api/orders/", {"limit": limit})

    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid"
    assert "limit" in answer.json()["fields"]


def test_staff_may_order_for_another_user_who_then_owns_the_order() -> None:
    product()
    customer = user()

    answer = place(client_for(user(staff=True)), order_body(user_id=customer.pk))

    assert answer.status_code == 202
    listed = client_for(customer).get("/api/orders/").json()["results"]
    assert [order["order_id"] for order in listed] == [answer.json()["order_id"]]


def test_a_user_may_not_order_for_another_user() -> None:
    product()
    other = user()
    before = created_rows()

    answer = place(client_for(user()), order_body(user_id=other.pk))

    assert answer.status_code == 403
    assert answer.json()["code"] == "permission_denied"
    assert created_rows() == before


def test_staff_ordering_for_an_unknown_user_is_a_field_error() -> None:
    product()

    answer = place(client_for(user(staff=True)), order_body(user_id=987654321))

    assert answer.status_code == 400
    assert answer.json()["fields"] == {"user_id": ["Unknown user."]}


# --- Long-poll --------------------------------------------------------------------------------


def test_the_order_detail_is_an_async_view_so_waiting_holds_no_thread() -> None:
    assert asyncio.iscoroutinefunction(order_detail)


def test_waiting_on_a_pending_order_answers_pending_after_the_wait() -> None:
    product()
    owner = user()
    order_id = place(client_for(owner)).json()["order_id"]

    started = time.monotonic()
    answer = client_for(owner).get(f"/api/orders/{order_id}/", {"wait": "0.5"})

    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"
    assert 0.5 <= time.monotonic() - started < 5


def test_waiting_on_a_finished_order_answers_at_once() -> None:
    product()
    owner = user()
    saga_id = place(client_for(owner)).json()["saga_id"]
    saga = Saga.objects.get(id=saga_id)
    finish(saga, "completed")

    started = time.monotonic()
    answer = client_for(owner).get(f"/api/orders/{saga.correlation_id}/", {"wait": "20"})

    assert answer.json()["status"] == "completed"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("wait", ["31", "-1", "soon", "nan", "inf"])
def test_a_bad_wait_is_refused(wait: str) -> None:
    product()
    owner = user()
    order_id = place(client_for(owner)).json()["order_id"]

    answer = client_for(owner).get(f"/api/orders/{order_id}/", {"wait": wait})

    assert answer.status_code == 400
    assert "wait" in answer.json()["fields"]


def close_connections_after_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ASGI each request's queries run in a thread of its own: let Django close their
    connections when the request ends, so the test database can be dropped afterwards."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_waiting_client_is_answered_as_soon_as_the_saga_finishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    close_connections_after_requests(monkeypatch)

    def setup() -> tuple[str, str, str]:
        product()
        owner = user()
        token, _ = Token.objects.get_or_create(user=owner)
        answer = place(client_for(owner)).json()
        return token.key, answer["order_id"], answer["saga_id"]

    token, order_id, saga_id = await sync_to_async(setup)()
    auth = {"Authorization": f"Token {token}"}
    started = time.monotonic()
    waiting = asyncio.ensure_future(
        AsyncClient().get(f"/api/orders/{order_id}/", {"wait": "20"}, headers=auth)
    )
    await asyncio.sleep(0.5)
    assert not waiting.done()

    saga = await Saga.objects.aget(id=saga_id)
    await sync_to_async(finish)(saga, "completed")
    answer = await asyncio.wait_for(waiting, timeout=10)

    assert answer.status_code == 200
    assert answer.json()["status"] == "completed"
    assert answer.json()["order_id"] == order_id
    assert time.monotonic() - started < 5
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_waited_answer_has_the_same_shape_as_the_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    close_connections_after_requests(monkeypatch)

    def setup() -> tuple[str, str, dict]:
        product()
        owner = user()
        token, _ = Token.objects.get_or_create(user=owner)
        order_id = place(client_for(owner)).json()["order_id"]
        plain = client_for(owner).get(f"/api/orders/{order_id}/").json()
        return token.key, order_id, plain

    token, order_id, plain = await sync_to_async(setup)()
    auth = {"Authorization": f"Token {token}"}

    answer = await AsyncClient().get(f"/api/orders/{order_id}/", {"wait": "0.3"}, headers=auth)
    waited = answer.json()

    assert waited == plain
    await sync_to_async(connections.close_all)()
