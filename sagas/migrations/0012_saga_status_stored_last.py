"""The saga row's `status` column stored last (PostgreSQL only; docs/architecture.md §7, "The
order of the saga row's columns").

An update whose new row version stays on its page is logged as the bytes between the longest
unchanged start and the longest unchanged end of the row. `status` was the fourth column, before
the saga's input (`data`), which never changes: a decision that changed the status (two in an
order's life, and neither is HOT, since `status` is indexed) logged the whole row, input
included. Stored last, it leaves the input in the unchanged start.

PostgreSQL appends a column where it adds it, so the column is added again at the end, filled
from the old one, which is then dropped; its index is made again. This rewrites every saga row
under an exclusive lock on the table: on a table of millions of sagas, migrate in a maintenance
window, or purge finished sagas first (`manage.py saga purge`). Rows written before keep the old
column's bytes (a dropped column costs later versions nothing) until they are next updated.
"""

from typing import Any

from django.db import migrations

from sagas import storage

TABLE = "sagas_saga"

FORWARD = [
    "ALTER TABLE sagas_saga ADD COLUMN status_last varchar(16)",
    "UPDATE sagas_saga SET status_last = status",
    "ALTER TABLE sagas_saga ALTER COLUMN status_last SET NOT NULL",
    "ALTER TABLE sagas_saga DROP COLUMN status",  # and its index, saga_status
    "ALTER TABLE sagas_saga RENAME COLUMN status_last TO status",
    'CREATE INDEX "saga_status" ON "sagas_saga" ("status")',
]


def move_status_last(apps: Any, schema_editor: Any) -> None:
    if storage.applies(schema_editor, TABLE):
        for statement in FORWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("sagas", "0011_inbox_and_events_without_fk_checks")]

    # Backwards there is nothing to undo: where the column is stored changes no schema.
    operations = [migrations.RunPython(move_status_last, migrations.RunPython.noop)]
