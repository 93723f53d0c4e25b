"""Saga definitions by type name, filled by the owning apps in their `AppConfig.ready()`."""

from __future__ import annotations

from sagas.core.definition import SagaDefinition

_definitions: dict[str, SagaDefinition] = {}


def register(definition: SagaDefinition) -> None:
    _definitions[definition.name] = definition


def definition(name: str) -> SagaDefinition:
    try:
        return _definitions[name]
    except KeyError:
        raise LookupError(f"no saga type {name!r} is registered") from None


def names() -> list[str]:
    return sorted(_definitions)


def unregister(name: str) -> None:
    _definitions.pop(name, None)
