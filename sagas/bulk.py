"""The hot path's SQL without the ORM's cost per call: many rows in one INSERT (`bulk_create`'s
RETURNING, checks and batching cost more than the insert itself there), several writes in one
statement, and model instances read from a SELECT without `raw()`'s matching of columns to
fields. Each value is prepared by its field, as the ORM writes and reads it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db import connections
from psycopg import _queries

# One write of a statement that makes several (`together`): a name, a data-modifying query
# (INSERT, UPDATE or DELETE, with RETURNING where a later part reads it) and its parameters.
Write = tuple[str, str, list[Any]]


def keep_long_statements_parsed() -> None:
    """Let psycopg keep its parse of the hot path's long statements (once per process).

    psycopg turns a statement's `%s` into `$n` by parsing its text, and keeps the parse only for
    texts of at most 50 parameters and 4,096 bytes, 128 texts in all. A decision over several
    sagas (`together`) is often longer (a quarter of them at c=64, up to about 500 parameters
    and 6 KB), so it was parsed again on every execution: about 6 % of a service cluster's CPU
    under load. Its texts are few (about 120 at c=64: one per count of sagas, events and
    tasks), so parses of texts up to 8 KiB and 500 parameters are kept, 256 texts in all: about
    90 KB for the largest, a few megabytes per process in practice. The limits are psycopg's
    module globals, read on every call; tests/integration/test_bulk.py checks that such a
    statement is parsed once."""
    _queries.MAX_CACHED_STATEMENT_LENGTH = 8192
    _queries.MAX_CACHED_STATEMENT_PARAMS = 500
    _queries._query2pg = lru_cache(maxsize=256)(_queries._query2pg_nocache)


def create(obj: Any, using: str = "default") -> None:
    """Insert `obj` as its first `save()` would, in one statement without the query compiler
    (`Model.objects.create` was a fifth of a reservation's CPU in a service worker): each
    field's value as its `pre_save` gives it (`auto_now` and `auto_now_add` stamped), and the id
    the database gives set on `obj` unless it has one. Sends no signals, and knows no database
    defaults (`db_default`): for models that have neither."""
    model = type(obj)
    connection = connections[using]
    returns_id = obj.pk is None
    columns, params = row(obj, connection)
    sql = (
        f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(params))})"
    )
    if returns_id:
        sql += f" RETURNING {connection.ops.quote_name(model._meta.pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returns_id:
            obj.pk = cursor.fetchone()[0]
    obj._state.adding, obj._state.db = False, using


def row(obj: Any, connection: Any) -> tuple[str, list[Any]]:
    """`obj`'s columns for an INSERT, comma-separated (its id only if it has one), and their
    values as its first `save()` would write them: each field's `pre_save` (`auto_now` and
    `auto_now_add` stamped on `obj`), then its preparation for `connection`."""
    fields = [
        field
        for field in type(obj)._meta.concrete_fields
        if not (field.primary_key and obj.pk is None)
    ]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return columns, [
        field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields
    ]


def insert(
    model: type[Any],
    names: list[str],
    objs: list[Any],
    using: str = "default",
) -> None:
    """Insert `objs` (instances of `model`, their `names` fields) in one statement on `using`.
    The instances' own ids are left unset."""
    if objs:
        sql, params = insert_statement(model, names, objs, using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)


def insert_statement(
    model: type[Any], names: list[str], objs: list[Any], using: str = "default"
) -> tuple[str, list[Any]]:
    """The INSERT of `insert`, and its parameters."""
    connection = connections[using]
    fields = [model._meta.get_field(name) for name in names]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        field.get_db_prep_save(getattr(obj, field.attname), connection)
        for obj in objs
        for field in fields
    ]
    return (
        f"INSERT INTO {model._meta.db_table} ({columns}) VALUES " + ", ".join([row] * len(objs)),
        params,
    )


def together(
    writes: list[Write], last: tuple[str, list[Any]] | None = None, using: str = "default"
) -> None:
    """Make `writes` in one statement, one round trip (PostgreSQL): each a query of a WITH,
    then `last`, a query that may read what they return (none: a bare SELECT). PostgreSQL runs
    every data-modifying query of a WITH once, to completion, whether read or not; they share
    one snapshot, so none may depend on another's rows."""
    if not writes and last is None:
        return
    sql, params = last or ("SELECT", [])
    if writes:
        sql = "WITH " + ", ".join(f"{name} AS ({query})" for name, query, _ in writes) + " " + sql
        params = [param for _, _, values in writes for param in values] + params
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)


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
