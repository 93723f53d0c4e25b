"""Autovacuum settings of the step records (PostgreSQL only; the numbers: sagas.storage)."""

from django.db import migrations

from sagas import storage


class Migration(migrations.Migration):
    dependencies = [("shipping", "0001_initial")]

    operations = [storage.set_storage("shipping_shippingsteprecord", storage.STEP_RECORDS)]
