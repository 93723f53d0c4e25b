"""Idempotency-Key on order creation (Stripe's semantics, scoped per user)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection, connections, router

from inventory.models import Product
from payments import testcards
from payments.models import PaymentMethod
from sagas.models import Saga
from storefront import checkout
from storefront.models import IdempotencyKey
from tests.api.builders import client_for, created_rows, order_body, place, product, user

# Every service's database: checkout prices from Inventory and tokenises in Payment.
pytestmark = pytest.mark.django_db(databases="__all__")


def key() -> str:
    return str(uuid.uuid4())


def test_the_same_key_and_body_replay_the_first_answer_and_start_nothing_new() -> None:
    product()
    client = client_for(user())
    body, same_key = order_body(), key()
    first = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)
    after_first = created_rows()

    again = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)

    assert first.status_code == again.status_code == 202
    assert again.content == first.content  # the same order_id and saga_id, byte for byte
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert created_rows() == after_first  # no saga, no command, no card token, no key


def test_a_replay_after_the_product_was_deleted_still_answers_the_stored_202() -> None:
    # The stored answer is the answer: a replay is not validated or priced again, so nothing
    # that changed in the catalogue since (here the product is gone) can turn it into a 400.
    product("MUG-002")
    client = client_for(user())
    body, same_key = order_body(sku="MUG-002"), key()
    first = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)
    Product.objects.filter(sku="MUG-002").delete()
    after_first = created_rows()

    again = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)

    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert created_rows() == after_first
    assert place(client, body).status_code == 400  # without the key: a new order, refused


def test_the_key_ignores_the_order_of_json_object_keys() -> None:
    product()
    client = client_for(user())
    body, same_key = order_body(), key()
    first = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)
    reordered = dict(reversed(list(body.items())))

    again = place(client, reordered, HTTP_IDEMPOTENCY_KEY=same_key)

    assert again.json() == first.json()


def test_the_same_key_with_a_different_body_is_refused_with_422() -> None:
    product()
    client = client_for(user())
    same_key = key()
    place(client, order_body(quantity=1), HTTP_IDEMPOTENCY_KEY=same_key)
    before = created_rows()

    answer = place(client, order_body(quantity=2), HTTP_IDEMPOTENCY_KEY=same_key)

    assert answer.status_code == 422
    assert answer.json()["code"] == "idempotency_key_reused"
    assert created_rows() == before


def test_keys_are_scoped_per_user() -> None:
    product()
    shared_key, body = key(), order_body()

    mine = place(client_for(user()), body, HTTP_IDEMPOTENCY_KEY=shared_key)
    theirs = place(client_for(user()), body, HTTP_IDEMPOTENCY_KEY=shared_key)

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["order_id"] != theirs.json()["order_id"]


def test_without_a_key_each_request_is_a_new_order() -> None:
    product()
    client, body = client_for(user()), order_body()

    first = place(client, body)
    second = place(client, body)

    assert first.json()["order_id"] != second.json()["order_id"]
    assert Saga.objects.count() == 2


def test_a_rejected_request_is_not_stored_so_the_key_can_be_reused_once_fixed() -> None:
    product()
    client, same_key = client_for(user()), key()
    rejected = place(client, order_body(sku="NO-SUCH-SKU"), HTTP_IDEMPOTENCY_KEY=same_key)
    assert rejected.status_code == 400
    assert not IdempotencyKey.objects.exists()

    fixed = place(client, order_body(), HTTP_IDEMPOTENCY_KEY=same_key)

    assert fixed.status_code == 202


def test_a_key_longer_than_255_characters_is_refused() -> None:
    product()
    before = created_rows()

    answer = place(client_for(user()), order_body(), HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["fields"]
    assert created_rows() == before


def test_a_key_of_exactly_255_characters_is_accepted() -> None:
    product()

    answer = place(client_for(user()), order_body(), HTTP_IDEMPOTENCY_KEY="k" * 255)

    assert answer.status_code == 202


@pytest.mark.parametrize("bad", ["", "has space", "tab\there", "\x00"])
def test_a_malformed_key_is_refused(bad: str) -> None:
    product()

    answer = place(client_for(user()), order_body(), HTTP_IDEMPOTENCY_KEY=bad)

    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["fields"]


def test_the_stored_request_digest_does_not_hold_the_card_number() -> None:
    product()
    place(client_for(user()), order_body(), HTTP_IDEMPOTENCY_KEY=key())

    stored = IdempotencyKey.objects.get()

    assert testcards.OK not in repr(stored.__dict__)
    assert len(stored.request_hash) == 64


# --- Two requests with one key at the same moment -------------------------------------------


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_two_concurrent_requests_with_one_key_start_exactly_one_saga(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert connection.vendor == "postgresql", "this race needs PostgreSQL (set DATABASE_URL)"
    product()
    owner = user()
    body, same_key = order_body(), key()
    # Slow each request down inside its transaction, after it claimed the key, so the second
    # arrives while the first holds the key uncommitted.
    start_saga = checkout.start_saga

    def slow_start(**saga: Any) -> Any:
        threading.Event().wait(0.3)
        return start_saga(**saga)

    monkeypatch.setattr(checkout, "start_saga", slow_start)
    start = threading.Barrier(2)
    answers: list[Any] = []
    failures: list[BaseException] = []

    def request() -> None:
        try:
            client = client_for(owner)
            start.wait(timeout=10)
            answers.append(place(client, body, HTTP_IDEMPOTENCY_KEY=same_key))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not failures
    assert [answer.status_code for answer in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert Saga.objects.count() == 1
    assert IdempotencyKey.objects.get().saga_id == Saga.objects.get().id
    assert created_rows()["payment_methods"] == 1  # the second got the first's token back


class Crash(Exception):
    """The process dies here: nothing after this point runs."""


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_retry_after_a_crash_before_the_saga_started_places_the_order_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The order request is one transaction of the saga database: a crash before the saga
    # started leaves nothing there, the card's token included when the Payment Service's tables
    # share it. In a database of its own (make test-multidb) the token has committed: the
    # retry, under the same key, is given it back.
    product()
    client = client_for(user())
    body, same_key = order_body(), key()
    token_kept = router.db_for_write(PaymentMethod) != router.db_for_write(Saga)

    def crash(**saga: Any) -> Any:
        raise Crash

    monkeypatch.setattr(checkout, "start_saga", crash)
    with pytest.raises(Crash):
        place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)
    assert created_rows() == {
        "sagas": 0,
        "queued": 0,
        "payment_methods": 1 if token_kept else 0,
        "idempotency_keys": 0,
    }
    kept = PaymentMethod.objects.values_list("token", flat=True).first()
    monkeypatch.undo()

    answer = place(client, body, HTTP_IDEMPOTENCY_KEY=same_key)

    assert answer.status_code == 202
    saga = Saga.objects.get()
    assert str(saga.id) == answer.json()["saga_id"]
    assert saga.data["payment_token"] == PaymentMethod.objects.get().token
    if token_kept:
        assert saga.data["payment_token"] == kept
    rows = created_rows()
    assert (rows["sagas"], rows["payment_methods"], rows["idempotency_keys"]) == (1, 1, 1)


def test_orders_without_a_key_each_get_a_token_of_their_own() -> None:
    product()
    client = client_for(user())

    placed = [place(client, order_body()) for _ in range(2)]

    assert [answer.status_code for answer in placed] == [202, 202]
    tokens = {saga.data["payment_token"] for saga in Saga.objects.all()}
    assert len(tokens) == 2
    assert set(PaymentMethod.objects.values_list("token", flat=True)) == tokens
