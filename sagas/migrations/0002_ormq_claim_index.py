"""django-q2's queue table has no index for the claim query (key, lock); the broker needs one."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS sagas_ormq_key_lock ON django_q_ormq (key, lock)",
            "DROP INDEX IF EXISTS sagas_ormq_key_lock",
        )
    ]
