"""The transition function, table-driven and without a database: given a state and an input,
expect these commands and this status."""

from __future__ import annotations

import itertools

import pytest

from sagas.core.definition import RetryPolicy, SagaDefinition, Step, StepKind
from sagas.core.state import SagaState, SagaStatus, StepStatus
from sagas.core.transition import Cancel, Decision, Input, Replied, Resume, Start, Tick, decide
from sagas.messages import Outcome

RETRY = RetryPolicy(max_attempts=3, initial_delay=1.0, multiplier=2.0, max_delay=10.0, jitter=0.0)
COMP_RETRY = RetryPolicy(max_attempts=2, initial_delay=1.0, jitter=0.0)
DEADLINE = 30.0


def order_definition() -> SagaDefinition:
    def step(
        name: str,
        action: str,
        comp: str | None,
        deps: tuple[str, ...] = (),
        kind: StepKind = StepKind.COMPENSATABLE,
    ) -> Step:
        return Step(name, action, comp, deps, kind, RETRY, COMP_RETRY, DEADLINE)

    return SagaDefinition(
        "order",
        (
            step("create_order", "orders.create", "orders.cancel"),
            step("reserve_stock", "inventory.reserve", "inventory.release"),
            step("charge_payment", "payments.charge", "payments.refund"),
            step(
                "schedule_shipment",
                "shipping.schedule",
                "shipping.cancel",
                ("create_order", "reserve_stock", "charge_payment"),
                StepKind.PIVOT,
            ),
            step(
                "approve_order", "orders.approve", None, ("schedule_shipment",), StepKind.RETRIABLE
            ),
        ),
    )


DEF = order_definition()
FIRST = ("create_order", "reserve_stock", "charge_payment")


class Run:
    """Feeds inputs one by one, keeping the state and the clock."""

    def __init__(self) -> None:
        self.state = SagaState.new(DEF)
        self.now = 1000.0
        self.last = Decision(self.state)

    def feed(self, event: Input, at: float | None = None) -> Decision:
        if at is not None:
            self.now = at
        self.last = decide(DEF, self.state, event, self.now, lambda: 0.5)
        self.state = self.last.state
        return self.last

    def ok(self, step: str, compensation: bool = False, attempt: int = 1) -> Decision:
        return self.feed(Replied(step, compensation, attempt, Outcome.OK))

    def refuse(self, step: str, code: str) -> Decision:
        return self.feed(Replied(step, False, 1, Outcome.REFUSED, code, "no"))

    def fault(self, step: str, attempt: int, compensation: bool = False) -> Decision:
        return self.feed(Replied(step, compensation, attempt, Outcome.FAULT, "Boom", "boom"))

    def step(self, name: str) -> StepStatus:
        return self.state.steps[name].status

    def started(self) -> Run:
        self.feed(Start())
        return self

    def at_pivot(self) -> Run:
        self.started()
        for name in FIRST:
            self.ok(name)
        return self


def sends(decision: Decision) -> list[tuple[str, bool, int]]:
    return [(s.step, s.compensation, s.attempt) for s in decision.sends]


def test_start_sends_the_independent_steps_together_and_stays_pending() -> None:
    decision = Run().feed(Start())
    assert sends(decision) == [(name, False, 1) for name in FIRST]
    assert decision.state.status is SagaStatus.PENDING
    assert all(decision.state.steps[n].due == 1000.0 + DEADLINE for n in FIRST)


def test_a_second_start_sends_nothing_more() -> None:
    run = Run().started()
    assert sends(run.feed(Start())) == []


def test_success_path_runs_shipment_after_all_three_then_approval_last() -> None:
    run = Run().started()
    assert sends(run.ok("create_order")) == []
    assert run.state.status is SagaStatus.RUNNING
    assert sends(run.ok("reserve_stock")) == []
    assert sends(run.ok("charge_payment")) == [("schedule_shipment", False, 1)]
    assert sends(run.ok("schedule_shipment")) == [("approve_order", False, 1)]
    run.ok("approve_order")
    assert run.state.status is SagaStatus.COMPLETED
    assert run.state.due is None
    assert [e.kind for e in run.last.log][-1] == "saga_completed"


@pytest.mark.parametrize("order", list(itertools.permutations(FIRST)))
def test_replies_in_any_order_lead_to_the_same_shipment(order: tuple[str, ...]) -> None:
    run = Run().started()
    sent = [s for name in order for s in sends(run.ok(name))]
    assert sent == [("schedule_shipment", False, 1)]


@pytest.mark.parametrize(
    ("refused", "code"),
    [
        ("create_order", "invalid_order"),
        ("reserve_stock", "out_of_stock"),
        ("charge_payment", "payment_declined"),
        ("charge_payment", "insufficient_funds"),
    ],
)
def test_a_refusal_before_the_pivot_compensates_every_other_step_sent(
    refused: str, code: str
) -> None:
    run = Run().started()
    decision = run.refuse(refused, code)
    others = [n for n in FIRST if n != refused]
    # In-flight steps are compensated at once: the service tombstones a compensation that wins.
    assert sends(decision) == [(n, True, 1) for n in reversed(others)]
    assert run.state.status is SagaStatus.COMPENSATING
    assert run.step(refused) is StepStatus.REFUSED
    assert run.step("schedule_shipment") is StepStatus.SKIPPED
    for name in others:
        run.ok(name, compensation=True)
    assert run.state.status is SagaStatus.FAILED
    assert (run.state.reason_code, run.state.reason_message) == (code, "no")


def test_a_refused_pivot_compensates_the_three_first_steps() -> None:
    run = Run().at_pivot()
    decision = run.refuse("schedule_shipment", "shipping_unavailable")
    assert sorted(sends(decision)) == sorted((n, True, 1) for n in FIRST)
    assert run.step("approve_order") is StepStatus.SKIPPED
    for name in FIRST:
        run.ok(name, compensation=True)
    assert run.state.status is SagaStatus.FAILED
    assert run.state.reason_code == "shipping_unavailable"


def test_compensations_run_children_before_parents() -> None:
    run = Run().at_pivot()
    # The pivot is in flight when the operator cancels: it is undone first, then its parents.
    decision = run.feed(Cancel())
    assert sends(decision) == [("schedule_shipment", True, 1)]
    decision = run.ok("schedule_shipment", compensation=True)
    assert sorted(sends(decision)) == sorted((n, True, 1) for n in FIRST)
    assert run.state.reason_code == "cancelled"


def test_a_fault_is_retried_after_backoff_with_the_same_step() -> None:
    run = Run().started()
    decision = run.fault("charge_payment", attempt=1)
    assert sends(decision) == []
    assert run.state.steps["charge_payment"].due == 1000.0 + 1.0  # initial delay, no jitter
    assert sends(run.feed(Tick(), at=1000.5)) == []  # not due yet
    assert sends(run.feed(Tick(), at=1001.0)) == [("charge_payment", False, 2)]
    run.fault("charge_payment", attempt=2)
    assert run.state.steps["charge_payment"].due == 1001.0 + 2.0  # doubled


def test_retries_exhausted_fail_the_saga_with_service_unavailable_and_compensate_the_step() -> None:
    run = Run().started()
    run.ok("create_order")
    run.ok("reserve_stock")
    for attempt in (1, 2):
        run.fault("charge_payment", attempt)
        run.feed(Tick(), at=run.state.steps["charge_payment"].due)
    decision = run.fault("charge_payment", 3)
    # The step may have committed on the service: it is compensated too (tombstone if not).
    assert sorted(sends(decision)) == sorted((n, True, 1) for n in FIRST)
    assert run.state.reason_code == "service_unavailable"
    for name in FIRST:
        run.ok(name, compensation=True)
    assert run.state.status is SagaStatus.FAILED


def test_no_reply_before_the_deadline_resends_the_same_command_waiting_longer_then_gives_up() -> (
    None
):
    run = Run().started()
    start = run.now
    assert sends(run.feed(Tick(), at=start + DEADLINE - 1)) == []
    resent = sends(run.feed(Tick(), at=start + DEADLINE))
    assert resent == [(n, False, 2) for n in FIRST]
    # The second send waits two deadlines: a queue running behind is not sent a copy each time.
    assert sends(run.feed(Tick(), at=start + 3 * DEADLINE - 1)) == []
    assert sends(run.feed(Tick(), at=start + 3 * DEADLINE)) == [(n, False, 3) for n in FIRST]
    assert sends(run.feed(Tick(), at=start + 7 * DEADLINE - 1)) == []
    decision = run.feed(Tick(), at=start + 7 * DEADLINE)
    assert run.state.reason_code == "service_unavailable"
    assert sorted(sends(decision)) == sorted((n, True, 1) for n in FIRST)


def test_the_wait_for_a_reply_doubles_at_each_send_up_to_four_deadlines() -> None:
    step = DEF.step("charge_payment")
    assert [step.deadline_of(send) for send in range(1, 6)] == [
        DEADLINE,
        2 * DEADLINE,
        4 * DEADLINE,
        4 * DEADLINE,
        4 * DEADLINE,
    ]


def test_a_retry_after_a_fault_waits_for_its_reply_as_a_second_send_does() -> None:
    run = Run().started()
    run.fault("charge_payment", 1)
    run.feed(Tick(), at=run.state.steps["charge_payment"].due)
    assert run.state.steps["charge_payment"].due == run.now + 2 * DEADLINE


def test_an_operator_resume_starts_the_waits_again_from_one_deadline() -> None:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    for attempt in (1, 2, 3):
        run.fault("approve_order", attempt)
        run.feed(Tick(), at=run.state.steps["approve_order"].due or run.now)
    assert run.state.status is SagaStatus.STUCK
    assert sends(run.feed(Resume())) == [("approve_order", False, 4)]
    assert run.state.steps["approve_order"].due == run.now + DEADLINE


def test_a_stale_fault_from_an_earlier_attempt_is_ignored() -> None:
    run = Run().started()
    run.feed(Tick(), at=run.now + DEADLINE)  # everything resent as attempt 2
    due = run.state.steps["charge_payment"].due
    run.fault("charge_payment", attempt=1)
    assert run.state.steps["charge_payment"].due == due
    assert run.last.log[0].kind == "reply_ignored"


def test_a_success_from_an_earlier_attempt_counts() -> None:
    run = Run().started()
    run.feed(Tick(), at=run.now + DEADLINE)
    run.ok("create_order", attempt=1)
    assert run.step("create_order") is StepStatus.SUCCEEDED


def test_duplicate_replies_change_nothing() -> None:
    run = Run().started()
    run.ok("create_order")
    before = run.state.to_json()
    decision = run.ok("create_order")
    assert decision.state.to_json()["steps"] == before["steps"]
    assert sends(decision) == []
    assert decision.log[0].kind == "reply_ignored"


def test_a_late_success_for_a_step_being_compensated_is_ignored() -> None:
    run = Run().started()
    run.refuse("charge_payment", "payment_declined")
    decision = run.ok("reserve_stock")  # the action won the race; its compensation undoes it
    assert run.step("reserve_stock") is StepStatus.COMPENSATING
    assert sends(decision) == []
    run.ok("reserve_stock", compensation=True)
    run.ok("create_order", compensation=True)
    assert run.state.status is SagaStatus.FAILED
    assert sends(run.ok("create_order", attempt=1)) == []
    assert run.state.status is SagaStatus.FAILED


def test_a_compensation_that_keeps_failing_parks_the_saga_as_stuck_until_an_operator_retries() -> (
    None
):
    run = Run().started()
    run.refuse("charge_payment", "payment_declined")
    run.ok("create_order", compensation=True)
    run.fault("reserve_stock", attempt=1, compensation=True)
    assert sends(run.feed(Tick(), at=run.state.steps["reserve_stock"].due)) == [
        ("reserve_stock", True, 2)
    ]
    run.fault("reserve_stock", attempt=2, compensation=True)
    assert run.state.status is SagaStatus.STUCK
    assert run.state.due is None
    assert sends(run.feed(Tick(), at=run.now + 1000)) == []
    decision = run.feed(Resume())
    assert sends(decision) == [("reserve_stock", True, 3)]
    assert run.state.status is SagaStatus.COMPENSATING
    run.ok("reserve_stock", compensation=True, attempt=3)
    assert run.state.status is SagaStatus.FAILED


def test_past_the_pivot_a_failing_step_is_retried_then_stuck_never_compensated() -> None:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    run.feed(Replied("approve_order", False, 1, Outcome.REFUSED, "nope"))
    assert run.state.status is SagaStatus.RUNNING  # a refusal is treated as a fault here
    for attempt in (2, 3):
        assert sends(run.feed(Tick(), at=run.state.steps["approve_order"].due)) == [
            ("approve_order", False, attempt)
        ]
        run.fault("approve_order", attempt)
    assert run.state.status is SagaStatus.STUCK
    assert run.state.reason_code is None
    assert not [s for s in run.last.sends if s.compensation]
    assert run.feed(Cancel()).rejected
    assert sends(run.feed(Resume())) == [("approve_order", False, 4)]
    run.ok("approve_order", attempt=4)
    assert run.state.status is SagaStatus.COMPLETED


def test_cancel_is_idempotent_and_refused_once_completed() -> None:
    run = Run().started()
    first = run.feed(Cancel())
    assert len(first.sends) == 3
    again = run.feed(Cancel())
    assert (again.sends, again.log, again.rejected) == ([], [], "")
    done = Run().at_pivot()
    done.ok("schedule_shipment")
    done.ok("approve_order")
    assert done.feed(Cancel()).rejected == "the saga is already completed"


def test_cancelling_a_saga_an_operator_cancelled_repeats_even_once_it_has_failed() -> None:
    run = Run().started()
    run.feed(Cancel())
    for name in FIRST:
        run.ok(name, compensation=True)
    assert run.state.status is SagaStatus.FAILED
    before = run.state.to_json()
    decision = run.feed(Cancel())
    assert (decision.sends, decision.log, decision.rejected) == ([], [], "")
    assert run.state.to_json() == before


def test_cancelling_a_saga_turning_back_for_another_reason_is_rejected() -> None:
    run = Run().started()
    run.refuse("charge_payment", "payment_declined")
    before = run.state.to_json()
    assert run.feed(Cancel()).rejected == "the saga is already turning back (payment_declined)"
    assert run.state.to_json() == before
    run.ok("create_order", compensation=True)
    run.ok("reserve_stock", compensation=True)
    assert run.state.status is SagaStatus.FAILED
    assert run.feed(Cancel()).rejected == "the saga has already failed (payment_declined)"


def test_resuming_a_saga_that_was_never_stuck_is_rejected_and_changes_nothing() -> None:
    run = Run().started()
    before = run.state.to_json()
    decision = run.feed(Resume())
    assert decision.rejected == "the saga is pending, not stuck: nothing to retry"
    assert (decision.sends, decision.log) == ([], [])
    assert run.state.to_json() == before


def test_resuming_a_finished_saga_is_rejected() -> None:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    run.ok("approve_order")
    assert run.feed(Resume()).rejected == "the saga is completed, not stuck: nothing to retry"


def stuck_past_the_pivot() -> Run:
    run = Run().at_pivot()
    run.ok("schedule_shipment")
    for attempt in (1, 2, 3):
        if attempt > 1:
            run.feed(Tick(), at=run.state.steps["approve_order"].due)
        run.fault("approve_order", attempt)
    assert run.state.status is SagaStatus.STUCK
    return run


def test_resuming_again_while_the_resumed_saga_is_in_flight_repeats_then_is_rejected_once_done() -> (
    None
):
    run = stuck_past_the_pivot()
    assert sends(run.feed(Resume())) == [("approve_order", False, 4)]
    before = run.state.to_json()
    again = run.feed(Resume())
    assert (again.sends, again.log, again.rejected) == ([], [], "")
    assert run.state.to_json() == before
    run.ok("approve_order", attempt=4)
    assert run.feed(Resume()).rejected == "the saga is completed, not stuck: nothing to retry"


def test_resuming_a_stuck_saga_with_no_stalled_step_settles_its_status_again() -> None:
    """The store parks a saga it could not process as stuck; a resume puts it back to work."""
    run = Run().started()
    run.ok("create_order")
    run.state.status = SagaStatus.STUCK
    decision = run.feed(Resume())
    assert not decision.rejected
    assert run.state.status is SagaStatus.RUNNING
    assert [e.kind for e in decision.log] == ["saga_running"]


def test_state_survives_a_json_round_trip() -> None:
    run = Run().started()
    run.refuse("charge_payment", "payment_declined")
    assert SagaState.from_json(run.state.to_json()) == run.state


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ((Step("a", "x.a"),), "needs a compensation"),
        ((Step("a", "x.a", "x.b"), Step("a", "x.c", "x.d")), "duplicate"),
        ((Step("b", "x.a", "x.b", ("a",)),), "must be listed before"),
        (
            (Step("a", "x.a", "x.b", ("b",)), Step("b", "x.c", "x.d", ("a",))),
            "must be listed before",
        ),
        (
            (Step("a", "x.a", "x.b", kind=StepKind.PIVOT), Step("b", "x.c", kind=StepKind.PIVOT)),
            "at most one pivot",
        ),
        (
            (Step("a", "x.a", "x.b"), Step("r", "x.r", None, ("a",), StepKind.RETRIABLE)),
            "follow the pivot",
        ),
    ],
)
def test_invalid_definitions_name_the_rule_they_break(steps: tuple[Step, ...], error: str) -> None:
    problems = SagaDefinition("bad", steps).problems()
    assert len(problems) == 1
    assert error in problems[0]


def test_a_valid_definition_has_no_problems() -> None:
    assert DEF.problems() == []


def test_backoff_grows_is_capped_and_jitters_within_bounds() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.2
    )
    assert [policy.delay(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(1, 0.0) == pytest.approx(0.8)
    assert policy.delay(1, 0.999999) == pytest.approx(1.2, abs=1e-5)
