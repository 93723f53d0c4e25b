"""Errors of the Payment Service: refusals (final), a transient fault, and input validation."""

from sagas.participant import Refusal


class PaymentDeclined(Refusal):
    code = "payment_declined"


class InsufficientFunds(Refusal):
    code = "insufficient_funds"


class ProcessorUnavailable(Exception):
    """The card processor failed transiently. Not a refusal: the orchestrator retries the step."""


class InvalidCard(ValueError):
    """The card details are malformed or expired. Raised before any saga starts (API input).

    `field_errors` maps a `tokenize_card` argument name to its messages; they never quote the
    card number or the CVC.
    """

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        super().__init__("invalid card: " + ", ".join(sorted(field_errors)))
        self.field_errors = field_errors
