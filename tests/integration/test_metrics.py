"""The counters read as they claim: one start per saga, one finish per saga whatever arrives
after it, one count per command performed by its outcome. Read as deltas of the process's
registry (the values are cumulative across the test session)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from prometheus_client import REGISTRY

from sagas import transport
from sagas.messages import Outcome, Reply
from sagas.models import Saga, SagaEvent, SagaReply
from sagas.services import start_saga
from tests.services.builders import card_token, order_payload, product

# Claims read the database clock at the start of their own transaction: no enclosing test one.
pytestmark = pytest.mark.django_db(transaction=True)

FIRST = ("create_order", "reserve_stock", "charge_payment")
DECLINED_CARD = "4000000000000002"
PROCESSING_ERROR_CARD = "4000000000000119"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """Samples read now, to compare with the same samples read later."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [sample(name, **labels) for name, labels in samples]

    def deltas(self) -> list[float]:
        return [
            sample(name, **labels) - before
            for (name, labels), before in zip(self.samples, self.before, strict=True)
        ]


def queued_tasks() -> list[list[dict[str, Any]]]:
    """The command batches waiting in django-q2's queue table, as `transport.execute` takes them."""
    return [SignedPackage.loads(row.payload)["args"][0] for row in OrmQ.objects.order_by("id")]


def finished(status: str, reason: str = "") -> tuple[str, dict[str, str]]:
    return ("saga_finished_total", {"type": "order", "status": status, "reason": reason})


def durations(status: str) -> tuple[str, dict[str, str]]:
    return ("saga_duration_seconds_count", {"type": "order", "status": status})


def commands(command: str, outcome: str) -> tuple[str, dict[str, str]]:
    return ("saga_commands_total", {"command": command, "outcome": outcome})


def new_saga(**data: Any) -> Saga:
    order_id = str(uuid.uuid4())
    return start_saga(
        saga_type="order", data=order_payload(order_id=order_id, **data), correlation_id=order_id
    )


def answer(saga: Saga, *steps: str, outcome: Outcome = Outcome.OK, code: str = "") -> None:
    """The services answer `steps` (first attempt); the replies are decided where they land."""
    transport.deliver([Reply(str(saga.id), step, False, 1, outcome, code) for step in steps])
    assert not SagaReply.objects.filter(saga=saga).exists()


def completed(saga: Saga) -> Saga:
    answer(saga, *FIRST)
    answer(saga, "schedule_shipment")
    answer(saga, "approve_order")
    saga.refresh_from_db()
    assert saga.status == "completed"
    return saga


def test_starting_a_saga_counts_one_start() -> None:
    counts = Counts(("saga_started_total", {"type": "order"}))

    new_saga()

    assert counts.deltas() == [1]


def test_a_completed_saga_is_counted_once_though_a_duplicate_reply_arrives_late() -> None:
    counts = Counts(finished("completed"), durations("completed"))
    saga = completed(new_saga())
    assert counts.deltas() == [1, 1]

    answer(saga, "approve_order")  # delivered again after the saga finished

    assert SagaEvent.objects.filter(saga=saga, kind="reply_ignored").exists()  # it was read
    assert counts.deltas() == [1, 1]


def test_a_failed_saga_is_counted_once_with_its_reason_though_a_duplicate_reply_arrives_late() -> (
    None
):
    counts = Counts(finished("failed", "payment_declined"), durations("failed"))
    saga = new_saga()
    answer(saga, "create_order", "reserve_stock")
    answer(saga, "charge_payment", outcome=Outcome.REFUSED, code="payment_declined")
    transport.deliver(
        [
            Reply(str(saga.id), step, True, 1, Outcome.OK)
            for step in ("create_order", "reserve_stock")
        ]
    )
    saga.refresh_from_db()
    assert (saga.status, saga.reason_code) == ("failed", "payment_declined")
    assert counts.deltas() == [1, 1]

    answer(saga, "charge_payment", outcome=Outcome.REFUSED, code="payment_declined")

    assert counts.deltas() == [1, 1]


def test_each_performed_command_is_counted_by_its_outcome() -> None:
    product("SKU-1", stock=5)  # the payload's line
    counts = Counts(
        commands("orders.create", "ok"),
        commands("inventory.reserve", "ok"),
        commands("payments.charge", "refused"),
        commands("payments.charge", "ok"),
        commands("payments.charge", "fault"),
    )
    new_saga(payment_token=card_token(DECLINED_CARD))
    new_saga(payment_token=card_token(PROCESSING_ERROR_CARD))

    for task in queued_tasks():
        transport.execute(task)

    assert counts.deltas() == [2, 2, 1, 0, 1]
