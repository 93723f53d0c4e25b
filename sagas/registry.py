"""Saga definitions by type name and version, filled by the owning apps in their
`AppConfig.ready()`.

Every version a saga in flight may still use stays registered: the engine decides each saga with
the definition of the version it started with, and new sagas start at a type's latest version
(docs/architecture.md §10)."""

from __future__ import annotations

from sagas.core.definition import SagaDefinition

_definitions: dict[str, dict[int, SagaDefinition]] = {}


def register(definition: SagaDefinition) -> None:
    """Add a version of a saga type, or replace that same version (as the lab's chained order
    saga does)."""
    _definitions.setdefault(definition.name, {})[definition.version] = definition


def definition(name: str, version: int) -> SagaDefinition:
    """The definition a saga of type `name` started with. LookupError when that version is not
    registered: a deploy removed it while sagas still use it (sagas.checks, sagas.E004)."""
    versions = _definitions.get(name)
    if not versions:
        raise LookupError(f"no saga type {name!r} is registered")
    try:
        return versions[version]
    except KeyError:
        known = ", ".join(f"v{v}" for v in sorted(versions))
        raise LookupError(
            f"saga type {name!r} has no version {version} registered (registered: {known})"
        ) from None


def latest(name: str) -> SagaDefinition:
    """The version new sagas of type `name` start with: the highest registered."""
    versions = _definitions.get(name)
    if not versions:
        raise LookupError(f"no saga type {name!r} is registered")
    return versions[max(versions)]


def names() -> list[str]:
    return sorted(_definitions)


def versions(name: str) -> list[int]:
    return sorted(_definitions.get(name, {}))


def definitions() -> list[SagaDefinition]:
    """Every registered version of every saga type, by name then version."""
    return [_definitions[name][v] for name in names() for v in versions(name)]


def unregister(name: str, version: int | None = None) -> None:
    """Remove one version of a saga type, or with no version the whole type."""
    if version is None:
        _definitions.pop(name, None)
        return
    _definitions.get(name, {}).pop(version, None)
    if not _definitions.get(name):
        _definitions.pop(name, None)
