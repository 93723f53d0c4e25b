"""The cluster watchdog's stall rule, without a cluster or a database: given when a task body
last finished, when a task was last acknowledged, when the pusher handed tasks on and when a
worker last took one, and whether work is waiting in the queue, is the cluster wedged?"""

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


def progress(
    *,
    executed_ago: float,
    acknowledged_ago: float,
    taken_ago: float | None = None,
    handed_on_ago: float | None = None,
) -> Any:
    """The progress values; by default a worker took the last task handed on as it was
    acknowledged."""
    taken_ago = acknowledged_ago if taken_ago is None else taken_ago
    return SimpleNamespace(
        executed=SimpleNamespace(value=NOW - executed_ago),
        acknowledged=SimpleNamespace(value=NOW - acknowledged_ago),
        taken=SimpleNamespace(value=NOW - taken_ago),
        handed_on=SimpleNamespace(
            value=NOW - (taken_ago if handed_on_ago is None else handed_on_ago)
        ),
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


def test_tasks_handed_on_that_no_worker_takes_past_the_limit_are_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker died holding the task queue's lock: the pusher hands carried tasks on, whose rows
    # are claimed for `retry` (nothing claimable), and no worker takes them.
    asked = work_waiting(monkeypatch, False)
    wedged = progress(executed_ago=600, acknowledged_ago=600, taken_ago=600, handed_on_ago=LIMIT)

    assert cluster.stalled("payments", wedged, LIMIT)
    assert asked == []  # settled without a database question


def test_tasks_handed_on_within_the_limit_are_not_yet_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle cluster that just got a task: the last acknowledgement is old, the hand-on new.
    work_waiting(monkeypatch, False)
    fresh = progress(executed_ago=600, acknowledged_ago=600, taken_ago=600, handed_on_ago=LIMIT - 1)

    assert not cluster.stalled("payments", fresh, LIMIT)


def test_tasks_taken_since_they_were_handed_on_are_not_stalled_by_that_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker took them (a long task, or tasks failing and waiting for `retry`): this rule is
    # satisfied; what is claimable still counts.
    asked = work_waiting(monkeypatch, False)
    taken = progress(executed_ago=600, acknowledged_ago=600, taken_ago=1, handed_on_ago=LIMIT)

    assert not cluster.stalled("payments", taken, LIMIT)
    assert asked == [("payments", 2.0)]


def test_only_the_first_hand_on_since_a_worker_took_a_task_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr(cluster, "time", clock)
    watched = cluster.Progress.new()
    watched.taken.value = watched.handed_on.value = NOW - 100
    monkeypatch.setattr(cluster, "progress", watched)

    cluster.handed_on()
    assert watched.handed_on.value == NOW
    clock.time = lambda: NOW + 5
    cluster.handed_on()  # no worker took one since: the first hand-on stands
    assert watched.handed_on.value == NOW
    watched.taken.value = NOW + 6
    clock.time = lambda: NOW + 7
    cluster.handed_on()
    assert watched.handed_on.value == NOW + 7
