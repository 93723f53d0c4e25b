"""A service's reply is not atomic with the saga's inbox: the effect and its stored reply commit
in the service's database, the delivery into the inbox in a second transaction of the saga
database (two databases with make test-multidb). A worker that dies in between is healed by
the queue's redelivery, which answers from the stored reply and does nothing twice."""

from __future__ import annotations

import uuid

import pytest

from orders.saga import ORDER_SAGA
from payments import messages, testcards
from payments.models import Charge, PaymentStepRecord
from sagas import transport
from sagas.core.state import SagaStatus
from sagas.messages import Command, Outcome, Reply
from sagas.models import Saga, SagaReply
from tests.services.builders import card_token, order_data

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


class WorkerDied(Exception):
    """The worker process dies here: nothing after this point runs."""


def a_saga_waiting_for_its_charge() -> Command:
    data = order_data(payment_token=card_token(testcards.OK))
    saga = Saga.objects.create(
        type=ORDER_SAGA,
        status=SagaStatus.RUNNING,
        data=data.to_json(),
        state={},
        correlation_id=str(data.order_id),
    )
    return Command(messages.CHARGE, str(saga.id), "charge_payment", False, 1, data.to_json())


def test_a_crash_between_the_effects_commit_and_the_replys_delivery_is_healed_by_redelivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = a_saga_waiting_for_its_charge()
    task = [command.to_dict()]  # what django-q2 queued, and delivers again after the crash

    def die(replies: list[Reply]) -> None:
        raise WorkerDied

    monkeypatch.setattr(transport, "deliver", die)
    with pytest.raises(WorkerDied):
        transport.execute(task)

    # Committed in the Payment Service: the charge and its stored reply; the inbox is empty.
    charge = Charge.objects.get(saga_id=command.saga_id)
    stored = PaymentStepRecord.objects.get(saga_id=command.saga_id).action_reply
    assert stored is not None
    assert stored["outcome"] == Outcome.OK
    assert stored["data"] == {"charge_id": charge.pk, "amount": "25.00"}
    assert not SagaReply.objects.exists()

    monkeypatch.undo()
    transport.execute(task)  # the redelivery

    delivered = SagaReply.objects.get()
    assert str(delivered.saga_id) == command.saga_id
    assert delivered.to_reply() == Reply.to(command, Outcome.OK, data=stored["data"])
    assert Charge.objects.filter(saga_id=command.saga_id).count() == 1  # charged once


def test_a_reply_for_a_saga_the_saga_database_does_not_know_is_dropped_not_delivered() -> None:
    # The two databases never share a transaction, so nothing stops a service from answering a
    # saga id that is not (or no longer) in the saga database: delivery drops such a reply.
    data = order_data(payment_token=card_token(testcards.OK))
    ghost = Command(messages.CHARGE, str(uuid.uuid4()), "charge_payment", False, 1, data.to_json())

    transport.execute([ghost.to_dict()])

    assert Charge.objects.filter(saga_id=ghost.saga_id).count() == 1
    assert not SagaReply.objects.exists()
