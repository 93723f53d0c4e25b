"""The engine's log lines (docs/architecture.md §7): every state change of a saga is logged as
one line carrying `saga_id`, `order_id`, `step` and `attempt`; what goes wrong in a worker is
logged with what an operator needs to find it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from orders.saga import ORDER_SAGA
from sagas import store
from sagas.models import Saga, SagaEvent
from sagas.services import start_saga
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db]


def started(correlation_id: str) -> Saga:
    saga = start_saga(
        saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id=correlation_id
    )
    Saga.objects.filter(id=saga.id).update(due_at=timezone.now() - timedelta(seconds=1))
    return saga


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "sagas"]


def test_each_event_of_a_decision_is_one_info_line_with_its_saga_order_step_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="sagas"):
        saga = started("order-1")

    events = SagaEvent.objects.filter(saga_id=saga.id).order_by("id")
    assert len(events) > 1
    assert [
        (r.levelno, r.getMessage(), r.saga_id, r.order_id, r.step, r.attempt, r.detail)  # type: ignore[attr-defined]
        for r in lines(caplog)
    ] == [
        (logging.INFO, e.kind, str(saga.id), "order-1", e.step, e.attempt, e.detail) for e in events
    ]


def test_a_worker_that_lost_its_leases_says_how_many_it_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = started("order-1"), started("order-2")
    stale = store.claim("worker-a", 10, lease_seconds=30)
    Saga.objects.filter(id=first.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    store.claim("worker-b", 10, lease_seconds=30)

    with caplog.at_level(logging.INFO, logger="sagas"):
        assert store.process("worker-a", stale) == 1
    warnings = [r for r in lines(caplog) if r.levelno == logging.WARNING]
    assert [(r.getMessage(), r.worker, r.lost) for r in warnings] == [  # type: ignore[attr-defined]
        ("lease lost before processing", "worker-a", 1)
    ]
    assert {second.id} == set(stale) - {first.id}


def test_a_saga_the_engine_cannot_process_is_logged_as_an_error_with_its_id_and_the_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga = started("order-1")

    def bug(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(store, "decide", bug)
    with caplog.at_level(logging.INFO, logger="sagas"):
        store.process("worker", store.claim("worker", 10, 30))

    [error] = [r for r in lines(caplog) if r.levelno >= logging.WARNING]
    assert (error.levelno, error.getMessage(), error.saga_id) == (  # type: ignore[attr-defined]
        logging.ERROR,
        "saga could not be processed",
        str(saga.id),
    )
    assert error.exc_info is not None and error.exc_info[0] is RuntimeError
    [event] = SagaEvent.objects.filter(saga_id=saga.id, kind="engine_error")
    assert event.detail == {"error": "RuntimeError('a bug')"}
