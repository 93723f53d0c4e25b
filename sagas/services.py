"""The one way in: starting sagas and the operator actions. The REST API, the admin, the
management commands and the dashboard all call these; none of them touches the store."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
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
    """Create a saga and queue its first commands in one transaction of the saga database.

    The saga starts with its type's latest registered definition and records that version: it is
    decided by it to the end, whatever versions are registered later."""
    definition = registry.latest(saga_type)
    now = timezone.now()
    saga = Saga(
        id=saga_id or uuid.uuid4(),
        type=saga_type,
        version=definition.version,
        data=data,
        state=SagaState.new(definition).to_json(),
        correlation_id=correlation_id,
        owner_id=owner_id,
        created_at=now,
    )
    # Within a caller's transaction (an order request is one), no savepoint: a failure here
    # fails the whole of it.
    with transaction.atomic(savepoint=False):
        commands, events, _ = store.apply(saga, [Start()], now)
        store.record([], commands, events, started=[saga])
    metrics.SAGAS_STARTED.labels(saga_type).inc()
    return saga


def retry_saga(*, saga_id: uuid.UUID | str) -> Saga:
    """Give a stuck saga's stalled steps a fresh round of attempts.

    A repeat is a success that changes nothing: the saga was already retried and is in flight
    again. Raises SagaActionRejected for a saga that is not stuck and was never retried, or that
    has finished (the rules: sagas.core.transition, `_Decider._applies`), and SagaNotFound.
    """
    return _operator_action(saga_id, Resume())


def compensate_saga(*, saga_id: uuid.UUID | str, message: str = "cancelled by an operator") -> Saga:
    """Turn a saga back: compensate what it did.

    A repeat is a success that changes nothing: an operator already cancelled the saga (it is
    compensating, stuck while compensating, or failed with reason `cancelled`). Raises
    SagaActionRejected for a saga that is completed, past its pivot, or already turning back for
    another reason (a refusal, exhausted retries), and SagaNotFound.
    """
    return _operator_action(saga_id, Cancel(message))


def _operator_action(saga_id: uuid.UUID | str, action: Input) -> Saga:
    now = timezone.now()
    with transaction.atomic():
        try:
            saga = Saga.objects.select_for_update(no_key=True).get(id=saga_id)
        except (Saga.DoesNotExist, ValidationError, ValueError):
            raise SagaNotFound(f"no saga {saga_id}") from None
        try:
            registry.definition(saga.type, saga.version)
        except LookupError as exc:  # a deploy removed its version: nothing here can decide it
            raise SagaActionRejected(str(exc)) from None
        was_stuck = saga.status == SagaStatus.STUCK
        # In the form `apply` stores, whatever form the row holds (an older one, say): a repeat
        # is a state that did not change, not a state stored anew.
        before = SagaState.from_json(saga.state).to_json()
        commands, events, rejected = store.apply(saga, [action], now)
        if rejected:
            raise SagaActionRejected(rejected)
        if saga.state == before:
            # A repeat: the saga already reflects this action. Writing nothing leaves a worker
            # that holds the saga its lease.
            return saga
        if (was_stuck and isinstance(action, Resume)) or saga.replies.exists():
            # Replies wait in the inbox (this path does not read it), or the saga was parked by
            # an engine error: a worker must look now, not at the next timer.
            saga.due_at = now
        store.take_over(saga, commands, events)
    return saga
