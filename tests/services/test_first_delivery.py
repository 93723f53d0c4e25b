"""An action's first delivery without savepoints (how a task's commands first run, in
sagas.transport): the effect, then the step's record with its reply in one INSERT. Anything
else (a repeat, a tombstone, a delivery racing another) raises, and the caller's rollback
takes the effect back; the locking path then answers it. Real PostgreSQL for the race."""

import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from orders import messages
from orders.models import Order, OrderStepRecord
from sagas.participant import Repeated, perform
from tests.services.builders import again, command, order_payload, undo

pytestmark = pytest.mark.django_db


def create_command():
    return command(messages.CREATE, "create_order", payload=order_payload())


def first_delivery(sent):
    """`sent` as a task's first run performs it: in a transaction, without savepoints."""
    with transaction.atomic():
        return perform(sent, savepoints=False)


def test_the_first_delivery_writes_the_record_and_its_reply_in_one_insert() -> None:
    sent = create_command()

    with CaptureQueriesContext(connection) as queries:
        reply = first_delivery(sent)

    assert reply.outcome == "ok"
    touching = [q["sql"] for q in queries if OrderStepRecord._meta.db_table in q["sql"]]
    assert len(touching) == 1 and touching[0].startswith("INSERT")
    record = OrderStepRecord.objects.get(saga_id=sent.saga_id, step="create_order")
    assert record.action_reply == {
        "outcome": "ok",
        "code": "",
        "message": "",
        "data": reply.data,
    }
    assert record.compensation_reply is None
    # The stored reply is what a repeat answers.
    assert perform(again(sent)).data == reply.data


def test_the_first_delivery_and_its_effect_take_no_savepoint() -> None:
    """Every statement goes straight into the command's transaction: the only savepoint is
    the one `first_delivery` opens, nested in the test's transaction."""
    sent = create_command()

    with CaptureQueriesContext(connection) as queries:
        first_delivery(sent)

    statements = [" ".join(q["sql"].split()[:3]).replace('"', "") for q in queries]
    assert [s.split()[0] for s in statements] == [
        "SAVEPOINT",
        "INSERT",
        "INSERT",
        "INSERT",
        "RELEASE",
    ], statements
    assert [s.split()[2] for s in statements[1:4]] == [
        "orders_order",
        "orders_orderline",
        "orders_ordersteprecord",
    ]


def test_a_repeat_raises_and_the_rollback_leaves_one_effect() -> None:
    sent = create_command()
    first = perform(sent)

    # The effect's own unique order id, or the step record, whichever it meets first.
    with pytest.raises((IntegrityError, Repeated)):
        first_delivery(again(sent))

    assert Order.objects.count() == 1
    assert perform(again(sent)).data == first.data


def test_an_action_after_its_tombstone_raises_repeated_and_is_then_refused() -> None:
    sent = create_command()
    perform(undo(sent, messages.CANCEL))

    with pytest.raises(Repeated):
        first_delivery(sent)

    assert not Order.objects.exists()
    late = perform(sent)
    assert (late.outcome, late.code) == ("refused", "compensated")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_an_action_racing_its_compensation_waits_at_the_insert_and_raises() -> None:
    """The compensation's tombstone is written but not committed when the action's effect is
    done: the action's INSERT waits for it, finds it once it commits, and raises."""
    sent = create_command()
    tombstone_written, action_waits = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def compensation() -> None:
        try:
            with transaction.atomic():
                perform(undo(sent, messages.CANCEL))
                tombstone_written.set()
                assert action_waits.wait(10)
        finally:
            connection.close()

    def action() -> None:
        assert tombstone_written.wait(10)
        try:
            first_delivery(sent)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=compensation), threading.Thread(target=action)]
    for thread in threads:
        thread.start()
    assert tombstone_written.wait(10)
    # The action is blocked on the tombstone's uncommitted row: it cannot have finished.
    waited = _blocked_on_a_lock(seconds=10)
    action_waits.set()
    for thread in threads:
        thread.join(20)

    assert waited
    assert len(outcome) == 1 and isinstance(outcome[0], Repeated)
    assert not Order.objects.filter(id=sent.payload["order_id"]).exists()
    assert OrderStepRecord.objects.get(saga_id=sent.saga_id).action_reply is None


def _blocked_on_a_lock(seconds: float) -> bool:
    """Whether another session of this database waits on a lock within `seconds`."""
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False
