"""Autovacuum settings of the step records (PostgreSQL only; the numbers: sagas.storage)."""

from django.db import migrations

from sagas import storage


class Migration(migrations.Migration):
    dependencies = [("payments", "0002_paymentmethod_request_key")]

    operations = [storage.set_storage("payments_paymentsteprecord", storage.STEP_RECORDS)]
