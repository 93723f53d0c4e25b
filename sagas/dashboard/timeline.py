"""A saga's timeline for the dashboard: one lane per step on a shared time axis, lanes grouped by
their depth in the step graph so that steps that run at the same time sit side by side, each
attempt a bar with its outcome and duration, and each compensation a bar under the step it undoes.

Built from plain data (the definition, the step log, the events), without the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sagas.core.definition import SagaDefinition

# Events that end the open attempt of a step, and the outcome they give it.
ENDS_ACTION = {"step_succeeded": "succeeded", "step_failed": "failed", "step_refused": "refused"}
ENDS_COMPENSATION = {"step_compensated": "compensated", "compensation_failed": "failed"}
STEP_MARKS = {
    "retry_scheduled": "retry scheduled",
    "step_exhausted": "out of attempts",
    "step_stalled": "stalled: waits for an operator",
    "step_resumed": "resumed by an operator",
}
SAGA_MARKS = {
    "compensation_started": "turned back",
    "saga_completed": "completed",
    "saga_failed": "failed",
    "saga_stuck": "stuck",
    "engine_error": "engine error",
}


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    step: str = ""
    attempt: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Bar:
    compensation: bool
    attempt: int
    start: float  # seconds since the saga started
    end: float = 0.0
    outcome: str = "waiting"  # succeeded, failed, refused, compensated, no reply, waiting
    code: str = ""
    left: float = 0.0  # percent of the axis
    width: float = 0.0

    @property
    def duration_ms(self) -> int:
        return round((self.end - self.start) * 1000)

    @property
    def label(self) -> str:
        verb = "undo" if self.compensation else "attempt"
        return f"{verb} #{self.attempt}"


@dataclass
class Mark:
    at: float
    text: str
    left: float = 0.0

    @property
    def ms(self) -> int:
        return round(self.at * 1000)


@dataclass
class Lane:
    step: str
    kind: str = ""
    status: str = ""
    attempts: int = 0
    compensation_attempts: int = 0
    error: str = ""
    stalled: bool = False
    actions: list[Bar] = field(default_factory=list)
    compensations: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Stage:
    """Steps at the same depth of the graph: they run side by side."""

    depth: int
    lanes: list[Lane]

    @property
    def parallel(self) -> bool:
        return len(self.lanes) > 1


@dataclass
class Timeline:
    stages: list[Stage]
    marks: list[Mark]
    span: float  # seconds shown

    @property
    def span_ms(self) -> int:
        return round(self.span * 1000)


def depths(definition: SagaDefinition) -> dict[str, int]:
    found: dict[str, int] = {}
    for step in definition.steps:  # listed after their dependencies
        found[step.name] = 1 + max((found[d] for d in step.depends_on), default=-1)
    return found


def build(
    *,
    definition: SagaDefinition | None,
    steps: Mapping[str, Mapping[str, Any]],
    events: Iterable[Event],
    end: datetime,
) -> Timeline:
    """`steps` is the saga's step log (`step_log(saga.state)`); `end` closes bars still open (the
    saga's finish, or now)."""
    events = list(events)
    start = events[0].at if events else end
    lanes = {name: _lane(name, state, definition) for name, state in steps.items()}
    open_bars: dict[tuple[str, bool], Bar] = {}
    marks: list[Mark] = []
    for event in events:
        t = (event.at - start).total_seconds()
        kind, name = event.kind, event.step
        lane = lanes.setdefault(name, Lane(name)) if name else None
        if kind in ("step_sent", "compensation_sent") and lane is not None:
            compensation = kind == "compensation_sent"
            _close(open_bars, name, compensation, t, "no reply")
            if compensation:  # an action still in flight is undone without waiting for it
                _close(open_bars, name, False, t, "no reply")
            bar = Bar(compensation, event.attempt, t)
            (lane.compensations if compensation else lane.actions).append(bar)
            open_bars[(name, compensation)] = bar
        elif kind in ENDS_ACTION and lane is not None:
            _close(open_bars, name, False, t, ENDS_ACTION[kind], event.detail.get("code", ""))
        elif kind in ENDS_COMPENSATION and lane is not None:
            _close(open_bars, name, True, t, ENDS_COMPENSATION[kind], event.detail.get("code", ""))
        elif kind in STEP_MARKS and lane is not None:
            lane.marks.append(Mark(t, f"{STEP_MARKS[kind]} (attempt {event.attempt})"))
        elif kind in SAGA_MARKS:
            code = event.detail.get("code", "")
            marks.append(Mark(t, SAGA_MARKS[kind] + (f": {code}" if code else "")))
    span = max((end - start).total_seconds(), max((m.at for m in marks), default=0.0), 0.001)
    for bar in open_bars.values():
        bar.end = span
    for lane in lanes.values():
        for bar in lane.actions + lane.compensations:
            bar.left = round(100 * bar.start / span, 2)
            bar.width = round(max(0.8, 100 * (bar.end - bar.start) / span), 2)
        for mark in lane.marks:
            mark.left = round(100 * mark.at / span, 2)
    for mark in marks:
        mark.left = round(100 * mark.at / span, 2)
    return Timeline(_stages(lanes, definition), marks, span)


def _lane(name: str, state: Mapping[str, Any], definition: SagaDefinition | None) -> Lane:
    kind = ""
    if definition is not None:
        with contextlib.suppress(KeyError):  # a step no longer in the definition
            kind = definition.step(name).kind.value
    return Lane(
        name,
        kind=kind,
        status=str(state.get("status", "")),
        attempts=int(state.get("attempts", 0)),
        compensation_attempts=int(state.get("compensation_attempts", 0)),
        error=str(state.get("error", "")),
        stalled=bool(state.get("stalled", False)),
    )


def _close(
    open_bars: dict[tuple[str, bool], Bar],
    step: str,
    compensation: bool,
    t: float,
    outcome: str,
    code: str = "",
) -> None:
    bar = open_bars.pop((step, compensation), None)
    if bar is not None:
        bar.end, bar.outcome, bar.code = t, outcome, code


def _stages(lanes: dict[str, Lane], definition: SagaDefinition | None) -> list[Stage]:
    level = depths(definition) if definition is not None else {}
    order = list(level) + [name for name in lanes if name not in level]
    fallback = max(level.values(), default=-1) + 1
    by_depth: dict[int, list[Lane]] = {}
    for index, name in enumerate(order):
        if name in lanes:
            depth = level.get(name, fallback + index)
            by_depth.setdefault(depth, []).append(lanes[name])
    return [Stage(depth, by_depth[depth]) for depth in sorted(by_depth)]
