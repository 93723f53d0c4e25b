"""The wire contract between the orchestrator and the services: commands in, replies out.

Both travel as plain dicts (django-q2 pickles task arguments) so that a queued message survives
a deploy that changes these classes. Amounts travel as decimal strings (`money` reads them).
Never put card numbers or CVCs in a payload.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

CENT = Decimal("0.01")


def money(value: str) -> Decimal:
    """An amount as it travels, a decimal string, read to the cent.

    One with sub-cent digits is a bug upstream, not something to round away silently: raises
    ValueError.
    """
    amount = Decimal(value)
    if amount != amount.quantize(CENT):
        raise ValueError(f"amount {value!r} has more than two decimal places")
    return amount.quantize(CENT)


class Outcome(StrEnum):
    OK = "ok"  # the effect is done (or, for a compensation, undone or tombstoned)
    REFUSED = "refused"  # a domain refusal: final for this key, nothing was changed
    FAULT = "fault"  # a transient failure: nothing was committed, the same key may be retried


@dataclass(frozen=True)
class Command:
    name: str  # "payments.charge"
    saga_id: str
    step: str
    compensation: bool
    attempt: int
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        """Idempotency key: the same for every attempt of this step's action (or compensation)."""
        return f"{self.saga_id}:{self.step}:{'compensation' if self.compensation else 'action'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Command:
        return cls(**data)


@dataclass(frozen=True)
class Reply:
    saga_id: str
    step: str
    compensation: bool
    attempt: int
    outcome: Outcome
    code: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def to(
        cls,
        command: Command,
        outcome: Outcome,
        code: str = "",
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> Reply:
        return cls(
            command.saga_id,
            command.step,
            command.compensation,
            command.attempt,
            outcome,
            code,
            message,
            data or {},
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(**{**data, "outcome": Outcome(data["outcome"])})
