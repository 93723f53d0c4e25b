"""IdempotencyKey moved to the storefront app: its table is renamed, its rows are kept."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sagas", "0002_ormq_claim_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable("idempotencykey", "storefront_idempotencykey"),
            ],
            state_operations=[migrations.DeleteModel("IdempotencyKey")],
        )
    ]
