"""A service's refusal: the code and message its failure reply carries."""

from __future__ import annotations

from sagas.participant import Refusal


class OutOfParcels(Refusal):
    code = "out_of_parcels"


def test_a_refusal_without_a_message_says_its_code() -> None:
    refusal = OutOfParcels()
    assert (refusal.code, refusal.message, str(refusal)) == ("out_of_parcels",) * 3


def test_a_refusal_with_a_message_keeps_it_and_its_class_code() -> None:
    refusal = OutOfParcels("none left in Paris")
    assert (refusal.code, refusal.message, str(refusal)) == (
        "out_of_parcels",
        "none left in Paris",
        "none left in Paris",
    )


def test_a_refusal_can_be_given_its_code_when_raised() -> None:
    refusal = Refusal("no", code="closed")
    assert (refusal.code, refusal.message) == ("closed", "no")
    assert Refusal().code == "refused"
