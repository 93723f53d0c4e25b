"""Errors of the Order Service. None of them is a refusal: creating an order cannot be declined."""


class OrderStateConflict(Exception):
    """A command arrived that the order's state rules out (cancel after approve, or the reverse).

    The saga protocol never sends these, so it is a fault: retried, then parked for an operator.
    """
