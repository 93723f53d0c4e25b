"""A saga's progress as plain data: what the transition function reads and returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from sagas.core.definition import SagaDefinition


class SagaStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    STUCK = "stuck"  # a step ran out of attempts where the saga cannot give up: an operator acts

    @property
    def terminal(self) -> bool:
        return self in (SagaStatus.COMPLETED, SagaStatus.FAILED)


class StepStatus(StrEnum):
    PENDING = "pending"  # not sent yet
    RUNNING = "running"  # action sent, reply awaited
    SUCCEEDED = "succeeded"
    REFUSED = "refused"  # the service refused: nothing was done, nothing to undo
    COMPENSATING = "compensating"  # to be undone; sent once every dependent step is undone
    COMPENSATED = "compensated"
    SKIPPED = "skipped"  # never sent: the saga failed before it was due


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0  # action sends so far (the attempt number of the last send)
    retry_base: int = 0  # attempts granted before the current round (an operator retry)
    compensation_attempts: int = 0
    compensation_base: int = 0
    due: float | None = None  # when the step next needs attention: reply deadline or backoff
    stalled: bool = False  # ran out of attempts; waits for an operator
    error: str = ""  # last refusal or fault code

    @property
    def budget_used(self) -> int:
        if self.status is StepStatus.COMPENSATING:
            return self.compensation_attempts - self.compensation_base
        return self.attempts - self.retry_base


@dataclass
class SagaState:
    status: SagaStatus
    steps: dict[str, StepState]
    reason_code: str | None = None  # set when the saga turns back (compensates)
    reason_message: str = ""

    @classmethod
    def new(cls, definition: SagaDefinition) -> SagaState:
        return cls(SagaStatus.PENDING, {step.name: StepState() for step in definition.steps})

    @property
    def backward(self) -> bool:
        return self.reason_code is not None

    @property
    def due(self) -> float | None:
        dues = [s.due for s in self.steps.values() if s.due is not None]
        return min(dues) if dues else None

    def copy(self) -> SagaState:
        return replace(self, steps={name: replace(s) for name, s in self.steps.items()})

    def to_json(self) -> dict[str, Any]:
        """The stored form. A step is a list of its fields in `STORED_ORDER`, without the
        defaults at its end: the saga row is rewritten at every decision, and most of a step's
        fields are at their defaults most of the time. `step_log` gives the steps back whole.
        A saga that has not turned back stores no reason (`from_json` reads none as none)."""
        stored: dict[str, Any] = {"status": self.status.value}
        if self.reason_code is not None:
            stored["reason_code"] = self.reason_code
        if self.reason_message:
            stored["reason_message"] = self.reason_message
        stored["steps"] = {name: _stored(step) for name, step in self.steps.items()}
        return stored

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SagaState:
        steps = {
            name: StepState(**{**raw, "status": StepStatus(raw["status"])})
            for name, raw in _fields_of(data).items()
        }
        return cls(
            SagaStatus(data["status"]),
            steps,
            data.get("reason_code"),
            data.get("reason_message", ""),
        )


_STEP_DEFAULTS: dict[str, Any] = {**asdict(StepState()), "status": StepStatus.PENDING.value}

# A stored step's fields by position, the likeliest to differ from their defaults first. Only
# ever append to it: stored rows are read by position.
STORED_ORDER = (
    "status",
    "attempts",
    "due",
    "error",
    "stalled",
    "compensation_attempts",
    "retry_base",
    "compensation_base",
)
assert sorted(STORED_ORDER) == sorted(_STEP_DEFAULTS)


def _stored(step: StepState) -> list[Any]:
    """e.g. `["running", 1, 1795000000.25]`, `["succeeded", 1]`, `["pending"]`."""
    values = [step.status.value] + [getattr(step, name) for name in STORED_ORDER[1:]]
    while len(values) > 1 and _is_default(STORED_ORDER[len(values) - 1], values[-1]):
        values.pop()
    return values


def _is_default(name: str, value: Any) -> bool:
    default = _STEP_DEFAULTS[name]
    return type(value) is type(default) and value == default  # False is not 0


def _fields_of(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stored steps as dicts of the fields they hold: a step stored as a list, or as a dict
    (the form before, with its fields only where not at their defaults, or all of them)."""
    return {
        name: dict(zip(STORED_ORDER, raw, strict=False)) if isinstance(raw, list) else raw
        for name, raw in state["steps"].items()
    }


def step_log(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step of a stored state (`SagaState.to_json`, or a form it had before) with all
    its fields."""
    return {name: {**_STEP_DEFAULTS, **raw} for name, raw in _fields_of(state).items()}


@dataclass(frozen=True)
class Send:
    """A command the saga must send (through the outbox, in the transaction that records it)."""

    step: str
    command: str
    compensation: bool
    attempt: int


class EventKind(StrEnum):
    """What an entry of a saga's event log records; past tense, stable (logs, metrics, API)."""

    SAGA_STARTED = "saga_started"
    SAGA_RUNNING = "saga_running"
    SAGA_COMPENSATING = "saga_compensating"
    SAGA_COMPLETED = "saga_completed"
    SAGA_FAILED = "saga_failed"
    SAGA_STUCK = "saga_stuck"
    STEP_SENT = "step_sent"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_REFUSED = "step_refused"
    STEP_FAILED = "step_failed"  # a fault: retried under the step's policy
    STEP_EXHAUSTED = "step_exhausted"
    STEP_STALLED = "step_stalled"
    STEP_RESUMED = "step_resumed"
    STEP_COMPENSATED = "step_compensated"
    RETRY_SCHEDULED = "retry_scheduled"
    REPLY_IGNORED = "reply_ignored"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_SENT = "compensation_sent"
    COMPENSATION_FAILED = "compensation_failed"
    ENGINE_ERROR = "engine_error"  # written by the store: the saga could not be processed

    @classmethod
    def entered(cls, status: SagaStatus) -> EventKind:
        """The event of a saga entering `status` (a saga never re-enters `pending`)."""
        return cls(f"saga_{status.value}")


@dataclass(frozen=True)
class LogEvent:
    """An entry for the saga's append-only event log."""

    kind: EventKind
    step: str = ""
    attempt: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
