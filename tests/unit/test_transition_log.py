"""What the transition function writes besides its sends: the event log an operator reads (the
API's timeline, the admin, the dashboard), each step's last error, and an operator's refusals,
word for word. Also the rules' edges: retry policies and definitions refused at their limits."""

from __future__ import annotations

import pytest

from sagas.core.definition import RetryPolicy, SagaDefinition, Step, StepKind
from sagas.core.state import EventKind, LogEvent, SagaState, SagaStatus
from sagas.core.transition import Cancel, Replied, Resume, Start, Tick, decide
from sagas.messages import Outcome, Reply
from tests.unit.test_transition import DEADLINE, FIRST, Run, sends, stuck_past_the_pivot


def test_a_success_and_a_compensation_are_logged_with_their_step_and_attempt() -> None:
    run = Run().started()
    run.feed(Tick(), at=run.now + DEADLINE)  # attempt 2 goes out
    assert run.ok("create_order", attempt=2).log[0] == LogEvent(
        EventKind.STEP_SUCCEEDED, "create_order", 2
    )
    run.feed(Cancel())
    assert run.ok("create_order", compensation=True).log[0] == LogEvent(
        EventKind.STEP_COMPENSATED, "create_order", 1
    )


def test_an_ignored_reply_is_logged_with_its_outcome_and_the_reason() -> None:
    run = Run().started()
    run.ok("create_order")
    assert run.ok("create_order").log == [
        LogEvent(
            EventKind.REPLY_IGNORED,
            "create_order",
            1,
            {"outcome": "ok", "compensation": False, "reason": "step is succeeded"},
        )
    ]
    run.feed(Tick(), at=run.now + DEADLINE)  # reserve_stock goes out again as attempt 2
    assert run.fault("reserve_stock", attempt=1).log == [
        LogEvent(
            EventKind.REPLY_IGNORED,
            "reserve_stock",
            1,
            {"outcome": "fault", "compensation": False, "reason": "stale attempt"},
        )
    ]


def test_a_success_after_a_fault_clears_the_steps_last_error() -> None:
    run = Run().started()
    run.fault("charge_payment", 1)
    assert run.state.steps["charge_payment"].error == "Boom"
    run.feed(Tick(), at=run.state.steps["charge_payment"].due)
    run.ok("charge_payment", attempt=2)
    assert run.state.steps["charge_payment"].error == ""


def test_a_step_out_of_attempts_is_logged_exhausted_and_shows_service_unavailable() -> None:
    run = Run().started()
    start = run.now
    for n in (1, 2):
        run.feed(Tick(), at=start + (2**n - 1) * DEADLINE)  # each wait twice the last
    decision = run.feed(Tick(), at=start + 7 * DEADLINE)
    assert [e for e in decision.log if e.kind == EventKind.STEP_EXHAUSTED] == [
        LogEvent(EventKind.STEP_EXHAUSTED, "create_order", 3)
    ]
    assert run.state.steps["create_order"].error == "service_unavailable"
    assert run.state.reason_message == "create_order did not succeed after 3 attempts"


def test_a_resumed_step_is_logged_and_no_longer_stalled() -> None:
    run = stuck_past_the_pivot()
    decision = run.feed(Resume())
    assert decision.log[0] == LogEvent(EventKind.STEP_RESUMED, "approve_order", 0)
    assert run.state.steps["approve_order"].stalled is False


def test_a_repeated_resume_fires_no_timer_even_when_one_is_due() -> None:
    run = stuck_past_the_pivot()
    run.feed(Resume())
    again = run.feed(Resume(), at=run.state.steps["approve_order"].due)
    assert (again.sends, again.log, again.rejected) == ([], [], "")


def test_a_rejected_resume_fires_no_timer_even_when_one_is_due() -> None:
    run = Run().started()
    decision = run.feed(Resume(), at=run.now + DEADLINE)
    assert decision.rejected == "the saga is pending, not stuck: nothing to retry"
    assert (decision.sends, decision.log) == ([], [])


def test_a_repeated_cancel_sends_nothing_even_when_a_compensation_is_due() -> None:
    run = Run().started()
    run.feed(Cancel())
    again = run.feed(Cancel(), at=run.now + DEADLINE)
    assert (again.sends, again.log, again.rejected) == ([], [], "")


def test_a_cancel_past_the_pivot_is_refused_with_its_reason() -> None:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    decision = run.feed(Cancel())
    assert decision.rejected == "the saga is past its pivot and can only go forward"
    assert (decision.sends, decision.log) == ([], [])


def test_a_saga_with_no_pivot_can_always_be_cancelled() -> None:
    definition = SagaDefinition("plain", (Step("a", "x.do", "x.undo"),))
    started = decide(definition, SagaState.new(definition), Start(), 0.0, lambda: 0.5).state
    decision = decide(definition, started, Cancel(), 1.0, lambda: 0.5)
    assert not decision.rejected
    assert sends(decision) == [("a", True, 1)]


def test_a_reply_becomes_an_input_with_everything_the_transition_reads() -> None:
    reply = Reply("saga-1", "charge_payment", True, 3, Outcome.REFUSED, "declined", "no funds")
    assert Replied.of(reply) == Replied(
        "charge_payment", True, 3, Outcome.REFUSED, "declined", "no funds"
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"initial_delay": -0.1}, "delays must satisfy 0 <= initial_delay <= max_delay"),
        ({"initial_delay": 2.0, "max_delay": 1.0}, "delays must satisfy"),
        ({"jitter": -0.1}, r"jitter must be in \[0, 1\)"),
        ({"jitter": 1.0}, r"jitter must be in \[0, 1\)"),
    ],
)
def test_a_retry_policy_outside_its_bounds_is_refused(
    changes: dict[str, float], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        RetryPolicy(**changes)  # type: ignore[arg-type]


def test_a_retry_policy_at_its_bounds_is_allowed() -> None:
    policy = RetryPolicy(max_attempts=1, initial_delay=0.0, max_delay=0.0, jitter=0.0)
    assert policy.delay(1, 0.9) == 0.0
    assert RetryPolicy(initial_delay=1.0, max_delay=1.0, jitter=0.5).delay(1, 0.5) == 1.0


def test_a_retriable_step_with_a_compensation_is_named_as_such() -> None:
    steps = (
        Step("p", "x.p", "x.q", kind=StepKind.PIVOT),
        Step("r", "x.r", "x.s", ("p",), StepKind.RETRIABLE),
    )
    assert SagaDefinition("bad", steps).problems() == [
        "bad v1: retriable step 'r' is never compensated"
    ]


def test_a_fault_is_logged_with_its_code_and_message_then_its_retry_with_the_delay() -> None:
    run = Run().started()
    assert run.fault("charge_payment", 1).log[:2] == [
        LogEvent(EventKind.STEP_FAILED, "charge_payment", 1, {"code": "Boom", "message": "boom"}),
        LogEvent(EventKind.RETRY_SCHEDULED, "charge_payment", 1, {"delay": 1.0}),
    ]


def test_a_fault_without_a_code_leaves_its_outcome_as_the_steps_last_error() -> None:
    run = Run().started()
    run.feed(Replied("charge_payment", False, 1, Outcome.FAULT))
    assert run.state.steps["charge_payment"].error == "fault"


def test_a_failed_compensation_is_logged_as_such() -> None:
    run = Run().started()
    run.feed(Cancel())
    assert run.fault("create_order", 1, compensation=True).log[0] == LogEvent(
        EventKind.COMPENSATION_FAILED, "create_order", 1, {"code": "Boom", "message": "boom"}
    )


def test_a_refusal_is_logged_with_its_code_and_message_and_so_is_the_turn_back() -> None:
    run = Run().started()
    log = run.refuse("charge_payment", "payment_declined").log
    assert log[:2] == [
        LogEvent(
            EventKind.STEP_REFUSED,
            "charge_payment",
            1,
            {"code": "payment_declined", "message": "no"},
        ),
        LogEvent(
            EventKind.COMPENSATION_STARTED, "", 0, {"code": "payment_declined", "message": "no"}
        ),
    ]


def test_a_step_that_stalls_is_logged_with_the_attempts_it_used() -> None:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    for attempt in (1, 2):
        run.fault("approve_order", attempt)
        run.feed(Tick(), at=run.state.steps["approve_order"].due)
    assert run.fault("approve_order", 3).log[1] == LogEvent(
        EventKind.STEP_STALLED, "approve_order", 3
    )


def test_a_compensation_that_stalls_is_logged_with_the_compensation_attempts_it_used() -> None:
    run = Run().started()
    run.feed(Cancel())
    run.fault("create_order", 1, compensation=True)
    run.feed(Tick(), at=run.state.steps["create_order"].due)
    assert run.fault("create_order", 2, compensation=True).log[1] == LogEvent(
        EventKind.STEP_STALLED, "create_order", 2
    )


def test_a_compensation_with_no_reply_is_resent_at_its_deadline_then_parks_the_saga() -> None:
    run = Run().started()
    run.feed(Cancel())
    start = run.now
    assert sorted(sends(run.feed(Tick(), at=start + DEADLINE))) == [
        (name, True, 2) for name in sorted(FIRST)
    ]
    assert sends(run.feed(Tick(), at=start + 3 * DEADLINE - 1)) == []
    decision = run.feed(Tick(), at=start + 3 * DEADLINE)
    assert sends(decision) == []
    assert [e for e in decision.log if e.kind == EventKind.STEP_STALLED] == [
        LogEvent(EventKind.STEP_STALLED, name, 2) for name in FIRST
    ]
    assert run.state.status is SagaStatus.STUCK
