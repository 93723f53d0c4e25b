"""PostgreSQL storage parameters of the hot tables (fillfactor, autovacuum), applied by
migrations; the numbers and why are in docs/architecture.md §7 ("Autovacuum"). On any other
database the operations do nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import migrations

Params = Mapping[str, float | int]

# The saga row: about 13 updates in a saga's life, most of them to unindexed columns (lease,
# fence, state). Room on the page lets such an update be HOT (no index entry, far less WAL);
# vacuum after 2 % dead rows, not the default 20 %, which is millions once months are kept.
SAGA_ROW: Params = {
    "fillfactor": 70,
    "autovacuum_vacuum_scale_factor": 0.02,
    "autovacuum_vacuum_threshold": 1000,
    "autovacuum_analyze_scale_factor": 0.02,
}

# Queue tables (the reply inbox, django-q2's queue): rows live for seconds, the live set is tiny
# but swells with a backlog. A fixed threshold keeps the trigger independent of that swell, and
# no cost delay lets each vacuum of these small tables finish at once.
QUEUE: Params = {
    "autovacuum_vacuum_scale_factor": 0,
    "autovacuum_vacuum_threshold": 500,
    "autovacuum_vacuum_insert_scale_factor": 0,
    "autovacuum_vacuum_insert_threshold": 500,
    "autovacuum_analyze_scale_factor": 0,
    "autovacuum_analyze_threshold": 500,
    "autovacuum_vacuum_cost_delay": 0,
}

# The event log: insert-only, then purged in batches. Vacuum for inserts after 2 % new rows
# keeps the visibility map current (index-only reads by position) and freezes in small steps
# instead of one anti-wraparound pass over months of log; deletes by the purge after 5 %.
EVENT_LOG: Params = {
    "autovacuum_vacuum_insert_scale_factor": 0.02,
    "autovacuum_vacuum_scale_factor": 0.05,
    "autovacuum_analyze_scale_factor": 0.05,
}

# A service's step records: inserted and updated once per command (mostly HOT), purged in
# batches with their sagas.
STEP_RECORDS: Params = {
    "autovacuum_vacuum_scale_factor": 0.05,
    "autovacuum_vacuum_insert_scale_factor": 0.05,
    "autovacuum_analyze_scale_factor": 0.05,
}


def set_storage(table: str, params: Params) -> migrations.RunPython:
    """A migration operation that sets `params` on `table` (PostgreSQL, where the table is)."""

    def forward(apps: Any, schema_editor: Any) -> None:
        if applies(schema_editor, table):
            settings = ", ".join(f"{name} = {value}" for name, value in params.items())
            schema_editor.execute(f"ALTER TABLE {_quoted(schema_editor, table)} SET ({settings})")

    def backward(apps: Any, schema_editor: Any) -> None:
        if applies(schema_editor, table):
            names = ", ".join(params)
            schema_editor.execute(f"ALTER TABLE {_quoted(schema_editor, table)} RESET ({names})")

    return migrations.RunPython(forward, backward)


def applies(schema_editor: Any, table: str) -> bool:
    """Whether a storage operation on `table` applies here: on PostgreSQL, where the table is."""
    connection = schema_editor.connection
    return connection.vendor == "postgresql" and table in connection.introspection.table_names()


def _quoted(schema_editor: Any, table: str) -> str:
    return str(schema_editor.quote_name(table))
