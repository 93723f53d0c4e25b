"""The one way in: starting sagas and the operator actions. The REST API, the admin, the
management commands and the dashboard all call these; none of them touches the store."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sagas import metrics, registry, store
from sagas.core.state import SagaState, SagaStatus
from sagas.core.transition import Cancel, Input, Resume, Start
from sagas.exceptions import SagaActionRejected, SagaNotFound
from sagas.models import Saga


def start_saga(
    *,
    saga_type: str,
    data: dict[str, Any],
    correlation_id: str,
    owner_id: int | None = None,
    saga_id: uuid.UUID | None = None,
) -> Saga:
    """Create a saga and queue its first commands in one transaction of the saga database."""
    definition = registry.definition(saga_type)
    now = timezone.now()
    saga = Saga(
        id=saga_id or uuid.uuid4(),
        type=saga_type,
        data=data,
        state=SagaState.new(definition).to_json(),
        correlation_id=correlation_id,
        owner_id=owner_id,
        created_at=now,
    )
    with transaction.atomic():
        commands, events, _ = store.apply(saga, [Start()], now)
        saga.save(force_insert=True)
        store.record([], commands, events)
    metrics.SAGAS_STARTED.labels(saga_type).inc()
    return saga


def retry_saga(*, saga_id: uuid.UUID | str) -> Saga:
    """Give a stuck saga's stalled steps a fresh round of attempts. Idempotent."""
    return _operator_action(saga_id, Resume())


def compensate_saga(*, saga_id: uuid.UUID | str, message: str = "cancelled by an operator") -> Saga:
    """Turn a saga back: compensate what it did (refused past its pivot). Idempotent."""
    return _operator_action(saga_id, Cancel(message))


def _operator_action(saga_id: uuid.UUID | str, action: Input) -> Saga:
    now = timezone.now()
    with transaction.atomic():
        try:
            saga = Saga.objects.select_for_update(no_key=True).get(id=saga_id)
        except (Saga.DoesNotExist, ValidationError, ValueError):
            raise SagaNotFound(f"no saga {saga_id}") from None
        was_stuck = saga.status == SagaStatus.STUCK
        commands, events, rejected = store.apply(saga, [action], now)
        if rejected:
            raise SagaActionRejected(rejected)
        if (was_stuck and isinstance(action, Resume)) or saga.replies.exists():
            # Replies wait in the inbox (this path does not read it), or the saga was parked by
            # an engine error: a worker must look now, not at the next timer.
            saga.due_at = now
        # A worker holding a lease decided from the old state: bump the fence so it cannot commit.
        saga.lease_owner, saga.lease_until = "", None
        store.record([saga], commands, events)
        Saga.objects.filter(id=saga.id).update(fence=F("fence") + 1)
    return saga
