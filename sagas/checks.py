"""The engine's system checks: a saga configuration that cannot work stops the saga and service
workers (and `migrate`, `manage.py check`) at startup, not mid-saga.

- sagas.E001: the saga settings break the redelivery ordering, or the lease is not positive.
- sagas.E002: a registered saga definition breaks its rules (`SagaDefinition.problems`).
- sagas.E003: a step's action or compensation has no service registered to handle it.
- sagas.E004 (a database check): a saga still in flight started with a definition version that
  is not registered, so nothing could decide it. Like Django's own database checks it runs only
  when asked for databases: by `migrate` (a deploy's first step), by `saga_worker` at startup,
  and by `manage.py check --database default`. sagas.W004: the database could not be read, so
  the versions in flight are not known (a saga worker then starts and waits for the database).
- sagas.E005: a housekeeping setting is out of range (retention, purge batch, interval).
- sagas.E006: Q_MERGE_TASKS is below 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, Warning
from django.db import DatabaseError, connections, router

from sagas import participant, registry
from sagas.config import saga_config
from sagas.models import Saga
from sagas.versions import in_flight_versions

TAG = "sagas"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    config = saga_config()
    errors: list[CheckMessage] = [
        Error(
            problem,
            hint="handler timeout < q2 retry < step deadline keeps a redelivered command from "
            "racing the orchestrator's re-send (docs/architecture.md §4).",
            id="sagas.E001",
        )
        for problem in config.check()
    ]
    errors += [Error(problem, id="sagas.E005") for problem in config.housekeeping.check()]
    if config.merge_tasks < 1:
        errors.append(
            Error(
                f"Q_MERGE_TASKS ({config.merge_tasks}) must be at least 1",
                hint="1 hands every queue task on alone (docs/architecture.md §3).",
                id="sagas.E006",
            )
        )
    return errors


def check_definitions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    handled = set(participant.registered_commands())
    for definition in registry.definitions():
        errors += [Error(problem, id="sagas.E002") for problem in definition.problems()]
        for step in definition.steps:
            for command in (step.action, step.compensation):
                if command is not None and command not in handled:
                    errors.append(
                        Error(
                            f"{definition.label}: step {step.name!r} sends {command!r}, which "
                            "no service handles",
                            hint="register it with sagas.participant.register() in the owning "
                            "service's AppConfig.ready().",
                            id="sagas.E003",
                        )
                    )
    return errors


def check_versions_in_flight(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every (type, version) of a saga in flight must be registered (sagas.E004)."""
    errors: list[CheckMessage] = []
    for alias in databases or ():
        if not router.allow_migrate_model(alias, Saga):
            continue
        try:
            in_flight = in_flight_versions(alias) if _has_version_column(alias) else []
        except DatabaseError as exc:
            errors.append(
                Warning(
                    f"could not read the saga versions in flight in database {alias!r}: {exc}",
                    hint="`manage.py check --database default` checks them once it is up.",
                    id="sagas.W004",
                )
            )
            continue
        for saga_type, version in in_flight:
            if version not in registry.versions(saga_type):
                errors.append(
                    Error(
                        f"sagas of type {saga_type!r} version {version} are in flight in "
                        f"database {alias!r}, but that version is not registered",
                        hint="keep every version registered until `manage.py saga versions` "
                        "shows none of it in flight (docs/architecture.md §10).",
                        id="sagas.E004",
                    )
                )
    return errors


def _has_version_column(alias: str) -> bool:
    """False before the migration that adds `Saga.version` ran: `migrate` checks before it
    migrates, and a database without the column holds no saga of an unknown version."""
    connection = connections[alias]
    table = Saga._meta.db_table
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return False
        columns = connection.introspection.get_table_description(cursor, table)
    return any(column.name == "version" for column in columns)
