"""The participant registry: how a service's steps are found by the commands that reach them.

Services register at start-up (`AppConfig.ready()`), before any test runs; these tests register
steps of their own in an empty registry, so what `register` stores is read back, not assumed.
"""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import OrderStepRecord
from sagas import participant
from sagas.messages import Command
from sagas.participant import Participant, participant_for, register, registered_commands


def do(command: Command) -> dict[str, Any]:
    return {"done": command.step}


def undo(command: Command, done: dict[str, Any]) -> dict[str, Any]:
    return {"undone": done}


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(participant, "_by_command", {})


def test_a_step_is_found_by_its_action_and_by_its_compensation() -> None:
    register(
        action="parcels.book",
        compensation="parcels.unbook",
        record=OrderStepRecord,
        do=do,
        undo=undo,
    )

    expected = Participant("parcels.book", "parcels.unbook", OrderStepRecord, do, undo)
    assert participant_for("parcels.book") == expected
    assert participant_for("parcels.unbook") == expected
    assert registered_commands() == ["parcels.book", "parcels.unbook"]


def test_a_step_without_a_compensation_is_found_by_its_action_alone() -> None:
    register(action="parcels.stamp", record=OrderStepRecord, do=do)

    assert participant_for("parcels.stamp") == Participant(
        "parcels.stamp", None, OrderStepRecord, do, None
    )
    assert registered_commands() == ["parcels.stamp"]


@pytest.mark.parametrize(
    "half", [{"compensation": "parcels.unbook"}, {"undo": undo}], ids=["no undo", "no command"]
)
def test_a_compensation_needs_both_its_command_and_its_undo_function(half: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"parcels\.book: give both a compensation command and"):
        register(action="parcels.book", record=OrderStepRecord, do=do, **half)
    assert registered_commands() == []


def test_a_command_no_service_registered_is_a_lookup_error_naming_it() -> None:
    with pytest.raises(LookupError, match=r"no service handles the command 'parcels\.lost'"):
        participant_for("parcels.lost")
