"""Payment Service through the participant protocol: idempotent charges, refunds, tombstones."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from django.db import connections, router, transaction
from django.db.models import Sum

from payments import messages, services, testcards
from payments.exceptions import InvalidCard, ProcessorUnavailable
from payments.models import Charge, PaymentMethod, PaymentStepRecord, Refund
from payments.services import card_brand, charge_payment, tokenize_card
from sagas.messages import Command
from sagas.participant import perform
from tests.services.builders import again, card_token, command, essence, order_payload, undo

# Every database: the Payment Service's own (make test-multidb) as well as default.
pytestmark = pytest.mark.django_db(databases="__all__")

STEP = "charge_payment"


def charge_command(number: str = testcards.OK, **payload: object) -> Command:
    return command(
        messages.CHARGE, STEP, payload=order_payload(payment_token=card_token(number), **payload)
    )


def test_charge_applies_once_and_repeats_its_reply() -> None:
    sent = charge_command(total="25.00")

    first = perform(sent)
    second = perform(again(sent))

    assert first.outcome == "ok"
    assert essence(second) == essence(first)
    charge = Charge.objects.get()
    assert first.data == {"charge_id": charge.pk, "amount": "25.00"}
    assert str(charge.amount) == "25.00"
    assert charge.status == Charge.Status.CHARGED


def test_refund_before_charge_leaves_a_tombstone() -> None:
    sent = charge_command()

    reply = perform(undo(sent, messages.REFUND))

    assert reply.outcome == "ok"
    assert reply.data == {"undone": False, "tombstone": True}
    assert PaymentStepRecord.objects.filter(saga_id=sent.saga_id).count() == 1


def test_charge_after_its_refund_is_refused_and_charges_nothing() -> None:
    sent = charge_command()
    perform(undo(sent, messages.REFUND))

    late = perform(sent)

    assert (late.outcome, late.code) == ("refused", "compensated")
    assert not Charge.objects.exists()


def test_refund_twice_refunds_once_and_nets_to_zero() -> None:
    sent = charge_command(total="40.10")
    charged = perform(sent)

    first = perform(undo(sent, messages.REFUND))
    second = perform(again(undo(sent, messages.REFUND)))

    assert essence(second) == essence(first)
    assert first.data["charge_id"] == charged.data["charge_id"]
    assert Refund.objects.count() == 1
    assert Charge.objects.get().status == Charge.Status.REFUNDED
    charged_total = Charge.objects.aggregate(total=Sum("amount"))["total"]
    refunded_total = Refund.objects.aggregate(total=Sum("amount"))["total"]
    assert charged_total - refunded_total == 0


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (testcards.DECLINED, "payment_declined"),
        (testcards.INSUFFICIENT_FUNDS, "insufficient_funds"),
    ],
)
def test_a_refused_card_charges_nothing_and_repeats_the_refusal(number: str, code: str) -> None:
    sent = charge_command(number)

    first = perform(sent)
    second = perform(again(sent))

    assert (first.outcome, first.code) == ("refused", code)
    assert essence(second) == essence(first)
    assert not Charge.objects.exists()


def test_an_unknown_token_is_declined() -> None:
    sent = command(messages.CHARGE, STEP, payload=order_payload(payment_token="pm_nobodyknows"))

    reply = perform(sent)

    assert (reply.outcome, reply.code) == ("refused", "payment_declined")
    assert not Charge.objects.exists()


def test_refund_after_a_refusal_has_nothing_to_undo() -> None:
    sent = charge_command(testcards.DECLINED)
    perform(sent)

    reply = perform(undo(sent, messages.REFUND))

    assert reply.outcome == "ok"
    assert reply.data == {"undone": False, "tombstone": False}
    assert not Refund.objects.exists()


def test_a_processing_error_is_a_fault_that_stores_nothing() -> None:
    sent = charge_command(testcards.PROCESSING_ERROR)

    with pytest.raises(ProcessorUnavailable):
        perform(sent)

    assert not PaymentStepRecord.objects.exists()
    assert not Charge.objects.exists()


def test_the_same_key_succeeds_once_the_processor_recovers() -> None:
    sent = charge_command(testcards.PROCESSING_ERROR)
    with pytest.raises(ProcessorUnavailable):
        perform(sent)
    PaymentMethod.objects.update(behaviour=PaymentMethod.Behaviour.OK)

    reply = perform(again(sent))

    assert reply.outcome == "ok"
    assert Charge.objects.count() == 1


def test_a_method_that_pays_stored_after_the_charges_insert_looked_is_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The insert, which charges only if the token's method pays, found no such method; the
    # read that follows sees one, stored in between (READ COMMITTED: a new snapshot).
    monkeypatch.setattr(services, "_insert_if_payable", lambda charge: None)
    saga_id = uuid4()

    charge = charge_payment(
        saga_id=saga_id,
        order_id=uuid4(),
        payment_token=card_token(),
        amount=Decimal("12.00"),
        currency="EUR",
    )

    assert Charge.objects.get(saga_id=saga_id) == charge
    assert (charge.amount, charge.status) == (Decimal("12.00"), Charge.Status.CHARGED)


# --- tokenisation ------------------------------------------------------------------------------

NEXT_YEAR = date.today().year + 1
# Digits of another script: str.isdigit() accepts them, a card processor would not.
FULL_WIDTH_4242 = "".join(chr(0xFF10 + int(digit)) for digit in "4242424242424242")


def tokenize(**overrides: object) -> PaymentMethod:
    card: dict[str, Any] = {
        "number": "4242 4242 4242 4242",
        "exp_month": 12,
        "exp_year": NEXT_YEAR,
        "cvc": "123",
        **overrides,
    }
    return tokenize_card(**card)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"number": "4242424242424241"}, "number"),  # Luhn check digit off by one
        ({"number": "4242-4242-4242-4242"}, "number"),
        ({"number": "4242abcd42424242"}, "number"),
        ({"number": FULL_WIDTH_4242}, "number"),
        ({"number": "42424242424"}, "number"),  # 11 digits
        ({"number": "42424242424242424242"}, "number"),  # 20 digits
        ({"exp_month": 0}, "exp_month"),
        ({"exp_month": 13}, "exp_month"),
        ({"exp_year": 2020}, "exp_year"),
        ({"exp_year": date.today().year + 50}, "exp_year"),
        ({"cvc": "12"}, "cvc"),
        ({"cvc": "12345"}, "cvc"),
        ({"cvc": "12a"}, "cvc"),
    ],
)
def test_tokenize_card_rejects_a_bad_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCard) as refused:
        tokenize(**overrides)

    assert list(refused.value.field_errors) == [field]
    assert not PaymentMethod.objects.exists()


def test_a_card_expiring_this_month_is_still_valid() -> None:
    today = date.today()

    method = tokenize(exp_month=today.month, exp_year=today.year)

    assert (method.exp_month, method.exp_year) == (today.month, today.year)


def test_a_card_that_expired_last_month_is_refused() -> None:
    today = date.today()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)

    with pytest.raises(InvalidCard) as refused:
        tokenize(exp_month=month, exp_year=year)

    assert "exp_year" in refused.value.field_errors


def test_invalid_card_errors_report_every_bad_field_without_quoting_them() -> None:
    with pytest.raises(InvalidCard) as refused:
        tokenize(number="4242424242424241", exp_month=13, cvc="9")

    assert sorted(refused.value.field_errors) == ["cvc", "exp_month", "number"]
    assert "4242424242424241" not in str(refused.value.field_errors)


@pytest.mark.parametrize(
    ("number", "behaviour"),
    [
        ("4242424242424242", "ok"),
        ("4000000000000002", "declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000119", "processing_error"),
        ("5555555555554444", "ok"),
    ],
)
def test_tokenize_card_maps_test_cards_to_processor_behaviour(number: str, behaviour: str) -> None:
    assert tokenize(number=number).behaviour == behaviour


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "unknown"),
    ],
)
def test_tokenize_card_derives_the_brand_from_the_prefix(number: str, brand: str) -> None:
    assert tokenize(number=number).brand == brand


@pytest.mark.parametrize(
    ("prefix", "brand"),
    [
        ("50", "unknown"),
        ("51", "mastercard"),
        ("55", "mastercard"),
        ("56", "unknown"),
        ("2220", "unknown"),
        ("2221", "mastercard"),
        ("2720", "mastercard"),
        ("2721", "unknown"),
        ("34", "amex"),
        ("37", "amex"),
        ("35", "unknown"),
    ],
)
def test_the_brand_follows_each_networks_prefix_range_to_its_edges(prefix: str, brand: str) -> None:
    assert card_brand(prefix.ljust(16, "0")) == brand


def test_a_payment_method_keeps_no_card_number_or_cvc() -> None:
    method = tokenize(number="4000 0000 0000 9995", cvc="987")

    stored = PaymentMethod.objects.filter(pk=method.pk).values().get()
    # Only the vault's own columns exist: nowhere to put a number or a CVC.
    assert set(stored) == {
        "id",
        "token",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "behaviour",
        "created_at",
        "request_key",  # the caller's retry key (checkout: a digest), never card data
    }
    assert method.token.startswith("pm_") and len(method.token) == 27
    assert stored["last4"] == "9995"
    assert not any("4000000000009995" in str(value) for value in stored.values())


def test_each_tokenisation_gets_a_new_token() -> None:
    assert tokenize().token != tokenize().token


def test_a_tokenisation_repeated_with_its_request_key_returns_the_same_token() -> None:
    first = tokenize(request_key="idem:abc")

    again = tokenize(request_key="idem:abc")
    other = tokenize(request_key="idem:def")

    assert again.token == first.token
    assert other.token != first.token
    assert PaymentMethod.objects.count() == 2


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_two_tokenisations_at_once_under_one_request_key_give_one_method() -> None:
    # The second waits on the key the first holds uncommitted, then returns the first's method.
    def second() -> str:
        try:
            return tokenize(request_key="idem:race").token
        finally:
            connections.close_all()  # this thread's

    with ThreadPoolExecutor(1) as pool:
        with transaction.atomic(using=router.db_for_write(PaymentMethod)):
            first = tokenize(request_key="idem:race")
            pending = pool.submit(second)
            time.sleep(0.3)
            assert not pending.done()  # waiting for the first to commit or roll back
        assert pending.result(timeout=10) == first.token
    assert PaymentMethod.objects.filter(request_key="idem:race").count() == 1


def test_a_request_key_reused_for_another_card_is_refused_and_stores_nothing() -> None:
    first = tokenize(request_key="idem:abc")

    with pytest.raises(ValueError, match="another card"):
        tokenize(request_key="idem:abc", number="5555555555554444")

    assert list(PaymentMethod.objects.values_list("token", flat=True)) == [first.token]


def test_a_charge_of_a_sub_cent_amount_is_a_fault_that_charges_nothing() -> None:
    sent = charge_command(total="10.001")

    with pytest.raises(ValueError, match="two decimal places"):
        perform(sent)

    assert not Charge.objects.exists()  # not 10.00: refused, never rounded
    assert not PaymentStepRecord.objects.exists()  # a fault: the key may be retried


def test_the_charge_service_refuses_a_sub_cent_amount_rather_than_rounding_it() -> None:
    token = card_token()

    with pytest.raises(ValueError, match="two decimal places"):
        charge_payment(
            saga_id=uuid4(),
            order_id=uuid4(),
            payment_token=token,
            amount=Decimal("10.001"),
            currency="EUR",
        )

    assert not Charge.objects.exists()


def test_a_whole_cent_amount_written_with_fewer_digits_is_charged_as_is() -> None:
    reply = perform(charge_command(total="10.5"))

    assert reply.data["amount"] == "10.50"
    assert Charge.objects.get().amount == Decimal("10.50")
