"""Inventory Service through the participant protocol: all-or-nothing reserve, exact release."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from inventory import messages
from inventory.exceptions import ProductExists
from inventory.models import InventoryStepRecord, Product, Reservation
from inventory.selectors import catalogue, products_by_sku
from inventory.services import create_product
from sagas.messages import Command
from sagas.participant import perform
from tests.services.builders import again, available, command, essence, order_payload, product, undo

pytestmark = pytest.mark.django_db

STEP = "reserve_stock"


def line(sku: str, quantity: int) -> dict[str, object]:
    return {"sku": sku, "quantity": quantity, "unit_price": "12.50"}


def reserve_command(*lines: dict[str, object]) -> Command:
    return command(messages.RESERVE, STEP, payload=order_payload(lines=list(lines)))


def test_reserve_applies_once_and_repeats_its_reply() -> None:
    product("SKU-1", stock=10)
    sent = reserve_command(line("SKU-1", 3))

    first = perform(sent)
    second = perform(again(sent))

    assert first.outcome == "ok"
    assert essence(second) == essence(first)
    assert Reservation.objects.count() == 1
    assert available("SKU-1") == 7


def test_reserving_takes_stock_out_of_what_others_see() -> None:
    product("SKU-1", stock=10)
    product("SKU-2", stock=4)

    perform(reserve_command(line("SKU-2", 4), line("SKU-1", 1)))

    assert [(row["sku"], row["available"]) for row in catalogue()] == [("SKU-1", 9), ("SKU-2", 0)]


def test_release_before_reserve_leaves_a_tombstone() -> None:
    product("SKU-1", stock=10)
    sent = reserve_command(line("SKU-1", 3))

    reply = perform(undo(sent, messages.RELEASE))

    assert reply.outcome == "ok"
    assert reply.data == {"undone": False, "tombstone": True}
    assert InventoryStepRecord.objects.filter(saga_id=sent.saga_id).count() == 1


def test_reserve_after_its_release_is_refused_and_reserves_nothing() -> None:
    product("SKU-1", stock=10)
    sent = reserve_command(line("SKU-1", 3))
    perform(undo(sent, messages.RELEASE))

    late = perform(sent)

    assert (late.outcome, late.code) == ("refused", "compensated")
    assert not Reservation.objects.exists()
    assert available("SKU-1") == 10


def test_release_restores_stock_exactly() -> None:
    product("SKU-1", stock=10)
    product("SKU-2", stock=5)
    sent = reserve_command(line("SKU-1", 3), line("SKU-2", 5))
    perform(sent)

    reply = perform(undo(sent, messages.RELEASE))

    assert reply.outcome == "ok"
    assert (available("SKU-1"), available("SKU-2")) == (10, 5)
    assert Reservation.objects.get().status == Reservation.Status.RELEASED


def test_release_twice_restocks_once() -> None:
    product("SKU-1", stock=10)
    sent = reserve_command(line("SKU-1", 3))
    perform(sent)

    first = perform(undo(sent, messages.RELEASE))
    second = perform(again(undo(sent, messages.RELEASE)))

    assert essence(second) == essence(first)
    assert available("SKU-1") == 10


def test_out_of_stock_is_refused_and_repeats_the_refusal() -> None:
    product("SKU-1", stock=2)
    sent = reserve_command(line("SKU-1", 3))

    first = perform(sent)
    second = perform(again(sent))

    assert (first.outcome, first.code) == ("refused", "out_of_stock")
    assert essence(second) == essence(first)
    assert available("SKU-1") == 2
    assert not Reservation.objects.exists()


def test_out_of_stock_on_a_later_line_rolls_back_the_earlier_lines() -> None:
    # SKU-A is decremented first (lock order is by SKU), then SKU-B runs short.
    product("SKU-A", stock=10)
    product("SKU-B", stock=1)
    product("SKU-C", stock=10)
    sent = reserve_command(line("SKU-C", 1), line("SKU-B", 2), line("SKU-A", 4))

    reply = perform(sent)

    assert (reply.outcome, reply.code) == ("refused", "out_of_stock")
    assert [row["available"] for row in catalogue()] == [10, 1, 10]
    assert not Reservation.objects.exists()


def test_an_unknown_sku_is_out_of_stock() -> None:
    product("SKU-1", stock=10)
    sent = reserve_command(line("SKU-1", 1), line("SKU-404", 1))

    reply = perform(sent)

    assert (reply.outcome, reply.code) == ("refused", "out_of_stock")
    assert available("SKU-1") == 10


def test_release_after_a_refusal_has_nothing_to_undo() -> None:
    product("SKU-1", stock=2)
    sent = reserve_command(line("SKU-1", 3))
    perform(sent)

    reply = perform(undo(sent, messages.RELEASE))

    assert reply.data == {"undone": False, "tombstone": False}
    assert available("SKU-1") == 2


def test_repeated_skus_in_one_order_are_reserved_together() -> None:
    product("SKU-1", stock=5)

    reply = perform(reserve_command(line("SKU-1", 2), line("SKU-1", 3)))

    assert reply.data["units"] == 5
    assert available("SKU-1") == 0
    assert Reservation.objects.get().lines.get().quantity == 5


def test_a_non_positive_quantity_is_a_fault_that_changes_no_stock() -> None:
    product("SKU-1", stock=5)
    sent = reserve_command(line("SKU-1", -3))

    with pytest.raises(ValueError, match="at least 1"):
        perform(sent)

    assert available("SKU-1") == 5
    assert not InventoryStepRecord.objects.exists()


def test_the_database_refuses_negative_stock() -> None:
    product("SKU-1", stock=1)

    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(sku="SKU-1").update(available=F("available") - 2)

    assert available("SKU-1") == 1


def test_create_product_refuses_an_existing_sku() -> None:
    product("SKU-1", stock=1)

    with pytest.raises(ProductExists):
        product("SKU-1", stock=9)

    assert Product.objects.get(sku="SKU-1").available == 1


def test_products_by_sku_returns_only_known_products() -> None:
    product("SKU-1", stock=1, price="3.10")
    product("SKU-2", stock=2)

    found = products_by_sku(["SKU-1", "SKU-404"])

    assert list(found) == ["SKU-1"]
    assert str(found["SKU-1"]["price"]) == "3.10"


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_oversell() -> None:
    product("SKU-A", stock=5)
    product("SKU-B", stock=5)
    # Opposite line orders in the payloads: the fixed SKU lock order must keep this deadlock-free.
    sent = [
        reserve_command(line("SKU-A", 1), line("SKU-B", 1))
        if n % 2
        else reserve_command(line("SKU-B", 1), line("SKU-A", 1))
        for n in range(12)
    ]

    def deliver(one: Command) -> str:
        try:
            return perform(one).code or "ok"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(deliver, sent))

    assert codes.count("ok") == 5
    assert codes.count("out_of_stock") == 7
    assert (available("SKU-A"), available("SKU-B")) == (0, 0)
    assert Reservation.objects.count() == 5


def test_a_product_price_with_sub_cent_digits_is_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="two decimal places"):
        create_product(sku="SKU-1", name="Mug", price=Decimal("12.505"), currency="EUR", stock=1)

    assert not Product.objects.exists()
