"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Any

import pytest

from sagas import outbox
from sagas.messages import Command


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Command]:
    """Every command queued from now on, in order (they are queued as well)."""
    seen: list[Command] = []
    enqueue = outbox.enqueue

    def watched(commands: Any, **kwargs: Any) -> None:
        commands = list(commands)
        seen.extend(commands)
        enqueue(commands, **kwargs)

    monkeypatch.setattr(outbox, "enqueue", watched)
    return seen
