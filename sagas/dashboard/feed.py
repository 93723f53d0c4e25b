"""Reading the saga event log in order: positions, batches and snapshots for the dashboard.

An event's position is `(xid, id)`: the id of the transaction that wrote it, then its own id.
Ids come from a sequence before commit, so two transactions can commit them out of order and a
reader following `id > last` would skip the one that commits late. On PostgreSQL a read therefore
stops below the oldest transaction of this database still in flight, as the reading statement's
own snapshot sees it (HORIZON): every transaction with a smaller id has ended, so the events below
that horizon are final and a later read never adds one before a position already handed out. The
wait this costs is as long as the oldest transaction writing to the database at that moment. On
SQLite writers are serialised, ids commit in order, `xid` is 0 and nothing waits.

So a client that saw everything up to position P and asks for what is after P misses nothing and
gets nothing twice. Saga summaries and status counts ride along as they are *now* (replacing, not
adding up), so they never double count.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from sagas.config import dashboard_config
from sagas.core.state import SagaStatus
from sagas.models import FINISHING_EVENTS, Saga, SagaEvent

STATUSES = [status.value for status in SagaStatus]


@dataclass(frozen=True, order=True)
class Position:
    """A point in the event log; everything at or before it has been seen."""

    xid: int
    id: int

    def __str__(self) -> str:
        return f"{self.xid}.{self.id}"

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        try:
            xid, event_id = (text or "").split(".")
            position = cls(int(xid), int(event_id))
        except ValueError:
            return None
        return position if position.xid >= 0 and position.id >= 0 else None

    def pair(self) -> list[int]:
        return [self.xid, self.id]


START = Position(0, 0)


@dataclass
class Batch:
    """The events in (start, end], the sagas they touched as they are now, and maybe the counts.

    `events` rows: [xid, id, saga_id, at (ms), kind, step, attempt, code]."""

    start: Position
    end: Position
    events: list[list[Any]] = field(default_factory=list)
    sagas: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] | None = None
    waiting: bool = False  # committed events wait behind a transaction still in flight

    def message(self) -> dict[str, Any]:
        """As a channel-layer message (msgpack-safe: lists, dicts, strings, numbers)."""
        return {
            "type": "dashboard.batch",
            "start": self.start.pair(),
            "end": self.end.pair(),
            "events": self.events,
            "sagas": list(self.sagas.values()),
            "counts": self.counts,
        }

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Batch:
        return cls(
            Position(*message["start"]),
            Position(*message["end"]),
            [list(row) for row in message["events"]],
            {saga["id"]: dict(saga) for saga in message["sagas"]},
            dict(message["counts"]) if message["counts"] is not None else None,
        )

    def frame(self) -> dict[str, Any]:
        """As a websocket frame for the page."""
        return {
            "type": "update",
            "from": str(self.start),
            "to": str(self.end),
            "events": [event[1:] for event in self.events],
            "sagas": list(self.sagas.values()),
            "counts": self.counts,
        }

    def after(self, position: Position) -> Batch:
        """This batch less what is at or before `position`."""
        if position <= self.start:
            return self
        events = [e for e in self.events if Position(e[0], e[1]) > position]
        return Batch(max(position, self.start), self.end, events, self.sagas, self.counts)

    def then(self, later: Batch) -> Batch:
        """This batch followed by `later`, which starts where this one ends."""
        sagas = dict(self.sagas)
        for saga_id, saga in later.sagas.items():
            if saga["updated"] >= sagas.get(saga_id, saga)["updated"]:
                sagas[saga_id] = saga
        counts = later.counts if later.counts is not None else self.counts
        return Batch(self.start, later.end, self.events + later.events, sagas, counts)


# --- the tail ------------------------------------------------------------------------------------


# The horizon: events of transactions with a smaller id are final. On PostgreSQL it is the oldest
# transaction in flight in the reading statement's own snapshot (so everything below it is
# visible to that statement), not counting transactions that pg_stat_activity shows in another
# database of the same server: they cannot write here, and a long one must not hold the
# dashboard back. (A role without pg_read_all_stats does not see other users' transaction ids;
# they then count, which is only slower.) SQLite: ids commit in order, nothing to wait for.
HORIZON = {
    "postgresql": """horizon AS MATERIALIZED (
    SELECT coalesce(
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
         WHERE xid(x) NOT IN (SELECT backend_xid FROM pg_stat_activity
                              WHERE backend_xid IS NOT NULL AND datname <> current_database())),
        pg_snapshot_xmax(pg_current_snapshot())::text::bigint) AS xid)""",
    "sqlite": "horizon AS (SELECT 9223372036854775807 AS xid)",
}


def _dialect() -> dict[str, str]:
    if connection.vendor == "postgresql":
        return {
            "horizon": HORIZON["postgresql"],
            "ms": "(extract(epoch FROM {})*1000)::bigint",
            "counts": "(SELECT json_object_agg(status, n) FROM"
            " (SELECT status, count(*) AS n FROM sagas_saga GROUP BY status) AS c)",
        }
    return {
        "horizon": HORIZON["sqlite"],
        "ms": "CAST(ROUND((julianday({}) - 2440587.5) * 86400000.0) AS INTEGER)",
        "counts": "(SELECT json_group_object(status, n) FROM"
        " (SELECT status, count(*) AS n FROM sagas_saga GROUP BY status))",
    }


def _tail_sql(*, counts: bool, bounded: bool) -> str:
    d = _dialect()
    ms = d["ms"].format
    upper = "AND (e.xid, e.id) <= (%s, %s)" if bounded else ""
    return f"""
WITH {d["horizon"]}
SELECT head.counts, head.waiting, b.* FROM (
    SELECT {d["counts"] if counts else "NULL"} AS counts,
           EXISTS (SELECT 1 FROM sagas_sagaevent WHERE xid >= (SELECT xid FROM horizon)) AS waiting
) AS head LEFT JOIN (
    SELECT e.xid, e.id, e.saga_id, {ms("e.at")} AS at_ms, e.kind, e.step, e.attempt, e.detail,
           s.type, s.status, s.correlation_id, s.reason_code, s.reason_message,
           {ms("s.created_at")} AS created_ms, {ms("s.updated_at")} AS updated_ms,
           {ms("s.finished_at")} AS finished_ms
    FROM sagas_sagaevent e JOIN sagas_saga s ON s.id = e.saga_id
    WHERE (e.xid, e.id) > (%s, %s) AND e.xid < (SELECT xid FROM horizon) {upper}
    ORDER BY e.xid, e.id
    LIMIT %s
) AS b ON 1 = 1
ORDER BY b.xid, b.id
"""


def read_after(
    position: Position, *, limit: int, counts: bool = False, upto: Position | None = None
) -> Batch:
    """The next final events after `position` (at most `limit`, none beyond `upto`), in one query.

    With `counts`, the status counts come along, even when there are no new events."""
    params: list[Any] = [*position.pair()]
    if upto is not None:
        params += upto.pair()
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(_tail_sql(counts=counts, bounded=upto is not None), params)
        rows = cursor.fetchall()
    batch = Batch(position, position, counts=_counts(rows[0][0]) if counts else None)
    batch.waiting = bool(rows[0][1])
    for row in rows:
        if row[2] is None:  # the LEFT JOIN's empty side: no new event
            continue
        (xid, event_id, saga_id, at_ms, kind, step, attempt, detail) = row[2:10]
        saga_id = _uuid(saga_id)
        batch.events.append(
            [xid, event_id, saga_id, at_ms, kind, step, attempt, _json(detail).get("code", "")]
        )
        batch.sagas[saga_id] = _summary_row(saga_id, row[10:])
        batch.end = Position(xid, event_id)
    return batch


def head() -> Position:
    """The last final position: every event at or before it is committed and visible."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {_dialect()['horizon']} SELECT xid, id FROM sagas_sagaevent"
            " WHERE xid < (SELECT xid FROM horizon) ORDER BY xid DESC, id DESC LIMIT 1"
        )
        row = cursor.fetchone()
    return Position(row[0], row[1]) if row else START


def _summary_row(saga_id: str, row: tuple[Any, ...]) -> dict[str, Any]:
    saga_type, status, order, reason, message, created, updated, finished = row
    return {
        "id": saga_id,
        "type": saga_type,
        "status": status,
        "order": order,
        "reason": reason,
        "reason_message": message,
        "created": created,
        "updated": updated,
        "finished": finished,
    }


def _uuid(value: Any) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _json(value: Any) -> dict[str, Any]:
    data = json.loads(value) if isinstance(value, str | bytes) else value
    return data if isinstance(data, dict) else {}


def _counts(value: Any) -> dict[str, int]:
    found = _json(value) if value is not None else {}
    return {status: int(found.get(status, 0)) for status in STATUSES}


# --- snapshots -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the operator narrowed the recent sagas to: a status, a reason, an order or saga id."""

    status: str = ""
    reason: str = ""
    search: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Filters:
        status = params.get("status", "").strip()
        return cls(
            status=status if status in STATUSES else "",
            reason=params.get("reason", "").strip()[:64],
            search=params.get("q", "").strip()[:64],
        )

    def apply(self, sagas: QuerySet[Saga]) -> QuerySet[Saga]:
        if self.status:
            sagas = sagas.filter(status=self.status)
        if self.reason:
            sagas = sagas.filter(reason_code=self.reason)
        if self.search:
            match = Q(correlation_id=self.search)
            try:
                match |= Q(id=uuid.UUID(self.search))
            except ValueError:
                match |= Q(correlation_id__startswith=self.search)
            sagas = sagas.filter(match)
        return sagas

    def params(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason, "q": self.search}


def _ms(moment: datetime | None) -> int | None:
    return round(moment.timestamp() * 1000) if moment else None


def summary(saga: Saga) -> dict[str, Any]:
    return {
        "id": str(saga.id),
        "type": saga.type,
        "status": saga.status,
        "order": saga.correlation_id,
        "reason": saga.reason_code,
        "reason_message": saga.reason_message,
        "created": _ms(saga.created_at),
        "updated": _ms(saga.updated_at),
        "finished": _ms(saga.finished_at),
    }


SUMMARY_FIELDS = [
    "id",
    "type",
    "status",
    "correlation_id",
    "reason_code",
    "reason_message",
    "created_at",
    "updated_at",
    "finished_at",
]


def recent(filters: Filters, limit: int) -> list[dict[str, Any]]:
    """The newest sagas that pass `filters`."""
    sagas = filters.apply(Saga.objects.only(*SUMMARY_FIELDS)).order_by("-created_at", "-id")
    return [summary(saga) for saga in sagas[:limit]]


def counts() -> dict[str, int]:
    found = dict(
        Saga.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    return {status: int(found.get(status, 0)) for status in STATUSES}


def chart(upto: Position, now: datetime | None = None) -> dict[str, Any]:
    """Sagas finished per bucket over the last minutes: completed, and failed by reason, counting
    only events at or before `upto` (later ones come in batches and are added by the client)."""
    config = dashboard_config()
    now = now or timezone.now()
    bucket_ms = config.chart_bucket_seconds * 1000
    since = now - timedelta(minutes=config.chart_minutes)
    finished = (
        SagaEvent.objects.filter(kind__in=FINISHING_EVENTS, at__gte=since)
        .filter(Q(xid__lt=upto.xid) | Q(xid=upto.xid, id__lte=upto.id))
        .values_list("at", "kind", "detail__code")
    )
    tally: Counter[tuple[int, str]] = Counter()
    for at, kind, code in finished.iterator(chunk_size=2000):
        series = "completed" if kind == "saga_completed" else (code or "unknown")
        tally[(int(at.timestamp() * 1000) // bucket_ms * bucket_ms, series)] += 1
    return {
        "bucket_ms": bucket_ms,
        "minutes": config.chart_minutes,
        "points": [[bucket, series, n] for (bucket, series), n in sorted(tally.items())],
    }


def snapshot(filters: Filters) -> dict[str, Any]:
    """Everything a fresh client shows, and the position its live updates continue from."""
    position = head()
    return {
        "type": "snapshot",
        "position": str(position),
        "counts": counts(),
        "sagas": recent(filters, dashboard_config().recent),
        "chart": chart(position),
    }
