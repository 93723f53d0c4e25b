"""The lab's ledger of who did the work: one row per command effect a service commits, whether
the reply was stored by the INSERT of an action's first attempt or by an UPDATE, and none for a
repeat answered from the stored reply."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from lab import ledger
from orders import messages
from sagas.participant import perform
from tests.services.builders import again, command, order_payload, undo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_each_committed_effect_is_one_command_row_and_a_repeat_none() -> None:
    assert connection.vendor == "postgresql", "the ledger's triggers need PostgreSQL"
    ledger.install()
    first = command(messages.CREATE, "create_order", payload=order_payload())
    locked = command(messages.CREATE, "create_order", payload=order_payload())

    with transaction.atomic():
        perform(first, savepoints=False)  # a task's first attempt: the reply in the INSERT
    perform(again(first))  # a repeat: the stored reply, no effect
    perform(locked)  # the locking path: INSERT, then the reply by an UPDATE
    perform(undo(locked, messages.CANCEL))

    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, saga_id::text, what FROM lab_host_work ORDER BY id")
        rows = cursor.fetchall()
    table = "orders_ordersteprecord"
    assert rows == [
        ("command", first.saga_id, f"{table} create_order action"),
        ("command", locked.saga_id, f"{table} create_order action"),
        ("command", locked.saga_id, f"{table} create_order compensation"),
    ]
