"""The inbox and the event log keep their relation to the saga without a foreign-key constraint:
its check was one more query per inserted row on the hot path (docs/architecture.md §3)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sagas', '0010_hot_table_storage'),
    ]

    operations = [
        migrations.AlterField(
            model_name='sagaevent',
            name='saga',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='sagas.saga'),
        ),
        migrations.AlterField(
            model_name='sagareply',
            name='saga',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='replies', to='sagas.saga'),
        ),
    ]
