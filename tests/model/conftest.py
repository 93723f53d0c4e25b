"""What every run of the saga state machine needs, the runs that hunt mutants included."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from django.db import connection

from orders.saga import ORDER_SAGA, order_saga
from sagas import registry, transport
from sagas.config import saga_config
from sagas.core.definition import SagaDefinition
from tests.model.test_saga_machine import compensation_after_its_dependents


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    assert connection.vendor == "postgresql", "the model test needs PostgreSQL (set DATABASE_URL)"


@pytest.fixture(autouse=True)
def small_budgets() -> Iterator[SagaDefinition]:
    """The order saga as production defines it, but every step allowed two attempts (and two
    per compensation round): a few steps of a hostile network then exhaust a budget, so the
    paths where a saga gives up, parks or is retried by an operator are walked in every run."""
    original = registry.latest(ORDER_SAGA)
    config = saga_config()
    shape = order_saga(config)
    small = replace(
        shape,
        steps=tuple(
            replace(
                step,
                retry=replace(step.retry, max_attempts=2),
                compensation_retry=replace(step.compensation_retry, max_attempts=2),
            )
            for step in shape.steps
        ),
    )
    registry.register(small)
    yield small
    registry.register(original)


@pytest.fixture(autouse=True)
def compensations_are_checked_where_they_land() -> Iterator[None]:
    """Every command the network delivers runs through `compensation_after_its_dependents`."""
    transport.set_command_hook(compensation_after_its_dependents)
    yield
    transport.set_command_hook(None)


@pytest.fixture(autouse=True)
def _fewer_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Hundreds of runs log every saga event; a failure reports the shrunk steps instead.
    for name in ("sagas", "django-q"):
        caplog.set_level(logging.WARNING, logger=name)
