"""The saga admin reads well for an operator: newest sagas first; a saga's page shows its steps
as a table and its timeline to the millisecond, with the raw JSON folded away below them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains

from sagas.core.state import step_log
from sagas.models import Saga, SagaEvent
from sagas.services import start_saga

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def order_saga(saga_id: uuid.UUID | None = None) -> Saga:
    order_id = str(uuid.uuid4())
    data: dict[str, Any] = {
        "order_id": order_id,
        "user_id": 1,
        "lines": [],
        "total": "10.00",
        "currency": "EUR",
        "payment_token": "pm_visible_only_in_the_raw_json",
        "shipping_address": {},
    }
    return start_saga(saga_type="order", data=data, correlation_id=order_id, saga_id=saga_id)


def charged_in_35_ms_and_refused_stock() -> Saga:
    """A saga whose charge took 35 ms and whose stock reservation was refused after 12 ms, both
    sent at T0."""
    saga = order_saga()
    SagaEvent.objects.filter(saga=saga).update(at=T0)
    SagaEvent.objects.create(
        saga=saga,
        at=T0 + timedelta(milliseconds=12),
        kind="step_refused",
        step="reserve_stock",
        attempt=1,
        detail={"code": "out_of_stock"},
    )
    SagaEvent.objects.create(
        saga=saga,
        at=T0 + timedelta(milliseconds=35),
        kind="step_succeeded",
        step="charge_payment",
        attempt=1,
    )
    steps = step_log(saga.state)
    steps["charge_payment"].update(status="succeeded")
    steps["reserve_stock"].update(status="refused", error="out_of_stock")
    saga.state = dict(saga.state, steps=steps)
    Saga.objects.filter(id=saga.id).update(state=saga.state)
    return saga


def page(client: Client, saga: Saga) -> Any:
    response = client.get(reverse("admin:sagas_saga_change", args=[saga.pk]))
    assert response.status_code == 200
    return response


def test_the_saga_list_shows_the_newest_first(admin_client: Client) -> None:
    # The newest has the smallest id: the admin's default order (by id) would show it last.
    sagas = [order_saga(uuid.UUID(int=age + 1)) for age in range(3)]
    for age, saga in enumerate(sagas):
        Saga.objects.filter(id=saga.id).update(created_at=T0 - timedelta(minutes=age))

    content = admin_client.get(reverse("admin:sagas_saga_changelist")).content.decode()

    positions = [content.index(str(saga.id)) for saga in sagas]
    assert positions == sorted(positions)


def test_the_timeline_shows_each_event_to_the_millisecond(admin_client: Client) -> None:
    saga = charged_in_35_ms_and_refused_stock()

    response = page(admin_client, saga)

    cell = '<td class="nowrap">{}</td>'
    assertContains(response, cell.format("2026-01-02 03:04:05.678"), html=True)  # step_sent
    assertContains(response, cell.format("2026-01-02 03:04:05.713"), html=True)  # step_succeeded
    assertContains(response, cell.format("+35 ms"), html=True)  # since the saga started
    assertContains(response, '<th scope="col">at (UTC)</th>', html=True)


def test_the_steps_are_a_table_of_kind_status_attempts_last_error_and_duration(
    admin_client: Client,
) -> None:
    saga = charged_in_35_ms_and_refused_stock()

    response = page(admin_client, saga)

    for column in ("step", "kind", "status", "attempts", "last error", "duration"):
        assertContains(response, f'<th scope="col">{column}</th>', html=True)
    row = "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>0</td><td>{}</td><td>{}</td></tr>"
    assertContains(
        response,
        row.format("charge_payment", "compensatable", "succeeded", 1, "—", "35 ms"),
        html=True,
    )
    assertContains(
        response,
        row.format("reserve_stock", "compensatable", "refused", 1, "out_of_stock", "12 ms"),
        html=True,
    )
    assertContains(
        response, row.format("schedule_shipment", "pivot", "pending", 0, "—", "—"), html=True
    )
    content = response.content.decode()
    order = [
        "create_order",
        "reserve_stock",
        "charge_payment",
        "schedule_shipment",
        "approve_order",
    ]
    rows = [content.index(f"<td>{name}</td>") for name in order]
    assert rows == sorted(rows)  # the definition's order, whatever the JSON's


def test_the_raw_json_is_folded_away_below_the_readable_views(admin_client: Client) -> None:
    saga = charged_in_35_ms_and_refused_stock()

    content = page(admin_client, saga).content.decode()

    steps, timeline = content.index('id="saga-steps"'), content.index('id="saga-timeline"')
    raw = content.index('id="saga-raw"')
    assert steps < timeline < raw
    folded = content[raw:]
    assert folded.index("<details>") < folded.index("Raw JSON") < folded.index("</details>")
    assert content.count("pm_visible_only_in_the_raw_json") == 1
    assert content.index("pm_visible_only_in_the_raw_json") > raw
