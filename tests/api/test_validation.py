"""Bad input on POST /api/orders/ gets a 400 (413, 415) in the error shape and creates nothing:
no saga, no queued command, no card token, no idempotency key."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from inventory.models import Product
from inventory.services import create_product
from storefront.samples import address, payment
from tests.api.builders import client_for, created_rows, order_body, product, user

pytestmark = pytest.mark.django_db

THIS_YEAR = date.today().year
JSON = "application/json"


def with_items(*items: dict[str, Any]) -> dict[str, Any]:
    return order_body() | {"items": list(items)}


def with_payment(**fields: Any) -> dict[str, Any]:
    return order_body() | {"payment": payment(**fields)}


def with_address(**fields: Any) -> dict[str, Any]:
    return order_body() | {"shipping_address": address(**fields)}


def without(part: str, field: str) -> dict[str, Any]:
    body = order_body()
    del body[part][field]
    return body


def item(sku: Any = "MUG-002", quantity: Any = 1) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


def raw(text: str) -> bytes:
    return text.encode()


VALID = json.dumps(order_body())

# (case, body: a dict sent as JSON or raw bytes, content type, expected status, error field)
CASES: list[tuple[str, Any, str, int, str | None]] = [
    ("unknown sku", with_items(item("NO-SUCH-SKU")), JSON, 400, "items"),
    ("quantity 0", with_items(item(quantity=0)), JSON, 400, "items"),
    ("quantity negative", with_items(item(quantity=-1)), JSON, 400, "items"),
    ("quantity 1001", with_items(item(quantity=1001)), JSON, 400, "items"),
    ("101 lines", with_items(*[item(f"SKU-{n}") for n in range(101)]), JSON, 400, "items"),
    ("no lines", with_items(), JSON, 400, "items"),
    ("duplicate skus", with_items(item(), item()), JSON, 400, "items"),
    ("quantity as string", with_items(item(quantity="2")), JSON, 400, "items"),
    ("quantity as float", with_items(item(quantity=2.0)), JSON, 400, "items"),
    ("quantity fractional", with_items(item(quantity=1.5)), JSON, 400, "items"),
    ("quantity as bool", with_items(item(quantity=True)), JSON, 400, "items"),
    ("quantity null", with_items(item(quantity=None)), JSON, 400, "items"),
    ("quantity huge", with_items(item(quantity=10**30)), JSON, 400, "items"),
    ("sku as number", with_items(item(sku=12345)), JSON, 400, "items"),
    ("sku unicode garbage", with_items(item(sku="💥\u202e\ufeff")), JSON, 400, "items"),
    ("item as list", with_items(["MUG-002", 1]), JSON, 400, "items"),  # type: ignore[arg-type]
    ("items as object", order_body() | {"items": item()}, JSON, 400, "items"),
    ("card with letters", with_payment(card_number="4242abcd42424242"), JSON, 400, "payment"),
    ("card fails luhn", with_payment(card_number="4242424242424241"), JSON, 400, "payment"),
    ("card too short", with_payment(card_number="42424242"), JSON, 400, "payment"),
    ("card in other digits", with_payment(card_number="४२४२४२४२४२४२४२४२"), JSON, 400, "payment"),
    ("card as number", with_payment(card_number=4242424242424242), JSON, 400, "payment"),
    ("card expired last year", with_payment(exp_year=THIS_YEAR - 1), JSON, 400, "payment"),
    ("expiry too far", with_payment(exp_year=THIS_YEAR + 30), JSON, 400, "payment"),
    ("exp month 13", with_payment(exp_month=13), JSON, 400, "payment"),
    ("exp year as string", with_payment(exp_year=str(THIS_YEAR + 2)), JSON, 400, "payment"),
    ("cvc too short", with_payment(cvc="12"), JSON, 400, "payment"),
    ("cvc too long", with_payment(cvc="12345"), JSON, 400, "payment"),
    ("cvc letters", with_payment(cvc="abc"), JSON, 400, "payment"),
    ("cvc as number", with_payment(cvc=123), JSON, 400, "payment"),
    ("cvc with newline", with_payment(cvc="123\n"), JSON, 400, "payment"),
    ("unknown payment field", with_payment(pin="0000"), JSON, 400, "payment"),
    ("payment as string", order_body() | {"payment": "4242424242424242"}, JSON, 400, "payment"),
    (
        "missing payment",
        {k: v for k, v in order_body().items() if k != "payment"},
        JSON,
        400,
        "payment",
    ),
    ("missing country", without("shipping_address", "country"), JSON, 400, "shipping_address"),
    ("unknown country", with_address(country="ZZ"), JSON, 400, "shipping_address"),
    ("country of 3 letters", with_address(country="FRA"), JSON, 400, "shipping_address"),
    ("country null", with_address(country=None), JSON, 400, "shipping_address"),
    ("name with NUL", with_address(name="Ada\u0000"), JSON, 400, "shipping_address"),
    ("name too long", with_address(name="A" * 201), JSON, 400, "shipping_address"),
    ("unknown top-level field", order_body() | {"coupon": "FREE"}, JSON, 400, "coupon"),
    ("user_id as string", order_body() | {"user_id": "1"}, JSON, 400, "user_id"),
    ("body is a list", [order_body()], JSON, 400, "non_field_errors"),
    ("body is null", raw("null"), JSON, 400, None),
    ("body is a number", raw("42"), JSON, 400, "non_field_errors"),
    ("empty body", raw(""), JSON, 400, "items"),
    ("not json", raw("items=1&payment=2"), JSON, 400, None),
    ("truncated json", raw(VALID[:-5]), JSON, 400, None),
    ("NaN in json", raw('{"items": NaN}'), JSON, 400, None),
    (
        "huge integer literal",
        raw('{"items": [{"sku": "MUG-002", "quantity": ' + "9" * 5000 + "}]}"),
        JSON,
        400,
        None,
    ),
    ("deeply nested json", raw("[" * 100_000 + "]" * 100_000), JSON, 400, None),
    (
        "lone surrogate",
        raw(VALID.replace("Ada Lovelace", "\\ud800")),
        JSON,
        400,
        "shipping_address",
    ),
    (
        "invalid utf-8",
        VALID.replace("Ada", "A\udcffa").encode("utf-8", "surrogateescape"),
        JSON,
        400,
        None,
    ),
    ("latin-1 text", VALID.replace("Ada", "Adé").encode("latin-1"), JSON, 400, None),
    ("oversized body", with_address(name="A" * 300_000), JSON, 413, None),
    ("text/plain body", raw(VALID), "text/plain", 415, None),
    ("form body", raw("items=1"), "application/x-www-form-urlencoded", 415, None),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_refused_and_changes_nothing(
    body: Any, content_type: str, status: int, field: str | None
) -> None:
    product("MUG-002")
    client = client_for(user())
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = created_rows()

    answer = client.post("/api/orders/", data, content_type=content_type)

    assert answer.status_code == status, answer.content
    error = answer.json()
    assert set(error) <= {"code", "message", "fields"}
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if field is not None:
        assert error["code"] == "invalid"
        assert field in error["fields"]
    assert created_rows() == before


def test_an_order_total_beyond_what_a_charge_can_hold_is_refused() -> None:
    product("GOLD-1", price="9999999999.99")
    before = created_rows()

    answer = client_for(user()).post(
        "/api/orders/", order_body(sku="GOLD-1", quantity=2), format="json"
    )

    assert answer.status_code == 400
    assert "items" in answer.json()["fields"]
    assert created_rows() == before


def test_items_in_two_currencies_are_refused() -> None:
    product("MUG-002")
    create_product(sku="USD-1", name="Dollar mug", price=Decimal("5.00"), currency="USD", stock=5)
    before = created_rows()

    answer = client_for(user()).post(
        "/api/orders/", with_items(item("MUG-002"), item("USD-1")), format="json"
    )

    assert answer.status_code == 400
    assert created_rows() == before


def test_field_errors_never_echo_the_card_number_or_cvc() -> None:
    product("MUG-002")
    client = client_for(user())
    shape = with_payment(card_number="4242 4242 4242 424x", cvc="98x7")
    card = with_payment(card_number="4242424242424241", cvc="9876", exp_year=THIS_YEAR - 1)

    malformed = client.post("/api/orders/", shape, format="json")
    refused = client.post("/api/orders/", card, format="json")

    assert set(malformed.json()["fields"]["payment"]) == {"card_number", "cvc"}
    assert set(refused.json()["fields"]["payment"]) == {"card_number", "exp_year"}
    for answer in (malformed, refused):
        assert answer.status_code == 400
        for secret in (b"424x", b"98x7", b"4242424242424241", b"9876"):
            assert secret not in answer.content


def test_a_product_price_with_sub_cent_digits_is_refused_with_400_not_rounded() -> None:
    staff = client_for(user(staff=True))
    body = {"sku": "MUG-009", "name": "Mug", "price": "10.001", "stock": 5}

    answer = staff.post("/api/products/", body, format="json")

    assert answer.status_code == 400
    assert "price" in answer.json()["fields"]
    assert not Product.objects.filter(sku="MUG-009").exists()
