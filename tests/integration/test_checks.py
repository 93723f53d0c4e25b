"""The engine's system checks: every registered saga definition keeps its rules, every command
it sends has a service to handle it, and the saga settings keep the redelivery ordering."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from orders.saga import ORDER_SAGA
from sagas import checks, registry
from sagas.config import saga_config
from sagas.core.definition import SagaDefinition, Step, StepKind
from sagas.worker import SagaWorker


def check_ids() -> list[str]:
    return [message.id for message in run_checks(tags=[checks.TAG]) if message.id]


@contextmanager
def registered(definition: SagaDefinition) -> Iterator[None]:
    assert definition.name not in registry.names()
    registry.register(definition)
    try:
        yield
    finally:
        registry.unregister(definition.name)


def test_the_registered_sagas_and_the_settings_pass_the_checks() -> None:
    assert registry.names() == [ORDER_SAGA]
    assert check_ids() == []


def test_a_definition_that_breaks_its_rules_fails_with_e002() -> None:
    # Handled commands, so that only the graph is wrong: a retriable step before any pivot.
    broken = SagaDefinition(
        "broken",
        (
            Step("create", "orders.create", "orders.cancel"),
            Step("approve", "orders.approve", None, ("create",), StepKind.RETRIABLE),
        ),
    )
    with registered(broken):
        messages = run_checks(tags=[checks.TAG])

    assert [m.id for m in messages] == ["sagas.E002"]
    assert "retriable step 'approve' must follow the pivot" in messages[0].msg
    assert check_ids() == []


def test_a_command_no_service_handles_fails_with_e003() -> None:
    unhandled = SagaDefinition("unhandled", (Step("bill", "billing.charge", "billing.refund"),))
    with registered(unhandled):
        messages = run_checks(tags=[checks.TAG])

    assert [m.id for m in messages] == ["sagas.E003", "sagas.E003"]
    assert "'billing.charge'" in messages[0].msg
    assert "'billing.refund'" in messages[1].msg


def broken_ordering(monkeypatch: pytest.MonkeyPatch) -> None:
    config = dataclasses.replace(saga_config(), queue_retry=int(saga_config().step_deadline) + 1)
    monkeypatch.setattr(checks, "saga_config", lambda: config)


def test_settings_that_break_the_redelivery_ordering_fail_with_e001(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken_ordering(monkeypatch)

    assert check_ids() == ["sagas.E001"]


def test_a_saga_worker_does_not_start_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    broken_ordering(monkeypatch)

    def run(self: Any) -> None:
        raise AssertionError("the worker started despite a failing check")

    monkeypatch.setattr(SagaWorker, "run", run)
    with pytest.raises(SystemCheckError, match=r"sagas\.E001"):
        call_command("saga_worker", skip_checks=False)
