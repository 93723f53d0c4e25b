"""The dashboard's pages: staff only through the admin's login, the saga timeline, and the
operator actions under CSRF protection with their result."""

from __future__ import annotations

import pytest
from django.test import Client

from sagas.core.state import step_log
from sagas.models import Saga
from tests.dashboard.builders import started_saga, user

pytestmark = pytest.mark.django_db


def staff_client(*, csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf_checks)
    client.force_login(user(staff=True))
    return client


def finish(saga: Saga, status: str) -> None:
    """Stand in for the workers: every step succeeded (completed) or the saga parked (stuck)."""
    steps = {
        name: dict(step, status="succeeded" if status == "completed" else step["status"])
        for name, step in step_log(saga.state).items()
    }
    state = dict(saga.state, status=status, steps=steps)
    if status == "stuck":  # the refund kept failing while turning back
        steps["charge_payment"].update(status="compensating", stalled=True, compensation_attempts=8)
        state["reason_code"] = "service_unavailable"
    Saga.objects.filter(id=saga.id).update(status=status, state=state)


def test_an_anonymous_visitor_is_sent_to_the_admin_login() -> None:
    answer = Client().get("/dashboard/")

    assert answer.status_code == 302
    assert answer["Location"] == "/admin/login/?next=/dashboard/"


def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_admin_login() -> None:
    client = Client()
    client.force_login(user(staff=False))

    assert client.get("/dashboard/").status_code == 302
    assert client.get(f"/dashboard/sagas/{started_saga().id}/").status_code == 302


def test_staff_see_counts_and_recent_sagas_server_rendered() -> None:
    saga = started_saga()

    page = staff_client().get("/dashboard/").content.decode()

    assert 'data-count="pending">1<' in page
    assert saga.correlation_id in page
    assert "sagas/dashboard/dashboard.js" in page


def test_the_list_follows_the_filters() -> None:
    shown, hidden = started_saga(), started_saga()

    page = staff_client().get("/dashboard/", {"q": shown.correlation_id}).content.decode()

    assert shown.correlation_id in page and hidden.correlation_id not in page


def test_the_static_files_of_the_page_are_served() -> None:
    client = staff_client()
    for name in ("dashboard.js", "dashboard.css"):
        answer = client.get(f"/static/sagas/dashboard/{name}")
        assert answer.status_code == 200


def test_a_saga_timeline_shows_its_parallel_steps_side_by_side() -> None:
    saga = started_saga()

    fragment = staff_client().get(f"/dashboard/sagas/{saga.id}/", {"fragment": 1}).content.decode()

    assert "3 steps in parallel" in fragment
    assert fragment.count('class="bar out-waiting"') == 3  # three attempts in flight at once
    assert "<html" not in fragment
    full = staff_client().get(f"/dashboard/sagas/{saga.id}/").content.decode()
    assert "<html" in full and "3 steps in parallel" in full


def test_an_action_without_the_csrf_token_is_refused() -> None:
    saga = started_saga()
    finish(saga, "stuck")

    answer = staff_client(csrf_checks=True).post(f"/dashboard/sagas/{saga.id}/retry/")

    assert answer.status_code == 403
    assert Saga.objects.get(id=saga.id).status == "stuck"


def test_retry_moves_a_stuck_saga_and_answers_what_it_did() -> None:
    saga = started_saga()
    finish(saga, "stuck")
    client = staff_client(csrf_checks=True)
    page = client.get(f"/dashboard/sagas/{saga.id}/")
    token = page.context["csrf_token"]

    answer = client.post(
        f"/dashboard/sagas/{saga.id}/retry/",
        {"csrfmiddlewaretoken": str(token)},
        headers={"Accept": "application/json"},
    )

    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "ok": True,
        "message": "Retry accepted: the saga is now compensating.",
        "status": "compensating",
    }
    assert Saga.objects.get(id=saga.id).status == "compensating"


def test_an_action_that_cannot_apply_shows_why() -> None:
    saga = started_saga()
    finish(saga, "completed")

    answer = staff_client().post(
        f"/dashboard/sagas/{saga.id}/compensate/", headers={"Accept": "application/json"}
    )

    assert answer.status_code == 409
    assert answer.json()["message"] == "Refused: the saga is already completed"


def test_without_a_script_an_action_comes_back_to_the_saga_with_its_result() -> None:
    saga = started_saga()

    client = staff_client()
    answer = client.post(f"/dashboard/sagas/{saga.id}/compensate/", follow=True)

    assert answer.redirect_chain[-1][0] == f"/dashboard/sagas/{saga.id}/"
    assert "Compensation accepted: the saga is now compensating." in answer.content.decode()


def test_an_unknown_saga_is_not_found() -> None:
    missing = "00000000-0000-0000-0000-000000000001"
    client = staff_client()

    assert client.get(f"/dashboard/sagas/{missing}/").status_code == 404
    answer = client.post(
        f"/dashboard/sagas/{missing}/retry/", headers={"Accept": "application/json"}
    )
    assert answer.status_code == 404
