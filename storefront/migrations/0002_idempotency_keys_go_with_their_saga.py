"""An idempotency key goes with its saga when housekeeping purges the saga (no SQL: Django
applies on_delete itself)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0007_dashboard_positions"),
        ("storefront", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencykey",
            name="saga",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                to="sagas.saga",
            ),
        ),
    ]
