"""Versioned saga definitions in the engine: a saga starts with its type's latest version and is
decided by that version to the end, whatever is registered later; a saga whose version is not
registered is parked, not fatal (docs/architecture.md §10)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.db import connection
from django.test import Client
from django.utils import timezone

from orders.saga import ORDER_SAGA
from sagas import checks, registry, store, transport
from sagas.core.definition import SagaDefinition, StepKind
from sagas.core.state import SagaStatus, step_log
from sagas.exceptions import SagaActionRejected
from sagas.messages import Outcome, Reply
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.services import retry_saga, start_saga
from tests.api.builders import client_for, user
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

V1_STEPS = ["create_order", "reserve_stock", "charge_payment", "schedule_shipment", "approve_order"]


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql", "these tests need PostgreSQL (set DATABASE_URL)"


def order_saga_v2(v1: SagaDefinition) -> SagaDefinition:
    """Version 1 plus a step after the approval. Its command is one the Order Service handles,
    so the checks pass; these tests answer every command themselves."""
    approve = v1.step("approve_order")
    confirm = replace(approve, name="confirm_order", depends_on=("approve_order",))
    assert confirm.kind is StepKind.RETRIABLE
    return replace(v1, version=2, steps=(*v1.steps, confirm))


@pytest.fixture
def v2_registered() -> Iterator[SagaDefinition]:
    v1 = registry.definition(ORDER_SAGA, 1)
    v2 = order_saga_v2(v1)
    registry.register(v2)
    try:
        yield v2
    finally:
        registry.unregister(ORDER_SAGA, 2)


def start_order() -> Saga:
    return start_saga(
        saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id=str(uuid.uuid4())
    )


def answers_to_every_running_step(saga_ids: list[uuid.UUID]) -> list[Reply]:
    """Stand in for the services: every step sent and not answered yet succeeds."""
    return [
        Reply(str(saga.id), name, False, step["attempts"], Outcome.OK)
        for saga in Saga.objects.filter(id__in=saga_ids)
        for name, step in step_log(saga.state).items()
        if step["status"] == "running"
    ]


def answer_every_running_step(saga_ids: list[uuid.UUID]) -> None:
    transport.deliver(answers_to_every_running_step(saga_ids))


def run_to_the_end(saga_ids: list[uuid.UUID]) -> None:
    for _ in range(10):
        if all(s.status == SagaStatus.COMPLETED for s in Saga.objects.filter(id__in=saga_ids)):
            return
        answer_every_running_step(saga_ids)
        store.process("w", store.claim("w", 10, 30))


def sent_steps(saga: Saga) -> list[str]:
    return list(
        SagaEvent.objects.filter(saga=saga, kind="step_sent")
        .order_by("id")
        .values_list("step", flat=True)
    )


def test_the_order_service_registers_version_1_and_new_orders_start_with_it() -> None:
    assert registry.versions(ORDER_SAGA) == [1]

    saga = start_order()

    assert saga.version == 1
    assert Saga.objects.get(id=saga.id).version == 1


def test_a_saga_starts_with_the_latest_version_and_records_it(
    v2_registered: SagaDefinition,
) -> None:
    saga = start_order()

    stored = Saga.objects.get(id=saga.id)
    assert stored.version == 2
    assert set(stored.state["steps"]) == {*V1_STEPS, "confirm_order"}


def test_sagas_of_both_versions_finish_each_with_its_own_steps(
    v2_registered: SagaDefinition,
) -> None:
    registry.unregister(ORDER_SAGA, 2)
    old = start_order()  # before the new version is deployed
    registry.register(v2_registered)
    new = start_order()

    run_to_the_end([old.id, new.id])

    old, new = Saga.objects.get(id=old.id), Saga.objects.get(id=new.id)
    assert (old.version, old.status) == (1, "completed")
    assert (new.version, new.status) == (2, "completed")
    assert set(old.state["steps"]) == set(V1_STEPS)
    assert sorted(sent_steps(old)) == sorted(V1_STEPS)
    assert sorted(sent_steps(new)) == sorted([*V1_STEPS, "confirm_order"])
    assert sent_steps(new)[-1] == "confirm_order"


def test_a_saga_of_an_unregistered_version_is_parked_with_an_engine_error_and_the_batch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost, fine = start_order(), start_order()
    Saga.objects.filter(id=lost.id).update(version=3)
    Saga.objects.filter(id__in=[lost.id, fine.id]).update(due_at=timezone.now())
    # The replies wait in the inbox, as for a saga a worker held when they landed.
    SagaReply.objects.bulk_create(
        [SagaReply.from_reply(reply) for reply in answers_to_every_running_step([fine.id])]
    )

    assert store.process("w", store.claim("w", 10, 30)) == 2

    lost, fine = Saga.objects.get(id=lost.id), Saga.objects.get(id=fine.id)
    assert (lost.status, lost.due_at) == ("stuck", None)
    error = SagaEvent.objects.get(saga=lost, kind="engine_error").detail["error"]
    assert "saga type 'order' has no version 3 registered (registered: v1)" in error
    assert fine.status == "running"
    assert step_log(fine.state)["schedule_shipment"]["status"] == "running"


def test_an_operator_action_on_a_saga_of_an_unregistered_version_is_rejected_with_a_409() -> None:
    saga = start_order()
    Saga.objects.filter(id=saga.id).update(version=3, status="stuck")

    with pytest.raises(SagaActionRejected, match="no version 3 registered"):
        retry_saga(saga_id=saga.id)
    answer = client_for(user(staff=True)).post(f"/api/sagas/{saga.id}/compensate/")

    assert answer.status_code == 409
    assert answer.json()["code"] == "action_rejected"
    assert Saga.objects.get(id=saga.id).status == "stuck"


def test_the_api_admin_and_dashboard_show_the_version(v2_registered: SagaDefinition) -> None:
    saga = start_order()
    staff = client_for(user(staff=True))
    operator = Client()
    operator.force_login(User.objects.create_superuser("operator", password=None))

    detail = staff.get(f"/api/sagas/{saga.id}/").json()
    listed = staff.get("/api/sagas/").json()["results"]
    admin_page = operator.get(f"/admin/sagas/saga/{saga.id}/change/").content.decode()
    dashboard = operator.get(f"/dashboard/sagas/{saga.id}/").content.decode()

    assert detail["version"] == listed[0]["version"] == 2
    assert {s["name"] for s in detail["steps"]} == {*V1_STEPS, "confirm_order"}
    assert re.search(r"Version:</label>\s*<div class=\"readonly\">2</div>", admin_page)
    assert 'title="definition version">v2<' in dashboard


def test_the_checks_cover_every_registered_version(v2_registered: SagaDefinition) -> None:
    broken = replace(v2_registered, version=3, steps=(v2_registered.steps[-1],))
    registry.register(broken)
    try:
        messages = run_checks(tags=[checks.TAG])
    finally:
        registry.unregister(ORDER_SAGA, 3)

    assert {m.id for m in messages} == {"sagas.E002"}
    assert all(m.msg.startswith("order v3:") for m in messages)
