"""Following the event log: every event once, in a stable order, even when transactions commit
their events out of id order."""

from __future__ import annotations

import pytest
from django.db import connection

from sagas import services
from sagas.dashboard import feed
from sagas.dashboard.feed import Batch, Position
from sagas.models import SagaEvent
from tests.dashboard.builders import append_event, raw_connection, started_saga

pytestmark = pytest.mark.django_db(transaction=True)


def needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: ids commit in order there")


def test_a_read_returns_the_events_after_a_position_in_order_with_their_sagas_as_they_are() -> None:
    before = feed.head()
    saga = started_saga()
    services.compensate_saga(saga_id=saga.id)

    batch = feed.read_after(before, limit=100, counts=True)

    ids = list(SagaEvent.objects.filter(saga=saga).order_by("id").values_list("id", flat=True))
    assert [event[1] for event in batch.events] == ids
    assert batch.start == before and batch.end == feed.head()
    assert batch.sagas[str(saga.id)]["status"] == "compensating"
    assert batch.sagas[str(saga.id)]["reason"] == "cancelled"
    assert batch.counts is not None and batch.counts["compensating"] == 1
    assert feed.read_after(batch.end, limit=100).events == []


def test_a_limited_read_continues_where_it_stopped() -> None:
    before = feed.head()
    for _ in range(3):
        started_saga()

    first = feed.read_after(before, limit=5)
    rest = feed.read_after(first.end, limit=100)

    everything = feed.read_after(before, limit=100)
    assert len(first.events) == 5
    assert first.events + rest.events == everything.events


def test_a_read_with_no_new_event_can_still_bring_the_counts() -> None:
    started_saga()
    now = feed.head()

    batch = feed.read_after(now, limit=100, counts=True)

    assert batch.events == [] and batch.end == now
    assert batch.counts == {**dict.fromkeys(feed.STATUSES, 0), "pending": 1}


def test_an_event_committed_before_an_older_one_waits_until_the_older_one_commits() -> None:
    needs_postgresql()
    saga = started_saga()
    seen = feed.head()
    with raw_connection() as early, raw_connection() as late:
        early_id = append_event(early, saga.id, "early")  # lower id, still in flight
        late_id = append_event(late, saga.id, "late")
        late.commit()  # the higher id commits first

        while_early_runs = feed.read_after(seen, limit=100)
        assert while_early_runs.events == []  # a plain `id > last` tail would hand out late_id
        assert while_early_runs.waiting

        early.commit()
    batch = feed.read_after(seen, limit=100)

    assert [event[1] for event in batch.events] == [early_id, late_id]
    assert feed.read_after(batch.end, limit=100).events == []


def test_a_transaction_in_another_database_of_the_server_holds_nothing_back() -> None:
    needs_postgresql()
    seen = feed.head()
    with raw_connection(dbname="postgres") as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # in flight, with an older id
        saga = started_saga()

        batch = feed.read_after(seen, limit=100)

    assert {event[2] for event in batch.events} == {str(saga.id)}


def test_a_rolled_back_event_leaves_no_hole_and_holds_nothing_back() -> None:
    needs_postgresql()
    saga = started_saga()
    seen = feed.head()
    with raw_connection() as lost, raw_connection() as kept:
        append_event(lost, saga.id, "lost")
        kept_id = append_event(kept, saga.id, "kept")
        kept.commit()
        lost.rollback()

    assert [event[1] for event in feed.read_after(seen, limit=100).events] == [kept_id]


def test_batches_merge_and_trim_by_position() -> None:
    one = Batch(
        Position(1, 1),
        Position(1, 3),
        [[1, 2, "s", 0, "a", "", 0, ""], [1, 3, "s", 0, "b", "", 0, ""]],
    )
    two = Batch(Position(1, 3), Position(2, 1), [[2, 1, "s", 0, "c", "", 0, ""]])

    merged = one.then(two)

    assert [e[4] for e in merged.events] == ["a", "b", "c"]
    assert (merged.start, merged.end) == (Position(1, 1), Position(2, 1))
    assert [e[4] for e in merged.after(Position(1, 2)).events] == ["b", "c"]
    assert Batch.from_message(merged.message()).events == merged.events


@pytest.mark.parametrize("text", ["", "1", "a.b", "-1.2", "1.2.3", None])
def test_a_malformed_position_is_no_position(text: str | None) -> None:
    assert Position.parse(text) is None
    assert Position.parse("12.345") == Position(12, 345)
