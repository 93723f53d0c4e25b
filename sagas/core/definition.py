"""Saga definitions: a graph of steps, each with its kind, compensation, retry policy and deadline."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_DEADLINE_GROWTH = 4.0  # the longest wait for a reply, in deadlines


class StepKind(StrEnum):
    """Richardson's step kinds."""

    COMPENSATABLE = "compensatable"  # may be undone while the saga has not passed its pivot
    PIVOT = "pivot"  # once it succeeds the saga only goes forward
    RETRIABLE = "retriable"  # after the pivot: retried, never compensated


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter and a bounded number of attempts."""

    max_attempts: int = 5
    initial_delay: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.2  # +/- this fraction of the delay

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError("delays must satisfy 0 <= initial_delay <= max_delay")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, failed_attempt: int, rand: float) -> float:
        """Seconds to wait after attempt number `failed_attempt` (1-based) failed; rand in [0, 1)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (failed_attempt - 1))
        return base * (1 + self.jitter * (2 * rand - 1))


@dataclass(frozen=True)
class Step:
    name: str
    action: str  # command name, "<queue>.<verb>"
    compensation: str | None = None
    depends_on: tuple[str, ...] = ()
    kind: StepKind = StepKind.COMPENSATABLE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=8))
    deadline: float = 20.0  # seconds to wait for a reply to a first send before sending again
    # The keys of the saga's data its commands carry (None: all of it). A command is a queue row
    # written, claimed and deleted, so a step that needs the order id need not carry the order.
    payload: tuple[str, ...] | None = None

    def deadline_of(self, send: int) -> float:
        """Seconds to wait for a reply to the `send`th send of a round (1-based): the deadline,
        doubled at each re-send up to `MAX_DEADLINE_GROWTH` times it. A queue that runs a
        deadline behind then gets a copy of its commands now and then, not at every deadline,
        which would put it further behind."""
        return self.deadline * min(2.0 ** (send - 1), MAX_DEADLINE_GROWTH)

    @property
    def queue(self) -> str:
        return self.action.split(".", 1)[0]

    def payload_of(self, data: dict[str, Any]) -> dict[str, Any]:
        """What this step's commands carry of the saga's `data`."""
        if self.payload is None:
            return data
        return {key: data[key] for key in self.payload if key in data}


@dataclass(frozen=True)
class SagaDefinition:
    """A step graph. Steps must be listed after the steps they depend on.

    A definition is plain data: `problems()` lists what breaks its rules, and the engine's system
    checks (sagas.checks) refuse to start with a registered definition that has any, as Django's
    admin checks its registered options.

    `version` numbers the definitions of one saga type. A saga is decided, from its first step to
    its last, by the version it started with (docs/architecture.md §10): a changed step graph is a
    new version registered beside the old one, never an edit of a version sagas already use.
    """

    name: str
    steps: tuple[Step, ...]
    version: int = 1

    @property
    def label(self) -> str:
        """How logs and messages name this definition: `order v2`."""
        return f"{self.name} v{self.version}"

    def problems(self) -> list[str]:
        """Every broken rule: unique step names, dependencies listed before their dependents (so
        the graph is acyclic and every dependency is known), and Richardson's step kinds."""
        found: list[str] = []
        if self.version < 1:
            found.append(f"{self.label}: version must be at least 1, not {self.version}")
        seen: set[str] = set()
        pivots = [s for s in self.steps if s.kind is StepKind.PIVOT]
        if len(pivots) > 1:
            found.append(f"{self.label}: at most one pivot step")
        for step in self.steps:
            if step.name in seen:
                found.append(f"{self.label}: duplicate step {step.name!r}")
            missing = [d for d in step.depends_on if d not in seen]
            if missing:
                found.append(
                    f"{self.label}: {step.name!r} depends on {missing}, which must be listed before it"
                )
            if step.kind is StepKind.COMPENSATABLE and step.compensation is None:
                found.append(f"{self.label}: compensatable step {step.name!r} needs a compensation")
            if step.kind is StepKind.RETRIABLE and step.compensation is not None:
                found.append(f"{self.label}: retriable step {step.name!r} is never compensated")
            # Ancestors are only known once every dependency is.
            if (
                step.kind is StepKind.RETRIABLE
                and not missing
                and not (pivots and pivots[0].name in self.ancestors(step.name))
            ):
                found.append(f"{self.label}: retriable step {step.name!r} must follow the pivot")
            seen.add(step.name)
        return found

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"{self.name} has no step {name!r}")

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        pending = list(self.step(name).depends_on)
        while pending:
            current = pending.pop()
            if current not in found:
                found.add(current)
                pending.extend(self.step(current).depends_on)
        return found

    def dependents(self, name: str) -> list[Step]:
        return [s for s in self.steps if name in s.depends_on]
