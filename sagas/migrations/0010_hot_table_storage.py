"""Fillfactor and autovacuum settings of the engine's hot tables and django-q2's queue
(PostgreSQL only; sagas.storage has the numbers, docs/architecture.md §7 the reasons).

The fillfactor applies to pages written from now on; an existing table's pages get it when the
table is rewritten (VACUUM FULL, pg_repack)."""

from django.db import migrations

from sagas import storage


class Migration(migrations.Migration):
    dependencies = [("sagas", "0009_small_indexes_on_hot_tables")]

    operations = [
        storage.set_storage("sagas_saga", storage.SAGA_ROW),
        storage.set_storage("sagas_sagareply", storage.QUEUE),
        storage.set_storage("sagas_sagaevent", storage.EVENT_LOG),
        storage.set_storage("django_q_ormq", storage.QUEUE),
    ]
