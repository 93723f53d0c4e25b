"""The operators' endpoints: list with filters, the step log and timeline, retry, compensate."""

from __future__ import annotations

from typing import Any

import pytest

from sagas.core.state import step_log
from sagas.models import Saga, SagaEvent
from tests.api.builders import client_for, order_body, place, product, user

pytestmark = pytest.mark.django_db


def started_order() -> dict[str, Any]:
    product("MUG-002")
    return dict(place(client_for(user()), order_body()).json())


def mark(saga_id: str, status: str, reason: str | None = None) -> None:
    """Stand in for the workers: put the saga (and its state) in `status`, turned back for
    `reason` if given (a reason already set is kept)."""
    saga = Saga.objects.get(id=saga_id)
    steps = {
        name: dict(step, status="succeeded") if status == "completed" else step
        for name, step in step_log(saga.state).items()
    }
    reason = reason or saga.state.get("reason_code")
    Saga.objects.filter(id=saga_id).update(
        status=status,
        reason_code=reason or "",
        state=dict(saga.state, status=status, steps=steps, reason_code=reason),
    )


def make_stuck(saga_id: str) -> None:
    """Stand in for the workers: the charge ran out of attempts where the saga cannot give up."""
    saga = Saga.objects.get(id=saga_id)
    steps = step_log(saga.state)
    steps["charge_payment"].update(stalled=True, due=None)
    Saga.objects.filter(id=saga_id).update(
        status="stuck", state=dict(saga.state, status="stuck", steps=steps)
    )


def events_of(saga_id: str) -> int:
    return SagaEvent.objects.filter(saga_id=saga_id).count()


def test_sagas_are_listed_newest_first_and_paginated() -> None:
    first, second = started_order(), started_order()
    staff = client_for(user(staff=True))

    page = staff.get("/api/sagas/", {"limit": 1}).json()

    assert page["count"] == 2
    assert [saga["id"] for saga in page["results"]] == [second["saga_id"]]
    rest = staff.get("/api/sagas/", {"limit": 1, "offset": 1}).json()
    assert [saga["id"] for saga in rest["results"]] == [first["saga_id"]]


def test_sagas_are_filtered_by_status_and_type() -> None:
    done, running = started_order(), started_order()
    mark(done["saga_id"], "completed")
    staff = client_for(user(staff=True))

    completed = staff.get("/api/sagas/", {"status": "completed"}).json()["results"]
    pending = staff.get("/api/sagas/", {"status": "pending", "type": "order"}).json()["results"]
    other_type = staff.get("/api/sagas/", {"type": "refund"}).json()["results"]

    assert [saga["id"] for saga in completed] == [done["saga_id"]]
    assert [saga["id"] for saga in pending] == [running["saga_id"]]
    assert other_type == []


@pytest.mark.parametrize("query", [{"status": "finished"}, {"status": ""}, {"type": ""}])
def test_an_unknown_filter_value_is_refused(query: dict[str, str]) -> None:
    answer = client_for(user(staff=True)).get("/api/sagas/", query)

    assert answer.status_code == 400
    assert set(answer.json()["fields"]) == set(query)


def test_the_saga_detail_has_the_step_log_and_the_event_timeline_in_order() -> None:
    order = started_order()

    detail = client_for(user(staff=True)).get(f"/api/sagas/{order['saga_id']}/").json()

    assert detail["id"] == order["saga_id"]
    assert detail["correlation_id"] == order["order_id"]
    steps = {step["name"]: step for step in detail["steps"]}
    assert steps["charge_payment"]["status"] == "running"
    assert steps["charge_payment"]["attempts"] == 1
    assert steps["charge_payment"]["compensation_attempts"] == 0
    assert steps["schedule_shipment"]["kind"] == "pivot"
    events = SagaEvent.objects.filter(saga_id=order["saga_id"]).order_by("id")
    assert [event["id"] for event in detail["events"]] == [event.id for event in events]
    assert detail["events"][0]["kind"] == "saga_started"


def test_an_unknown_saga_is_not_found() -> None:
    answer = client_for(user(staff=True)).get("/api/sagas/4f7c1c2e-7d55-4b8e-9a51-0b1f5f6d8c11/")

    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


def test_compensating_turns_the_saga_back_and_repeating_it_answers_the_same() -> None:
    order = started_order()
    staff = client_for(user(staff=True))
    url = f"/api/sagas/{order['saga_id']}/compensate/"

    first = staff.post(url)
    events_after_first = SagaEvent.objects.filter(saga_id=order["saga_id"]).count()
    again = staff.post(url)

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "compensating"
    assert first.json()["reason"]["code"] == "cancelled"
    assert again.json() == first.json()
    assert SagaEvent.objects.filter(saga_id=order["saga_id"]).count() == events_after_first


def test_compensating_a_completed_saga_is_a_conflict() -> None:
    order = started_order()
    mark(order["saga_id"], "completed")

    answer = client_for(user(staff=True)).post(f"/api/sagas/{order['saga_id']}/compensate/")

    assert answer.status_code == 409
    assert answer.json()["code"] == "action_rejected"
    assert Saga.objects.get(id=order["saga_id"]).status == "completed"


def test_compensating_a_saga_an_operator_cancelled_answers_200_even_once_it_has_failed() -> None:
    order = started_order()
    staff = client_for(user(staff=True))
    url = f"/api/sagas/{order['saga_id']}/compensate/"
    staff.post(url)
    mark(order["saga_id"], "failed")
    events = events_of(order["saga_id"])

    again = staff.post(url)

    assert again.status_code == 200
    assert (again.json()["status"], again.json()["reason"]["code"]) == ("failed", "cancelled")
    assert events_of(order["saga_id"]) == events


@pytest.mark.parametrize("status", ["compensating", "failed"])
def test_compensating_a_saga_turned_back_by_a_refusal_is_a_conflict(status: str) -> None:
    order = started_order()
    mark(order["saga_id"], status, reason="payment_declined")
    events = events_of(order["saga_id"])

    answer = client_for(user(staff=True)).post(f"/api/sagas/{order['saga_id']}/compensate/")

    assert answer.status_code == 409
    assert answer.json()["code"] == "action_rejected"
    assert "payment_declined" in answer.json()["message"]
    saga = Saga.objects.get(id=order["saga_id"])
    assert (saga.status, saga.reason_code) == (status, "payment_declined")
    assert events_of(order["saga_id"]) == events


@pytest.mark.parametrize("status", ["pending", "running", "completed", "failed"])
def test_retrying_a_saga_that_is_not_stuck_is_a_conflict_and_changes_nothing(status: str) -> None:
    order = started_order()
    mark(order["saga_id"], status)
    before = Saga.objects.get(id=order["saga_id"])
    events = events_of(order["saga_id"])

    answer = client_for(user(staff=True)).post(f"/api/sagas/{order['saga_id']}/retry/")

    assert answer.status_code == 409
    assert answer.json() == {
        "code": "action_rejected",
        "message": f"the saga is {status}, not stuck: nothing to retry",
    }
    after = Saga.objects.get(id=order["saga_id"])
    assert (after.status, after.state, after.fence) == (before.status, before.state, before.fence)
    assert events_of(order["saga_id"]) == events


def test_retrying_a_stuck_saga_resumes_its_stalled_step() -> None:
    order = started_order()
    make_stuck(order["saga_id"])

    answer = client_for(user(staff=True)).post(f"/api/sagas/{order['saga_id']}/retry/")

    assert answer.status_code == 200
    assert answer.json()["status"] != "stuck"
    kinds = set(SagaEvent.objects.filter(saga_id=order["saga_id"]).values_list("kind", flat=True))
    assert "step_resumed" in kinds


def test_retrying_again_while_the_retried_saga_runs_answers_200_as_it_is() -> None:
    order = started_order()
    make_stuck(order["saga_id"])
    staff = client_for(user(staff=True))
    url = f"/api/sagas/{order['saga_id']}/retry/"
    first = staff.post(url)
    events = events_of(order["saga_id"])
    fence = Saga.objects.get(id=order["saga_id"]).fence

    again = staff.post(url)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert events_of(order["saga_id"]) == events
    assert Saga.objects.get(id=order["saga_id"]).fence == fence


def test_an_action_on_an_unknown_saga_is_not_found() -> None:
    staff = client_for(user(staff=True))

    for action in ("retry", "compensate"):
        answer = staff.post(f"/api/sagas/4f7c1c2e-7d55-4b8e-9a51-0b1f5f6d8c11/{action}/")
        assert answer.status_code == 404
        assert answer.json()["code"] == "not_found"
