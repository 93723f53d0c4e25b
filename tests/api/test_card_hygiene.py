"""The card number and CVC are used once to make a token and are never stored, queued, logged or
echoed (docs/architecture.md §6). Real-looking cards (valid Luhn) go in through the API; then
every column of every table, every queued task (decoded), every log record and every answer is
searched.

The CVCs are unusual values searched only where a string value would stand: quoted ('987' or
"987") in the repr of a stored value or of a log record, so that "987" inside a number or a uuid
does not count, while a CVC kept as a string anywhere does. The field names themselves
("card_number", "cvc") must not appear either: a stored request body would carry them.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.apps import apps
from django.db import connections
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from storefront.samples import payment
from tests.api.builders import client_for, order_body, product, user

pytestmark = pytest.mark.django_db

CARDS = [
    ("4242424242424242", "987"),
    ("5555555555554444", "6543"),
    ("4000000000000002", "987"),
    ("4000 0000 0000 9995", "6543"),
]
EXPIRED = ("5555555555554444", "6543")


def secrets() -> list[str]:
    numbers = {number for number, _ in CARDS} | {number.replace(" ", "") for number, _ in CARDS}
    cvcs = {cvc for _, cvc in CARDS}
    quoted = [f"{q}{value}{q}" for value in [*cvcs, "cvc", "card_number"] for q in "'\""]
    return sorted(numbers) + quoted


def stored_values() -> list[tuple[str, Any]]:
    """Every value of every concrete column of every model, labelled by table and column."""
    found = []
    for model in apps.get_models():
        columns = [field.attname for field in model._meta.concrete_fields]
        for row in model._default_manager.values_list(*columns):
            found += [
                (f"{model._meta.db_table}.{col}", value)
                for col, value in zip(columns, row, strict=True)
            ]
    return found


def queued_tasks() -> list[tuple[str, Any]]:
    return [(f"ormq {task.key}", SignedPackage.loads(task.payload)) for task in OrmQ.objects.all()]


def test_no_card_number_or_cvc_is_stored_queued_logged_or_echoed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for logger in ("", "django", "django.db.backends", "django.request", "django_q", "sagas"):
        caplog.set_level(logging.DEBUG, logger=logger)
    # Log every SQL statement, parameters included.
    monkeypatch.setattr(connections["default"], "force_debug_cursor", True)
    product("MUG-002")
    client = client_for(user())
    bodies = [order_body() | {"payment": payment(card_number=n, cvc=c)} for n, c in CARDS]
    answers = []
    for n, body in enumerate(bodies):  # each placed, then replayed under its key
        for _ in range(2):
            answers.append(
                client.post("/api/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"k{n}")
            )
    answers.append(client.post("/api/orders/", bodies[1], format="json", HTTP_IDEMPOTENCY_KEY="k0"))
    number, cvc = EXPIRED
    expired = order_body() | {"payment": payment(card_number=number, cvc=cvc, exp_year=2001)}
    answers.append(client.post("/api/orders/", expired, format="json"))
    assert [a.status_code for a in answers] == [202] * 8 + [422, 400]
    answers += [client.get(f"/api/orders/{a.json()['order_id']}/") for a in answers[:8:2]]
    answers.append(client.get("/api/orders/"))

    places = stored_values() + queued_tasks()
    places += [(f"log {r.name}", r.getMessage() + repr(vars(r))) for r in caplog.records]
    places += [(f"answer {a.request['PATH_INFO']}", a.content.decode()) for a in answers]

    assert len(queued_tasks()) >= 2  # the search did see the outbox
    assert any("INSERT" in r.getMessage() for r in caplog.records)  # and the SQL log
    leaks = [(where, s) for where, value in places for s in secrets() if s in repr(value)]
    assert leaks == []
