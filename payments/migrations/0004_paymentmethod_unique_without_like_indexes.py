"""A payment method's token and request key stay unique, by constraints: `unique=True` gave each
of them a second index on PostgreSQL, for LIKE, which nothing asks and every tokenisation wrote."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0003_step_records_autovacuum'),
    ]

    operations = [
        migrations.AlterField(
            model_name='paymentmethod',
            name='request_key',
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name='paymentmethod',
            name='token',
            field=models.CharField(max_length=64),
        ),
        migrations.AddConstraint(
            model_name='paymentmethod',
            constraint=models.UniqueConstraint(fields=('token',), name='paymentmethod_token_unique'),
        ),
        migrations.AddConstraint(
            model_name='paymentmethod',
            constraint=models.UniqueConstraint(fields=('request_key',), name='paymentmethod_request_key_unique'),
        ),
    ]
