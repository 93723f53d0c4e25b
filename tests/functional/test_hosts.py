"""Many workers on many hosts: two namespaced hosts share the work through PostgreSQL alone;
host A is cut off mid-run and killed, host B takes over its sagas and its queue tasks, every
saga finishes and the invariants hold (manage.py saga_hosts, lab.hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings

from lab import netns

pytestmark = pytest.mark.processes

ORDERS, DECLINED = 60, 3  # one order in 20 is paid with a declined card


@pytest.fixture(scope="module")
def takeover() -> dict[str, Any]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"namespaced hosts cannot be made here: {reason}")
    assert os.environ.get("DATABASE_URL", "").startswith("postgres")
    done = subprocess.run(
        [
            sys.executable,
            str(settings.BASE_DIR / "manage.py"),
            "saga_hosts",
            f"--orders={ORDERS}",
            "--concurrency=6",
            "--cut-after=0.25",  # early: this run is short, and orders must come after the cut
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    figures["output"] = output
    return figures


def test_every_saga_ends_completed_or_failed_and_only_the_declined_fail(
    takeover: dict[str, Any],
) -> None:
    assert takeover["orders"] == ORDERS
    assert (takeover["completed"], takeover["failed"]) == (ORDERS - DECLINED, DECLINED)
    assert takeover["stuck"] == takeover["unfinished"] == 0


def test_the_audit_is_clean_and_nothing_is_left_in_flight(takeover: dict[str, Any]) -> None:
    assert takeover["violations"] == 0
    assert takeover["queued_tasks"] == takeover["unread_replies"] == 0
    assert "lost orders: 0" in takeover["output"]


def test_both_hosts_did_work_before_the_cut(takeover: dict[str, Any]) -> None:
    for host in ("host-a", "host-b"):
        work = takeover["work"][host]
        assert work["sagas_before_cut"] > 0, host
        assert work["commands_before_cut"] > 0, host


def test_the_cut_host_lost_its_path_to_the_database_and_committed_nothing_after(
    takeover: dict[str, Any],
) -> None:
    cut, a = takeover["cut"], takeover["work"]["host-a"]
    assert cut["reached_before"] and not cut["reached_after"]
    assert cut["error"] is None
    assert (a["sagas"], a["commands"]) == (a["sagas_before_cut"], a["commands_before_cut"])
    b = takeover["work"]["host-b"]
    assert b["sagas"] > b["sagas_before_cut"] and b["commands"] > b["commands_before_cut"]


def test_host_b_finished_the_sagas_host_a_had_claimed(takeover: dict[str, Any]) -> None:
    assert takeover["taken_over"] > 0
    assert takeover["taken_over_by"] is not None
    # Those leased to A when its link went down were claimed again once the lease expired.
    assert takeover["leased_taken_over"] == takeover["cut"]["leased"]
    assert takeover["taken_over"] >= takeover["leased_taken_over"]
    if takeover["cut"]["leased"]:
        assert takeover["cut"]["leases_freed_after"] is not None
    # The queue tasks A's clusters had claimed were delivered again and acknowledged.
    assert takeover["held_tasks_left"] == 0
    if takeover["cut"]["held_tasks"]:
        assert takeover["cut"]["tasks_redelivered_after"] is not None
