"""How the saga row is stored (docs/architecture.md §7, "The order of the saga row's columns"):
`status` is its last column, so a decision that changes it logs the changed columns, not the
saga's input before them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from orders.saga import ORDER_SAGA
from sagas.models import Saga
from sagas.services import start_saga
from tests.services.builders import order_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def query(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_status_is_the_last_column_and_keeps_its_index() -> None:
    columns = query(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'sagas_saga'::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    assert columns[-1] == ("status",)
    assert [name for (name,) in columns].count("status") == 1
    assert query("SELECT indexdef FROM pg_indexes WHERE indexname = 'saga_status'") == [
        ("CREATE INDEX saga_status ON public.sagas_saga USING btree (status)",)
    ]


def status_change_record(saga: Saga, status: str) -> tuple[int, int]:
    """The length of the WAL record of an update that changes the saga's status and state (as
    a decision does), and the bytes of full-page images in it."""
    [(filenode,)] = query("SELECT pg_relation_filenode('sagas_saga')")
    [(start,)] = query("SELECT pg_current_wal_insert_lsn()")
    Saga.objects.filter(id=saga.id).update(
        status=status,
        state={**saga.state, "status": status},
        updated_at=timezone.now(),
    )
    records = query(
        "SELECT record_length, fpi_length FROM pg_get_wal_records_info(%s, pg_current_wal_flush_lsn())"
        " WHERE record_type = 'UPDATE' AND block_ref ~ %s",
        [start, f"/{filenode} "],
    )
    assert len(records) == 1, records  # not HOT: `status` is indexed
    return records[0]


def test_a_status_change_logs_the_changed_columns_not_the_input_before_them() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    saga = start_saga(saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id="o-1")
    [(data_bytes, state_bytes)] = query(
        "SELECT pg_column_size(data), pg_column_size(state) FROM sagas_saga WHERE id = %s",
        [saga.id],
    )
    assert data_bytes > 300  # an order's input: lines, card, address
    # The first change of a page after a checkpoint logs the whole page instead: change it once
    # before measuring, and again if a checkpoint fell in between.
    status_change_record(saga, "running")
    length, full_page = status_change_record(saga, "compensating")
    if full_page:
        length, full_page = status_change_record(saga, "running")
    assert full_page == 0
    # The row as it was stored before: the input first, then the state, at least.
    assert length < data_bytes + state_bytes, (length, data_bytes, state_bytes)
    assert length < state_bytes + 200, (length, state_bytes)
