"""The cluster watchdog's stall rule, without a cluster or a database: given when a task body
last finished and when the monitor last acknowledged one, and whether work is waiting in the
queue, is the cluster wedged?"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sagas import cluster

NOW = 1_000_000.0
LIMIT = 10.0


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "time", SimpleNamespace(time=lambda: NOW))


def progress(*, executed_ago: float, acknowledged_ago: float) -> Any:
    return SimpleNamespace(
        executed=SimpleNamespace(value=NOW - executed_ago),
        acknowledged=SimpleNamespace(value=NOW - acknowledged_ago),
    )


def work_waiting(monkeypatch: pytest.MonkeyPatch, waiting: bool) -> list[tuple[str, float]]:
    """Answer `claimable_waiting` with `waiting`; returns the questions it was asked."""
    asked: list[tuple[str, float]] = []

    def claimable_waiting(queue: str, older_than: float) -> bool:
        asked.append((queue, older_than))
        return waiting

    monkeypatch.setattr(cluster, "claimable_waiting", claimable_waiting)
    return asked


def test_a_busy_healthy_cluster_is_not_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work always waits in a busy queue and tasks finish all the time; the monitor keeps up.
    asked = work_waiting(monkeypatch, True)

    assert not cluster.stalled(
        "payments", progress(executed_ago=0, acknowledged_ago=LIMIT - 1), LIMIT
    )
    assert asked == []  # a recent acknowledgement settles it: no database question


def test_a_cluster_whose_tasks_run_but_whose_acknowledgements_lag_within_the_limit_is_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work_waiting(monkeypatch, False)

    assert not cluster.stalled(
        "payments", progress(executed_ago=0, acknowledged_ago=LIMIT * 0.9), LIMIT
    )


def test_an_idle_cluster_with_nothing_waiting_is_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = work_waiting(monkeypatch, False)

    assert not cluster.stalled("payments", progress(executed_ago=600, acknowledged_ago=600), LIMIT)
    assert asked == [("payments", 2.0)]


def test_work_waiting_that_nobody_takes_past_the_limit_is_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = work_waiting(monkeypatch, True)

    assert cluster.stalled("payments", progress(executed_ago=600, acknowledged_ago=600), LIMIT)
    assert asked == [("payments", 2.0)]


def test_work_waiting_at_exactly_the_limit_is_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    work_waiting(monkeypatch, True)

    assert cluster.stalled("payments", progress(executed_ago=LIMIT, acknowledged_ago=LIMIT), LIMIT)


def test_tasks_finishing_without_acknowledgements_past_the_limit_is_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The monitor is wedged: task bodies keep finishing, nothing is acknowledged.
    work_waiting(monkeypatch, False)

    assert cluster.stalled("payments", progress(executed_ago=1, acknowledged_ago=LIMIT), LIMIT)


def test_tasks_finishing_just_after_the_last_acknowledgement_are_not_yet_a_wedged_monitor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Half the limit is the margin: a task finishing right after an acknowledgement is normal.
    work_waiting(monkeypatch, False)

    assert not cluster.stalled(
        "payments", progress(executed_ago=LIMIT - LIMIT / 2, acknowledged_ago=LIMIT), LIMIT
    )
    assert cluster.stalled(
        "payments", progress(executed_ago=LIMIT / 2 - 0.5, acknowledged_ago=LIMIT), LIMIT
    )
