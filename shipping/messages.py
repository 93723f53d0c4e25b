"""The Shipping Service's command contract: command names and the payload fields it reads."""

from typing import TypedDict

SCHEDULE = "shipping.schedule"
CANCEL = "shipping.cancel"  # compensates SCHEDULE


class AddressPayload(TypedDict):
    name: str
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2


class SchedulePayload(TypedDict):
    """The part of the order saga's data this service reads; other keys are ignored."""

    order_id: str
    shipping_address: AddressPayload
