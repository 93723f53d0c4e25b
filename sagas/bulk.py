"""Many rows in one INSERT, for the hot path: `bulk_create`'s RETURNING, checks and batching cost
more than the insert itself there. Each value is prepared by its field, as the ORM writes it."""

from __future__ import annotations

from typing import Any

from django.db import connections


def insert(
    model: type[Any],
    names: list[str],
    objs: list[Any],
    using: str = "default",
) -> None:
    """Insert `objs` (instances of `model`, their `names` fields) in one statement on `using`.
    The instances' own ids are left unset."""
    if not objs:
        return
    connection = connections[using]
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        field.get_db_prep_save(getattr(obj, field.attname), connection)
        for obj in objs
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({columns}) VALUES "
            + ", ".join([row] * len(objs)),
            params,
        )
