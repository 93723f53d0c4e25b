"""Errors of the Shipping Service: its domain refusals."""

from sagas.participant import Refusal


class ShippingUnavailable(Refusal):
    """The destination is not served."""

    code = "shipping_unavailable"
