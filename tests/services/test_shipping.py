"""Shipping Service through the participant protocol: schedule once, cancel once, refuse AQ."""

import pytest

from sagas.messages import Command
from sagas.participant import perform
from shipping import messages
from shipping.models import Shipment, ShippingStepRecord
from storefront.samples import address
from tests.services.builders import again, command, essence, order_payload, undo

pytestmark = pytest.mark.django_db

STEP = "schedule_shipment"


def schedule_command(country: str = "FR") -> Command:
    return command(
        messages.SCHEDULE, STEP, payload=order_payload(shipping_address=address(country=country))
    )


def test_schedule_applies_once_and_repeats_its_reply() -> None:
    sent = schedule_command()

    first = perform(sent)
    second = perform(again(sent))

    assert first.outcome == "ok"
    assert essence(second) == essence(first)
    shipment = Shipment.objects.get()
    assert first.data == {"shipment_id": shipment.pk}
    assert (shipment.city, shipment.country, shipment.status) == ("Paris", "FR", "scheduled")
    assert str(shipment.order_id) == sent.payload["order_id"]


def test_cancel_before_schedule_leaves_a_tombstone() -> None:
    sent = schedule_command()

    reply = perform(undo(sent, messages.CANCEL))

    assert reply.outcome == "ok"
    assert reply.data == {"undone": False, "tombstone": True}
    assert ShippingStepRecord.objects.filter(saga_id=sent.saga_id).count() == 1


def test_schedule_after_its_cancel_is_refused_and_ships_nothing() -> None:
    sent = schedule_command()
    perform(undo(sent, messages.CANCEL))

    late = perform(sent)

    assert (late.outcome, late.code) == ("refused", "compensated")
    assert not Shipment.objects.exists()


def test_cancel_twice_cancels_once() -> None:
    sent = schedule_command()
    perform(sent)

    first = perform(undo(sent, messages.CANCEL))
    cancelled_at = Shipment.objects.get().updated_at
    second = perform(again(undo(sent, messages.CANCEL)))

    assert first.data["status"] == "cancelled"
    assert essence(second) == essence(first)
    assert Shipment.objects.get().updated_at == cancelled_at


@pytest.mark.parametrize("country", ["AQ", "aq"])
def test_antarctica_is_refused_and_repeats_the_refusal(country: str) -> None:
    sent = schedule_command(country)

    first = perform(sent)
    second = perform(again(sent))

    assert (first.outcome, first.code) == ("refused", "shipping_unavailable")
    assert essence(second) == essence(first)
    assert not Shipment.objects.exists()


def test_cancel_after_a_refusal_has_nothing_to_undo() -> None:
    sent = schedule_command("AQ")
    perform(sent)

    reply = perform(undo(sent, messages.CANCEL))

    assert reply.data == {"undone": False, "tombstone": False}
    assert not Shipment.objects.exists()
