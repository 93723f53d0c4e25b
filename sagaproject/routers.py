"""A database per service, as an option: one router per service app whose `<APP>_DATABASE_URL`
is set (sagaproject/settings.py builds them). Everything else stays on `default`.

A router sends all of one app's tables to one alias (reads, writes and migrations), so a
service's effect and its stored reply (sagas.participant) always share one local transaction.
Nothing else is migrated into a service's database, and no relation crosses two databases
(no foreign key crosses a service boundary anyway: docs/architecture.md §2).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model


class ServiceDatabaseRouter:
    """Routes the models of the app `app_label` to the database alias `alias`."""

    def __init__(self, app_label: str, alias: str) -> None:
        self.app_label = app_label
        self.alias = alias

    def __repr__(self) -> str:
        return f"ServiceDatabaseRouter({self.app_label!r} -> {self.alias!r})"

    def _owns(self, model: type[Model] | Model) -> bool:
        return model._meta.app_label == self.app_label

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return self.alias if self._owns(model) else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self.alias if self._owns(model) else None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        if self._owns(obj1) or self._owns(obj2):
            return self._owns(obj1) and self._owns(obj2)
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == self.app_label:
            return db == self.alias
        if db == self.alias:
            return False  # a service's database holds that service's tables and nothing else
        return None
