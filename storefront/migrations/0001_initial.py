"""IdempotencyKey, moved here from the sagas app: its table exists already (sagas 0003)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("sagas", "0003_move_idempotencykey")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("owner_id", models.BigIntegerField()),
                        ("key", models.CharField(max_length=255)),
                        ("request_hash", models.CharField(max_length=64)),
                        ("status_code", models.PositiveSmallIntegerField()),
                        ("response", models.JSONField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("saga", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="sagas.saga")),
                    ],
                    options={
                        "constraints": [models.UniqueConstraint(fields=("owner_id", "key"), name="idempotency_key_per_owner")],
                    },
                ),
            ],
        )
    ]
