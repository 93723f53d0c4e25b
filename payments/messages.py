"""The Payment Service's command contract: command names and the payload fields it reads."""

from typing import TypedDict

CHARGE = "payments.charge"
REFUND = "payments.refund"  # compensates CHARGE


class ChargePayload(TypedDict):
    """The part of the order saga's data this service reads; other keys are ignored.

    Only the token travels: the card number and CVC never enter a payload.
    """

    order_id: str
    total: str  # decimal string, e.g. "25.00"
    currency: str
    payment_token: str
