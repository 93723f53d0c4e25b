"""Fewer and smaller indexes on the hot tables (docs/architecture.md §7, "Indexes").

- sagas_saga: (status) instead of (status, type) (the type filters nothing: counts by status
  read the index alone); the owner_id index went (the prefix of saga_owner_recent), and so did
  the plain correlation_id index (the pattern-ops one serves `=` as well as prefix search).
  The due-work index (saga_due) was partial already.
- sagas_sagaevent: the foreign key's own index went (the prefix of sagaevent_saga_order).
- django_q_ormq: the claim index is (key, id), not (key, lock): a claim then changes no indexed
  column and its update can be HOT, and the claim reads oldest first by id anyway.

New indexes are created before the old ones are dropped.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sagas", "0008_saga_definition_version")]

    operations = [
        migrations.AddIndex(
            model_name="saga", index=models.Index(fields=["status"], name="saga_status")
        ),
        migrations.AddIndex(
            model_name="saga",
            index=models.Index(
                fields=["correlation_id"],
                name="saga_correlation",
                opclasses=["varchar_pattern_ops"],
            ),
        ),
        migrations.RemoveIndex(model_name="saga", name="saga_status_type"),
        migrations.AlterField(
            model_name="saga", name="correlation_id", field=models.CharField(max_length=64)
        ),
        migrations.AlterField(
            model_name="saga",
            name="owner_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        # Only the index: AlterField would also drop and re-add the foreign key, which scans
        # the whole event log under a lock to validate it.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="sagaevent",
                    name="saga",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="sagas.saga",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "sagas_sagaevent_saga_id_5e5f050e"',
                    'CREATE INDEX IF NOT EXISTS "sagas_sagaevent_saga_id_5e5f050e" '
                    'ON "sagas_sagaevent" ("saga_id")',
                ),
            ],
        ),
        migrations.RunSQL(
            [
                "CREATE INDEX IF NOT EXISTS sagas_ormq_key_id ON django_q_ormq (key, id)",
                "DROP INDEX IF EXISTS sagas_ormq_key_lock",
            ],
            [
                "CREATE INDEX IF NOT EXISTS sagas_ormq_key_lock ON django_q_ormq (key, lock)",
                "DROP INDEX IF EXISTS sagas_ormq_key_id",
            ],
        ),
    ]
