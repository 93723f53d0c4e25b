"""The engine's system checks: a saga configuration that cannot work stops the saga and service
workers (and `migrate`, `manage.py check`) at startup, not mid-saga.

- sagas.E001: the saga settings break the redelivery ordering, or the lease is not positive.
- sagas.E002: a registered saga definition breaks its rules (`SagaDefinition.problems`).
- sagas.E003: a step's action or compensation has no service registered to handle it.
- sagas.E004: a housekeeping setting is out of range (retention, purge batch, interval).
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error

from sagas import participant, registry
from sagas.config import saga_config

TAG = "sagas"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = [
        Error(
            problem,
            hint="handler timeout < q2 retry < step deadline keeps a redelivered command from "
            "racing the orchestrator's re-send (docs/architecture.md §4).",
            id="sagas.E001",
        )
        for problem in saga_config().check()
    ]
    return errors + [
        Error(problem, id="sagas.E004") for problem in saga_config().housekeeping.check()
    ]


def check_definitions(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    handled = set(participant.registered_commands())
    for name in registry.names():
        definition = registry.definition(name)
        errors += [Error(problem, id="sagas.E002") for problem in definition.problems()]
        for step in definition.steps:
            for command in (step.action, step.compensation):
                if command is not None and command not in handled:
                    errors.append(
                        Error(
                            f"{name}: step {step.name!r} sends {command!r}, which no service "
                            "handles",
                            hint="register it with sagas.participant.register() in the owning "
                            "service's AppConfig.ready().",
                            id="sagas.E003",
                        )
                    )
    return errors
