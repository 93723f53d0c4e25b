"""Who did the work: a ledger PostgreSQL keeps of what each process committed, for the lab's
runs on several hosts (lab.hosts).

Triggers write one row per saga in each decision a saga worker commits (its events, tagged with
the connection's `application_name`) and one row per command effect a service commits (an
action's or a compensation's reply stored in a step record, by the update or the insert that
stores it). A row commits or rolls back with
the work it records, so a host cut off mid-transaction leaves no trace of what it did not
commit, and a repeated delivery that only returns a stored reply writes nothing. Installed on a
lab run's own database only (PostgreSQL); no part of the system reads it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection

from sagas.participant import StepRecord

TERMINAL = ("saga_completed", "saga_failed")

TABLE = """
CREATE TABLE IF NOT EXISTS lab_host_work (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    app text NOT NULL DEFAULT current_setting('application_name'),
    kind text NOT NULL,  -- decision | command
    saga_id uuid NOT NULL,
    what text NOT NULL  -- a decision's event kinds; a command's table, step and direction
);
CREATE OR REPLACE FUNCTION lab_host_decisions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lab_host_work (kind, saga_id, what)
    SELECT 'decision', saga_id, string_agg(kind, ' ' ORDER BY id) FROM new_events GROUP BY saga_id;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER lab_host_decisions AFTER INSERT ON sagas_sagaevent
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION lab_host_decisions();
CREATE OR REPLACE FUNCTION lab_host_commands() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lab_host_work (kind, saga_id, what) VALUES (
        'command', NEW.saga_id,
        TG_TABLE_NAME || ' ' || NEW.step || CASE
            WHEN TG_OP = 'INSERT' THEN ' action'
            WHEN OLD.compensation_reply IS DISTINCT FROM NEW.compensation_reply
            THEN ' compensation' ELSE ' action' END
    );
    RETURN NULL;
END $$;
"""

# A reply is stored by an UPDATE of the step's record, or, on an action's first attempt, by the
# INSERT that creates it (sagas.participant._act_first).
COMMAND_TRIGGER = """
CREATE OR REPLACE TRIGGER lab_host_commands AFTER UPDATE ON {table} FOR EACH ROW
    WHEN (OLD.action_reply IS DISTINCT FROM NEW.action_reply
          OR OLD.compensation_reply IS DISTINCT FROM NEW.compensation_reply)
    EXECUTE FUNCTION lab_host_commands();
CREATE OR REPLACE TRIGGER lab_host_commands_inserted AFTER INSERT ON {table} FOR EACH ROW
    WHEN (NEW.action_reply IS NOT NULL)
    EXECUTE FUNCTION lab_host_commands();
"""


def step_record_tables() -> list[str]:
    from django.apps import apps

    return sorted(
        model._meta.db_table for model in apps.get_models() if issubclass(model, StepRecord)
    )


def install() -> None:
    """Create the ledger and its triggers in the default database (idempotent)."""
    with connection.cursor() as cursor:
        cursor.execute(TABLE)
        for table in step_record_tables():
            cursor.execute(COMMAND_TRIGGER.format(table=connection.ops.quote_name(table)))


@dataclass
class Work:
    """What the processes whose `application_name` starts with one prefix committed."""

    sagas: set[str] = field(default_factory=set)  # sagas they decided something for
    decisions: int = 0  # saga-decisions: one saga's events in one committed transaction
    finished: set[str] = field(default_factory=set)  # sagas they finished (the final decision)
    commands: int = 0  # command effects: action or compensation replies stored
    commanded: set[str] = field(default_factory=set)  # sagas they ran a command effect for
    by_app: Counter[str] = field(default_factory=Counter)  # commands per process


def work(
    prefixes: list[str], *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Work]:
    """The work of each prefix's processes committed from `since` to `until` (the database
    clock; None: from the start, until now)."""
    found = {prefix: Work() for prefix in prefixes}
    query = "SELECT app, kind, saga_id::text, what FROM lab_host_work WHERE at >= %s AND at <= %s"
    bounds = [since or datetime.min.replace(tzinfo=UTC), until or datetime.max.replace(tzinfo=UTC)]
    with connection.cursor() as cursor:
        cursor.execute(query + " ORDER BY id", bounds)
        rows = cursor.fetchall()
    for app, kind, saga_id, what in rows:
        prefix = next((p for p in prefixes if app.startswith(p)), None)
        if prefix is None:
            continue
        mine = found[prefix]
        if kind == "decision":
            mine.sagas.add(saga_id)
            mine.decisions += 1
            if any(event in what.split() for event in TERMINAL):
                mine.finished.add(saga_id)
        else:
            mine.commands += 1
            mine.commanded.add(saga_id)
            mine.by_app[app] += 1
    return found


def in_flight(prefix: str) -> int:
    """How many unfinished sagas the processes whose `application_name` starts with `prefix`
    have decided for or run a command effect of: what another host takes over if they go."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT work.saga_id) FROM lab_host_work work"
            " JOIN sagas_saga saga ON saga.id = work.saga_id"
            " WHERE work.app LIKE %s AND saga.finished_at IS NULL",
            [f"{prefix}%"],
        )
        count: int = cursor.fetchone()[0]
        return count
