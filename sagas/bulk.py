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


def columns(model: type[Any], alias: str) -> str:
    """The select list of `model`'s concrete fields, in their order, for `select` (PostgreSQL)."""
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def select(
    model: type[Any],
    sql: str,
    params: list[Any],
    extra: tuple[str, ...] = (),
    using: str = "default",
) -> list[Any]:
    """Instances of `model` read by `sql`, whose columns are `columns(model)` then one for each
    name in `extra`, set on each instance: what `raw()` gives, without its cost of matching
    columns to fields on every call. Each value goes through its field's `from_db_value`."""
    connection = connections[using]
    fields = model._meta.concrete_fields
    converters = [
        (i, field.from_db_value)
        for i, field in enumerate(fields)
        if hasattr(field, "from_db_value")
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row[: len(fields)])
        for i, convert in converters:
            values[i] = convert(values[i], None, connection)
        instance = model(*values)
        instance._state.adding, instance._state.db = False, using
        for name, value in zip(extra, row[len(fields) :], strict=True):
            setattr(instance, name, value)
        found.append(instance)
    return found
