"""The engine's system checks: every registered saga definition keeps its rules, every command
it sends has a service to handle it, the saga settings keep the redelivery ordering, and no saga
in flight uses a definition version that is not registered."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.checks import WARNING, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import OperationalError

from orders.saga import ORDER_SAGA
from sagas import checks, registry
from sagas.config import saga_config
from sagas.core.definition import SagaDefinition, Step, StepKind
from sagas.models import Saga
from sagas.services import start_saga
from sagas.worker import SagaWorker
from tests.services.builders import order_data


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


def test_a_merge_of_fewer_than_one_task_fails_with_e006(monkeypatch: pytest.MonkeyPatch) -> None:
    config = dataclasses.replace(saga_config(), merge_tasks=0)
    monkeypatch.setattr(checks, "saga_config", lambda: config)

    assert check_ids() == ["sagas.E006"]


@pytest.mark.django_db
def test_a_saga_worker_does_not_start_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    broken_ordering(monkeypatch)
    worker_must_not_run(monkeypatch)

    with pytest.raises(SystemCheckError, match=r"sagas\.E001"):
        call_command("saga_worker", skip_checks=False)


def order_of_version(version: int, status: str = "running") -> Saga:
    saga = start_saga(saga_type=ORDER_SAGA, data=order_data().to_json(), correlation_id="o-1")
    Saga.objects.filter(id=saga.id).update(version=version, status=status)
    return saga


def worker_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(self: Any) -> None:
        raise AssertionError("the worker started despite a failing check")

    monkeypatch.setattr(SagaWorker, "run", run)


@pytest.mark.django_db
def test_a_saga_in_flight_of_an_unregistered_version_fails_the_database_check_with_e004() -> None:
    order_of_version(1)
    order_of_version(7)

    messages = run_checks(tags=[checks.TAG], databases=["default"])

    assert [m.id for m in messages] == ["sagas.E004"]
    assert "'order' version 7 are in flight" in messages[0].msg


@pytest.mark.django_db
def test_the_version_check_reads_the_database_only_when_given_databases() -> None:
    order_of_version(7)

    # Like Django's own database checks: `manage.py check` and runserver do not touch it.
    assert check_ids() == []


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["completed", "failed"])
def test_finished_sagas_of_an_unregistered_version_pass_the_check(status: str) -> None:
    order_of_version(7, status)

    assert run_checks(tags=[checks.TAG], databases=["default"]) == []


@pytest.mark.django_db
def test_a_stuck_saga_of_an_unregistered_version_fails_the_check_an_operator_needs_it() -> None:
    order_of_version(7, "stuck")

    assert [m.id for m in run_checks(tags=[checks.TAG], databases=["default"])] == ["sagas.E004"]


@pytest.mark.django_db
def test_a_saga_worker_does_not_start_beside_sagas_of_a_version_it_cannot_decide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order_of_version(7)
    worker_must_not_run(monkeypatch)

    with pytest.raises(SystemCheckError, match=r"sagas\.E004"):
        call_command("saga_worker", skip_checks=False)


@pytest.mark.django_db
def test_a_database_it_cannot_read_is_a_warning_so_a_worker_starts_and_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(alias: str) -> list[tuple[str, int]]:
        raise OperationalError("connection refused")

    monkeypatch.setattr(checks, "in_flight_versions", down)

    messages = run_checks(tags=[checks.TAG], databases=["default"])

    assert [(m.id, m.level) for m in messages] == [("sagas.W004", WARNING)]
    assert "connection refused" in messages[0].msg


@pytest.mark.django_db
def test_migrate_refuses_a_deploy_that_dropped_a_version_still_in_flight() -> None:
    order_of_version(7)

    with pytest.raises(SystemCheckError, match=r"sagas\.E004"):
        call_command("migrate", verbosity=0, skip_checks=False)
