"""Which saga definition versions the sagas in the database use: what an operator reads before
removing an old version (`manage.py saga versions`) and what the check sagas.E004 guards."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Q

from sagas import registry
from sagas.core.state import SagaStatus
from sagas.models import Saga

# Not terminal: pending, running, compensating, and stuck (an operator may still retry it, which
# needs its definition).
IN_FLIGHT = [status.value for status in SagaStatus if not status.terminal]


@dataclass(frozen=True)
class VersionUse:
    type: str
    version: int
    registered: bool
    current: bool  # the version new sagas of the type start with
    in_flight: int
    total: int


def in_flight_versions(using: str = DEFAULT_DB_ALIAS) -> list[tuple[str, int]]:
    """The (type, version) pairs of the sagas in flight, in order."""
    return list(
        Saga.objects.using(using)
        .filter(status__in=IN_FLIGHT)
        .values_list("type", "version")
        .distinct()
        .order_by("type", "version")
    )


def version_use() -> list[VersionUse]:
    """Every (type, version) registered or used by a saga, with its in-flight and total counts."""
    counts = {
        (row["type"], row["version"]): (row["in_flight"], row["total"])
        for row in Saga.objects.values("type", "version").annotate(
            total=Count("id"), in_flight=Count("id", filter=Q(status__in=IN_FLIGHT))
        )
    }
    registered = {(d.name, d.version) for d in registry.definitions()}
    current = {(name, registry.latest(name).version) for name in registry.names()}
    rows = []
    for saga_type, version in sorted(registered | set(counts)):
        in_flight, total = counts.get((saga_type, version), (0, 0))
        key = (saga_type, version)
        rows.append(
            VersionUse(saga_type, version, key in registered, key in current, in_flight, total)
        )
    return rows
