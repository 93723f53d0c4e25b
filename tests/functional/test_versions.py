"""Changing the order saga while orders are in flight (docs/architecture.md §10), with real
processes: orders start under version 1 and wait at the shipment (no shipping cluster runs yet);
the system is rolled out with new code that registers version 2 (version 1 plus a customer
notification step, served by a new Notification Service, tests/notices); new orders start under
version 2. Each order finishes by the version it started with, and the audit is clean."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from lab.system import System, local_env
from sagas.core.state import step_log
from tests.functional.harness import FAST, Api, RunningSystem, postgres_database

pytestmark = pytest.mark.processes

V1_STEPS = {"create_order", "reserve_stock", "charge_payment", "schedule_shipment", "approve_order"}
V2_STEPS = {*V1_STEPS, "notify_customer"}
NEW_CODE = {"DJANGO_SETTINGS_MODULE": "tests.notices.settings"}
ORDERS = 4


def wait_for(what: str, ready: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def finishing_lines(log_dir: Path) -> list[tuple[str, str]]:
    """The log lines for sagas that completed, from whichever process decided the end (a
    service worker where the last reply landed, or a saga worker): (process, line)."""
    return [
        (f"{log_dir.name}/{log.stem}", line)
        for log in sorted(log_dir.glob("*.log"))
        for line in log.read_text().splitlines()
        if '"saga_completed"' in line
    ]


def test_orders_of_the_old_version_finish_on_it_while_new_orders_run_the_added_step(
    tmp_path: Path,
) -> None:
    with postgres_database() as databases:
        env = {
            **local_env(tmp_path, "versions-" + "x" * 50),
            **FAST,
            **databases,
            "LOG_LEVEL": "INFO",  # the saga workers log every saga's completion, with its version
            # Long enough that the orders waiting for the late shipping cluster do not run out of
            # attempts (and compensate) while the rollout takes place.
            "SAGA_STEP_DEADLINE_SECONDS": "30",
        }
        # The old code: no Notification Service, and no shipping cluster yet, so version 1
        # orders wait at their pivot.
        old = System(
            env=env,
            log_dir=tmp_path / "v1",
            saga_workers=1,
            q_workers=1,
            queues=("orders", "payments", "inventory"),
        )
        new = System(
            env={**env, **NEW_CODE},
            log_dir=tmp_path / "v2",
            saga_workers=2,
            q_workers=1,
            queues=(*settings.SERVICE_QUEUES, "notices"),
        )
        old.migrate()
        token = dict(re.findall(r"user (\w+): API token (\w+)", old.manage("seed_demo")))["demo"]
        db = RunningSystem(old, {"demo": token, "admin": token})
        try:
            old.start()
            placed_v1 = [Api(old.url, token).order() for _ in range(ORDERS)]
            v1_ids = [p["saga_id"] for p in placed_v1]
            wait_for(
                "the version 1 orders to reach the shipment",
                lambda: (
                    sum(
                        step_log(state)["schedule_shipment"]["status"] == "running"
                        for (state,) in db.sql(
                            "SELECT state FROM sagas_saga WHERE id = ANY(%s::uuid[])", v1_ids
                        )
                    )
                    == ORDERS
                ),
            )

            # The rollout: migrate with the new code (it adds the Notification Service's
            # tables), start the new processes beside the old ones, then stop the old ones.
            new.migrate()
            before = new.manage("saga", "versions")
            new.start()
            old_pids = [p.pid for p in old.procs]
            old.stop()
            assert all(not p.alive for p in old.procs)
            print(f"rollout: old processes {old_pids} stopped; new {[p.pid for p in new.procs]}")
            print(before)

            placed_v2 = [Api(new.url, token).order() for _ in range(ORDERS)]
            v2_ids = [p["saga_id"] for p in placed_v2]
            shop = Api(new.url, token)
            finished = [shop.wait(p["order_id"]) for p in (*placed_v1, *placed_v2)]
            assert [o["status"] for o in finished] == ["completed"] * (2 * ORDERS)

            db = RunningSystem(new, {"demo": token, "admin": token})
            report = db.wait_quiet()
            versions = dict(db.sql("SELECT id::text, version FROM sagas_saga"))
            steps_sent = db.sql(
                "SELECT saga_id::text, array_agg(DISTINCT step) FROM sagas_sagaevent "
                "WHERE kind = 'step_sent' GROUP BY saga_id"
            )
            succeeded = db.sql(
                "SELECT saga_id::text, array_agg(step ORDER BY id) FROM sagas_sagaevent "
                "WHERE kind = 'step_succeeded' GROUP BY saga_id"
            )
            notices = {row[0] for row in db.sql("SELECT saga_id::text FROM notices_notice")}
            after = new.manage("saga", "versions")
        finally:
            new.stop()
            old.stop()

    logged = finishing_lines(tmp_path / "v1") + finishing_lines(tmp_path / "v2")
    for process, line in logged:
        print(f"{process}: {line}")
    for saga_id, steps in sorted(succeeded, key=lambda row: (versions[row[0]], row[0])):
        print(f"order saga v{versions[saga_id]} {saga_id[:8]} succeeded: {', '.join(steps)}")
    print(after)
    lines = [{**json.loads(line), "process": process} for process, line in logged]

    assert {versions[i] for i in v1_ids} == {1}
    assert {versions[i] for i in v2_ids} == {2}
    sent = {saga_id: set(steps) for saga_id, steps in steps_sent}
    assert all(sent[i] == V1_STEPS for i in v1_ids), "a version 1 order ran another graph"
    assert all(sent[i] == V2_STEPS for i in v2_ids), "a version 2 order missed the new step"
    order_of_success = dict(succeeded)
    assert all(order_of_success[i][-2:] == ["approve_order", "notify_customer"] for i in v2_ids)
    assert notices == set(v2_ids)
    assert report["violations"] == [] and report["by_status"] == {"completed": 2 * ORDERS}
    # Every completion was logged by a saga worker, with the version the order started with.
    assert sorted((line["saga_id"], line["saga_version"]) for line in lines) == sorted(
        [(i, 1) for i in v1_ids] + [(i, 2) for i in v2_ids]
    )
    assert {line["process"].split("/")[0] for line in lines if line["saga_version"] == 2} == {"v2"}
    assert "order              1          4         4" in before
    assert "order              2          0         0  new sagas start here" in before
    assert "order              1          0         4" in after
    assert "order              2          0         4  new sagas start here" in after
