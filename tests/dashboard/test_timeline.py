"""The timeline's lanes, built from plain data: given these events, expect these bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sagas.core.definition import SagaDefinition, Step, StepKind
from sagas.dashboard.timeline import Event, build

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GRAPH = SagaDefinition(
    "order",
    (
        Step("create", "orders.create", "orders.cancel"),
        Step("charge", "payments.charge", "payments.refund"),
        Step("ship", "shipping.schedule", "shipping.cancel", ("create", "charge"), StepKind.PIVOT),
    ),
)


def at(ms: int, kind: str, step: str = "", attempt: int = 0, **detail: Any) -> Event:
    return Event(T0 + timedelta(milliseconds=ms), kind, step, attempt, detail)


def test_independent_steps_share_a_stage_and_their_bars_overlap() -> None:
    events = [
        at(0, "saga_started"),
        at(0, "step_sent", "create", 1),
        at(0, "step_sent", "charge", 1),
        at(40, "step_succeeded", "create", 1),
        at(60, "step_succeeded", "charge", 1),
        at(60, "step_sent", "ship", 1),
        at(100, "step_succeeded", "ship", 1),
        at(100, "saga_completed"),
    ]

    timeline = build(definition=GRAPH, steps={}, events=events, end=T0 + timedelta(seconds=0.1))

    first, second = timeline.stages
    assert [lane.step for lane in first.lanes] == ["create", "charge"] and first.parallel
    assert [lane.step for lane in second.lanes] == ["ship"] and not second.parallel
    create, charge = (lane.actions[0] for lane in first.lanes)
    assert create.start == charge.start == 0 and (create.duration_ms, charge.duration_ms) == (
        40,
        60,
    )
    assert second.lanes[0].actions[0].left == 60.0
    assert [mark.text for mark in timeline.marks] == ["completed"]


def test_a_compensation_sits_under_the_step_it_undoes_with_its_attempts_and_the_reason() -> None:
    events = [
        at(0, "step_sent", "create", 1),
        at(0, "step_sent", "charge", 1),
        at(10, "step_failed", "charge", 1, code="boom"),
        at(10, "retry_scheduled", "charge", 1, delay=0.2),
        at(210, "step_sent", "charge", 2),
        at(230, "step_refused", "charge", 2, code="payment_declined"),
        at(230, "compensation_started", code="payment_declined"),
        at(230, "compensation_sent", "create", 1),
        at(260, "compensation_failed", "create", 1, code="down"),
        at(300, "compensation_sent", "create", 2),
        at(320, "step_compensated", "create", 2),
        at(320, "saga_failed", code="payment_declined"),
    ]

    timeline = build(definition=GRAPH, steps={}, events=events, end=T0 + timedelta(seconds=0.32))

    create, charge = timeline.stages[0].lanes
    assert [(b.attempt, b.outcome, b.code) for b in charge.actions] == [
        (1, "failed", "boom"),
        (2, "refused", "payment_declined"),
    ]
    assert [m.text for m in charge.marks] == ["retry scheduled (attempt 1)"]
    assert [(b.label, b.outcome) for b in create.compensations] == [
        ("undo #1", "failed"),
        ("undo #2", "compensated"),
    ]
    # The action still in flight when the compensation went out ends there: undone unanswered.
    assert [(b.outcome, b.duration_ms) for b in create.actions] == [("no reply", 230)]
    assert [m.text for m in timeline.marks] == [
        "turned back: payment_declined",
        "failed: payment_declined",
    ]


def test_a_bar_still_open_runs_to_the_end_of_the_axis() -> None:
    events = [at(0, "step_sent", "create", 1)]

    timeline = build(definition=None, steps={}, events=events, end=T0 + timedelta(seconds=2))

    (bar,) = timeline.stages[0].lanes[0].actions
    assert (bar.outcome, bar.duration_ms, bar.width) == ("waiting", 2000, 100.0)
