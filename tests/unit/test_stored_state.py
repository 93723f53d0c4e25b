"""The saga's stored state: each step a short list of its fields, read back whole, and the dict
forms of older rows still read."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sagas.core.state import STORED_ORDER, SagaState, SagaStatus, StepState, StepStatus, step_log

step_states = st.builds(
    StepState,
    status=st.sampled_from(StepStatus),
    attempts=st.integers(0, 9),
    retry_base=st.integers(0, 9),
    compensation_attempts=st.integers(0, 9),
    compensation_base=st.integers(0, 9),
    due=st.none() | st.floats(0, 2e9, allow_nan=False),
    stalled=st.booleans(),
    error=st.sampled_from(["", "payment_declined", "TimeoutError"]),
)
saga_states = st.builds(
    SagaState,
    status=st.sampled_from(SagaStatus),
    steps=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), step_states, min_size=1),
    reason_code=st.none() | st.sampled_from(["", "cancelled", "out_of_stock"]),
    reason_message=st.sampled_from(["", "no stock"]),
)


@given(saga_states)
def test_every_state_reads_back_as_it_was_through_json(state: SagaState) -> None:
    stored = json.loads(json.dumps(state.to_json()))  # as the jsonb column gives it back

    assert SagaState.from_json(stored) == state
    logged = step_log(stored)
    assert {
        name: StepState(**{**step, "status": StepStatus(step["status"])})
        for name, step in logged.items()
    } == state.steps


def test_a_step_is_stored_as_its_fields_in_order_without_the_defaults_at_the_end() -> None:
    state = SagaState(
        SagaStatus.COMPENSATING,
        {
            "pending": StepState(),
            "sent": StepState(StepStatus.RUNNING, attempts=1, due=1795000000.25),
            "done": StepState(StepStatus.SUCCEEDED, attempts=1),
            "refused": StepState(StepStatus.REFUSED, attempts=2, error="payment_declined"),
            "undoing": StepState(StepStatus.COMPENSATING, attempts=1, compensation_attempts=1),
        },
        "payment_declined",
    )

    assert state.to_json()["steps"] == {
        "pending": ["pending"],
        "sent": ["running", 1, 1795000000.25],
        "done": ["succeeded", 1],
        "refused": ["refused", 2, None, "payment_declined"],
        "undoing": ["compensating", 1, None, "", False, 1],
    }
    assert STORED_ORDER[:3] == ("status", "attempts", "due")


def test_a_saga_that_has_not_turned_back_stores_no_reason() -> None:
    forward = SagaState(SagaStatus.RUNNING, {"a": StepState()})
    back = SagaState(SagaStatus.COMPENSATING, {"a": StepState()}, "out_of_stock", "no stock")

    assert forward.to_json() == {"status": "running", "steps": {"a": ["pending"]}}
    assert back.to_json()["reason_code"] == "out_of_stock"
    assert back.to_json()["reason_message"] == "no stock"
    assert SagaState.from_json(forward.to_json()).reason_code is None


def test_the_dict_forms_of_older_rows_are_read() -> None:
    sparse = {"status": "running", "attempts": 1, "due": 5.0}  # fields away from the defaults
    whole = {
        "status": "succeeded",
        "attempts": 2,
        "retry_base": 1,
        "compensation_attempts": 0,
        "compensation_base": 0,
        "due": None,
        "stalled": False,
        "error": "",
    }
    stored = {
        "status": "running",
        "reason_code": None,
        "reason_message": "",
        "steps": {"a": sparse, "b": whole, "c": ["pending"]},
    }

    state = SagaState.from_json(stored)

    assert state.steps["a"] == StepState(StepStatus.RUNNING, attempts=1, due=5.0)
    assert state.steps["b"] == StepState(StepStatus.SUCCEEDED, attempts=2, retry_base=1)
    assert state.steps["c"] == StepState()
    assert step_log(stored)["a"]["compensation_attempts"] == 0
    assert step_log(stored)["c"] == step_log({"steps": {"c": {"status": "pending"}}})["c"]
