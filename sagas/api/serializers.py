"""Response shapes of the operators' saga API: a saga, its step log and its event timeline; and
`FieldsMadeOnce`, the base of every serializer the API runs."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from sagas.core.state import SagaStatus, step_log
from sagas.models import Saga, SagaEvent

SAGA_STATUSES = [status.value for status in SagaStatus]


class FieldsMadeOnce(serializers.Serializer):
    """A serializer whose fields are made once for its class; each instance gets shallow copies.

    DRF deep-copies the declared fields for every instance, and a field's deep copy runs its
    `__init__` again, building its validators anew: for an order's body (a list, three nested
    serializers, twelve fields) that was about a sixth of the web process's CPU per order. A
    copy shares with the others only what validation reads and never changes (validators,
    error messages, compiled patterns); `bind` gives it its own name and parent. A list's
    child is copied likewise, and a nested serializer makes its own fields from its class's.
    For serializers whose fields do not depend on the instance (its context, say)."""

    _made: ClassVar[dict[type, dict[str, Any]]] = {}

    def get_fields(self) -> dict[str, Any]:
        made = FieldsMadeOnce._made.get(type(self))
        if made is None:  # two threads may both make them: either set serves
            made = FieldsMadeOnce._made[type(self)] = super().get_fields()
        return {name: copied(field) for name, field in made.items()}


def copied(field: Any) -> Any:
    """A shallow copy of `field` for one serializer instance, with a copy of its child."""
    copy_ = object.__new__(type(field))  # what copy.copy does, without its generic steps
    copy_.__dict__.update(field.__dict__)
    child = getattr(field, "child", None)
    if child is not None:
        copy_.child = copied(child)
        copy_.child.parent = copy_  # bound to the list already: its name and source are ""
    return copy_


class StepSerializer(FieldsMadeOnce):
    """One step of the saga as its step log holds it (`step_log(saga.state)`)."""

    name = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    compensation_attempts = serializers.IntegerField(read_only=True)


class ReasonSerializer(FieldsMadeOnce):
    code = serializers.CharField(read_only=True, help_text="e.g. payment_declined, out_of_stock")
    message = serializers.CharField(read_only=True)


def steps_of(saga: Saga) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "status": step["status"],
            "attempts": step["attempts"],
            "compensation_attempts": step["compensation_attempts"],
        }
        for name, step in step_log(saga.state).items()
    ]


def reason_of(saga: Saga) -> dict[str, str] | None:
    if not saga.reason_code:
        return None
    return {"code": saga.reason_code, "message": saga.reason_message}


class SagaSerializer(FieldsMadeOnce):
    """A saga in the operators' list."""

    id = serializers.UUIDField(read_only=True)
    type = serializers.CharField(read_only=True)
    version = serializers.IntegerField(
        read_only=True,
        min_value=1,
        help_text="The version of the type's definition the saga started with and runs by.",
    )
    status = serializers.ChoiceField(choices=SAGA_STATUSES, read_only=True)
    reason = ReasonSerializer(read_only=True, allow_null=True)
    correlation_id = serializers.CharField(read_only=True, help_text="The order id of an order.")
    owner_id = serializers.IntegerField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = {
            "id": saga.id,
            "type": saga.type,
            "version": saga.version,
            "status": saga.status,
            "reason": reason_of(saga),
            "correlation_id": saga.correlation_id,
            "owner_id": saga.owner_id,
            "created_at": saga.created_at,
            "updated_at": saga.updated_at,
            "finished_at": saga.finished_at,
        }
        return super().to_representation(view)


class SagaEventSerializer(FieldsMadeOnce):
    id = serializers.IntegerField(read_only=True)
    at = serializers.DateTimeField(read_only=True)
    kind = serializers.CharField(read_only=True, help_text="e.g. step_succeeded")
    step = serializers.CharField(read_only=True)
    attempt = serializers.IntegerField(read_only=True)
    detail = serializers.DictField(read_only=True)


class SagaStepLogSerializer(StepSerializer):
    kind = serializers.CharField(read_only=True, help_text="compensatable, pivot or retriable")
    error = serializers.CharField(read_only=True, help_text="Last refusal or fault code.")
    stalled = serializers.BooleanField(read_only=True, help_text="Waits for an operator.")


class SagaDetailSerializer(SagaSerializer):
    """A saga with its step log and its event timeline (in the order things happened)."""

    steps = SagaStepLogSerializer(many=True, read_only=True)
    events = SagaEventSerializer(many=True, read_only=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = super().to_representation(saga)
        kinds = self.context.get("step_kinds", {})
        logged = step_log(saga.state)
        view["steps"] = [
            {
                **step,
                "kind": kinds.get(step["name"], ""),
                "error": logged[step["name"]]["error"],
                "stalled": logged[step["name"]]["stalled"],
            }
            for step in steps_of(saga)
        ]
        events: list[SagaEvent] = self.context["events"]
        view["events"] = [SagaEventSerializer(event).data for event in events]
        return view


class SagaActionResultSerializer(FieldsMadeOnce):
    """What an operator action left: the saga's status and steps. A repeat answers the same."""

    id = serializers.UUIDField(read_only=True)
    status = serializers.ChoiceField(choices=SAGA_STATUSES, read_only=True)
    reason = ReasonSerializer(read_only=True, allow_null=True)
    steps = StepSerializer(many=True, read_only=True)

    def to_representation(self, saga: Saga) -> dict[str, Any]:
        view = {
            "id": saga.id,
            "status": saga.status,
            "reason": reason_of(saga),
            "steps": steps_of(saga),
        }
        return super().to_representation(view)
