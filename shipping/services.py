"""The Shipping Service's local transactions: schedule a shipment, cancel it.

All or nothing: each runs in a transaction of its own, or in its caller's without a savepoint
(a saga command's: `sagas.participant.perform` keeps one around the effect where a failure must
leave the rest), which a failure here then leaves to roll back. A savepoint more would cost
every command two round trips.
"""

from dataclasses import dataclass
from uuid import UUID

from django.db import router, transaction

from sagas import bulk
from shipping.exceptions import ShippingUnavailable
from shipping.models import Shipment

UNSERVED_COUNTRIES = frozenset({"AQ"})


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str


def schedule_shipment(*, saga_id: UUID, order_id: UUID, address: Address) -> Shipment:
    """Schedule the shipment of a saga's order. Raises ShippingUnavailable if it is not served."""
    country = address.country.upper()
    if country in UNSERVED_COUNTRIES:
        raise ShippingUnavailable(f"we do not ship to {country}")
    shipment = Shipment(
        saga_id=saga_id,
        order_id=order_id,
        name=address.name,
        line1=address.line1,
        city=address.city,
        postal_code=address.postal_code,
        country=country,
        status=Shipment.Status.SCHEDULED,
    )
    bulk.create(shipment, using=router.db_for_write(Shipment))
    return shipment


def cancel_shipment(*, shipment_id: int) -> Shipment:
    """Cancel a scheduled shipment. Cancelling a cancelled shipment changes nothing."""
    with transaction.atomic(using=router.db_for_write(Shipment), savepoint=False):
        # Row lock: a saga compensation and an operator must not both cancel.
        shipment = Shipment.objects.select_for_update().get(pk=shipment_id)
        if shipment.status == Shipment.Status.SCHEDULED:
            shipment.status = Shipment.Status.CANCELLED
            shipment.save(update_fields=["status", "updated_at"])
    return shipment
