"""The Payment Service's local transactions: tokenise a card, charge a token, refund a charge.

The card processor is simulated: a payment method's `behaviour`, fixed at tokenisation from the
industry's test card numbers, decides what a charge does.

All or nothing: each runs in a transaction of its own, or in its caller's without a savepoint
(a saga command's: `sagas.participant.perform` keeps one around the effect where a failure must
leave the rest), which a failure here then leaves to roll back. A savepoint more would cost
every command two round trips.
"""

import re
import secrets
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connections, router, transaction
from django.utils import timezone

from payments import testcards
from payments.exceptions import (
    InsufficientFunds,
    InvalidCard,
    PaymentDeclined,
    ProcessorUnavailable,
)
from payments.models import Charge, PaymentMethod, Refund
from sagas import bulk

Behaviour = PaymentMethod.Behaviour

TEST_CARDS: dict[str, PaymentMethod.Behaviour] = {
    testcards.OK: Behaviour.OK,
    testcards.DECLINED: Behaviour.DECLINED,
    testcards.INSUFFICIENT_FUNDS: Behaviour.INSUFFICIENT_FUNDS,
    testcards.PROCESSING_ERROR: Behaviour.PROCESSING_ERROR,
}
MAX_YEARS_AHEAD = 20  # no issuer prints a card valid for longer
CENT = Decimal("0.01")

_CARD_NUMBER = re.compile(r"[0-9]{12,19}")
_CVC = re.compile(r"[0-9]{3,4}")


def tokenize_card(
    *, number: str, exp_month: int, exp_year: int, cvc: str, request_key: str | None = None
) -> PaymentMethod:
    """Validate a card and store it as a token, brand, last four digits and expiry.

    The number and the CVC are used only here and are never stored, logged or returned; error
    messages do not quote them. Raises InvalidCard with the errors of every bad field.

    Safe to repeat: with a `request_key`, the first call commits the method in the Payment
    Service's own database and every later call with that key returns the same method (even
    two at once: the second waits on the key's unique index). A key reused for another card is
    a bug upstream (ValueError). The caller commits nothing with it, so a token whose order was
    never placed is an orphan: harmless, a vault entry that no charge ever uses.
    """
    digits = "".join(number.split())
    validate_card(
        digits=digits, exp_month=exp_month, exp_year=exp_year, cvc=cvc, today=timezone.now().date()
    )
    card = {
        "brand": card_brand(digits),
        "last4": digits[-4:],
        "exp_month": exp_month,
        "exp_year": exp_year,
        "behaviour": TEST_CARDS.get(digits, Behaviour.OK),
    }
    if request_key is None:
        return PaymentMethod.objects.create(token=new_token(), **card)
    method = _create_once(PaymentMethod(token=new_token(), request_key=request_key, **card))
    if any(getattr(method, name) != value for name, value in card.items()):
        raise ValueError("the tokenisation request key was first used for another card")
    return method


def _create_once(method: PaymentMethod) -> PaymentMethod:
    """Insert `method` unless a method has its request key, and return the one that has it.

    One statement when the key is new (`get_or_create` spends a query and a savepoint more): an
    insert that does nothing on a conflict, which waits while another transaction inserts the
    same key; only a repeat reads the method that was there."""
    inserted = _inserted(method, "VALUES ({values}) ON CONFLICT (request_key) DO NOTHING")
    if inserted:
        return inserted[0]
    return PaymentMethod.objects.using(router.db_for_write(PaymentMethod)).get(
        request_key=method.request_key
    )


def new_token() -> str:
    return "pm_" + secrets.token_hex(12)


def validate_card(*, digits: str, exp_month: int, exp_year: int, cvc: str, today: date) -> None:
    errors: dict[str, list[str]] = {}
    # ASCII only: str.isdigit() would also accept other scripts' digits.
    if not digits.isascii() or not digits.isdigit():
        errors["number"] = ["The card number may contain only digits and spaces."]
    elif not _CARD_NUMBER.fullmatch(digits):
        errors["number"] = ["The card number must have 12 to 19 digits."]
    elif not luhn_valid(digits):
        errors["number"] = ["The card number is not valid."]
    month_valid = 1 <= exp_month <= 12
    if not month_valid:
        errors["exp_month"] = ["The expiry month must be between 1 and 12."]
    if exp_year > today.year + MAX_YEARS_AHEAD:
        errors["exp_year"] = ["The expiry year is too far in the future."]
    elif exp_year < today.year or (
        # A card is valid until the last day of its expiry month.
        month_valid and exp_year == today.year and exp_month < today.month
    ):
        errors["exp_year"] = ["The card has expired."]
    if not _CVC.fullmatch(cvc):
        errors["cvc"] = ["The security code must have 3 or 4 digits."]
    if errors:
        raise InvalidCard(errors)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits[:2] in ("34", "37"):
        return "amex"
    return "unknown"


def charge_payment(
    *, saga_id: UUID, order_id: UUID, payment_token: str, amount: Decimal, currency: str
) -> Charge:
    """Charge the card behind `payment_token` once for this saga.

    Raises PaymentDeclined or InsufficientFunds (refusals, final) or ProcessorUnavailable (a
    transient fault: nothing is recorded and the same command may be retried), and ValueError
    for an amount with sub-cent digits (a bug upstream: nothing is charged).
    """
    amount = whole_cents(amount)
    charge = Charge(
        saga_id=saga_id,
        order_id=order_id,
        payment_token=payment_token,
        amount=amount,
        currency=currency,
        status=Charge.Status.CHARGED,
    )
    charged = _insert_if_payable(charge)
    if charged is not None:
        return charged
    method = PaymentMethod.objects.filter(token=payment_token).first()
    if method is None:
        raise PaymentDeclined("the payment method is unknown")
    if method.behaviour == Behaviour.DECLINED:
        raise PaymentDeclined("the card was declined")
    if method.behaviour == Behaviour.INSUFFICIENT_FUNDS:
        raise InsufficientFunds("the card has insufficient funds")
    if method.behaviour == Behaviour.PROCESSING_ERROR:
        raise ProcessorUnavailable("the card processor failed to answer")
    charge.save(force_insert=True)  # a method that pays, stored since the insert looked
    return charge


def _insert_if_payable(charge: Charge) -> Charge | None:
    """Insert `charge` if its token's payment method pays, and return it; None (nothing
    inserted) if the method refuses or is unknown, for the caller to say why.

    One statement for the usual charge, where a read of the method and then the insert were two,
    each through the query compiler."""
    inserted = _inserted(
        charge,
        f"SELECT {{values}} FROM {PaymentMethod._meta.db_table} WHERE token = %s AND behaviour = %s",
        [charge.payment_token, Behaviour.OK],
    )
    return inserted[0] if inserted else None


def _inserted(obj: PaymentMethod | Charge, source: str, extra: Sequence[Any] = ()) -> list[Any]:
    """The rows an `INSERT INTO <obj's table> (<its columns>) <source> RETURNING *` inserted:
    `obj`'s values, as its first `save()` would write them (`sagas.bulk.row`), fill `{values}`
    in `source`, and `extra` parameters follow them."""
    model = type(obj)
    using = router.db_for_write(model)
    columns, values = bulk.row(obj, connections[using])
    sql = (
        f"INSERT INTO {model._meta.db_table} ({columns}) "
        + source.format(values=", ".join(["%s"] * len(values)))
        + " RETURNING *"
    )
    return list(model._default_manager.using(using).raw(sql, [*values, *extra]))


def whole_cents(amount: Decimal) -> Decimal:
    """`amount` with exactly two decimal places; ValueError if that would change its value.

    The amount columns are NUMERIC(12, 2), which round sub-cent digits away silently: a charge
    of 10.001 would be stored as 10.00. Such an amount is refused here, never rounded.
    """
    cents = amount.quantize(CENT)
    if cents != amount:
        raise ValueError(f"amount {amount} has more than two decimal places")
    return cents


def refund_charge(*, charge_id: int) -> Refund:
    """Refund a charge in full. Refunding a refunded charge returns the existing refund.

    Keeps the invariant charges - refunds = 0 for every compensated saga.
    """
    with transaction.atomic(using=router.db_for_write(Charge), savepoint=False):
        # Row lock: two refunds racing (saga and operator) must not both see `charged`.
        charge = Charge.objects.select_for_update().get(pk=charge_id)
        if charge.status == Charge.Status.REFUNDED:
            return charge.refunds.get()
        refund = Refund.objects.create(charge=charge, amount=charge.amount)
        charge.status = Charge.Status.REFUNDED
        charge.save(update_fields=["status"])
    return refund
