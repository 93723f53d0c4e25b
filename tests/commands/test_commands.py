"""Management commands: seed_demo, saga (list/show/retry/compensate/purge/versions), saga_audit;
and the
helpers they rest on (fault specs). The cluster watchdog's stall rule is in
tests/unit/test_cluster_watchdog.py."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from inventory.models import Product
from lab import faults
from orders.saga import ORDER_SAGA
from payments.models import Charge
from sagas import cluster
from sagas.core.state import step_log
from sagas.management.commands import qcluster
from sagas.models import Saga
from sagas.services import start_saga
from tests.services.builders import order_data

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def order_saga() -> Saga:
    data = order_data(total=Decimal("10.00"), payment_token="pm_x")
    return start_saga(saga_type=ORDER_SAGA, data=data.to_json(), correlation_id=str(data.order_id))


def test_seed_demo_twice_changes_nothing_the_second_time() -> None:
    first = run("seed_demo")
    snapshot = (Product.objects.count(), get_user_model().objects.count())
    second = run("seed_demo")
    assert "5 products created" in first
    assert "0 products created, 5 already there" in second
    assert (Product.objects.count(), get_user_model().objects.count()) == snapshot == (5, 2)
    assert get_user_model().objects.get(username="admin").is_staff
    assert not get_user_model().objects.get(username="demo").is_staff
    tokens = [line.split()[-1] for line in second.splitlines() if "API token" in line]
    assert tokens == [line.split()[-1] for line in first.splitlines() if "API token" in line]


def test_saga_list_and_show_describe_a_saga() -> None:
    saga = order_saga()
    listing = run("saga", "list", "--status", "pending")
    assert str(saga.id) in listing and "1 saga(s) shown" in listing
    assert "0 saga(s) shown" in run("saga", "list", "--status", "failed")
    shown = json.loads(run("saga", "show", str(saga.id), "--json"))
    assert shown["status"] == "pending"
    assert shown["steps"]["charge_payment"]["attempts"] == 1
    assert [e["kind"] for e in shown["events"]][:2] == ["saga_started", "step_sent"]


def test_saga_compensate_turns_a_saga_back_and_is_idempotent() -> None:
    saga = order_saga()
    run("saga", "compensate", str(saga.id))
    run("saga", "compensate", str(saga.id))
    saga.refresh_from_db()
    assert (saga.status, saga.reason_code) == ("compensating", "cancelled")
    steps = step_log(saga.state)
    assert [steps[n]["compensation_attempts"] for n in ("create_order", "reserve_stock")] == [1, 1]


def finish(saga: Saga, status: str, reason: str) -> None:
    """Stand in for the workers: the saga ended `status`, turned back for `reason` if any."""
    state = dict(saga.state, status=status, reason_code=reason or None)
    Saga.objects.filter(id=saga.id).update(status=status, reason_code=reason, state=state)


def test_saga_retry_of_a_failed_saga_exits_non_zero_saying_why_and_changes_nothing() -> None:
    saga = order_saga()
    finish(saga, "failed", "payment_declined")
    events = saga.events.count()

    with pytest.raises(CommandError) as refused:
        run("saga", "retry", str(saga.id))

    assert str(refused.value) == (
        f"1 of 1 saga(s) could not be changed:\n"
        f"  {saga.id}: the saga is failed, not stuck: nothing to retry"
    )
    saga.refresh_from_db()
    assert (saga.status, saga.reason_code, saga.events.count()) == (
        "failed",
        "payment_declined",
        events,
    )


def test_saga_compensate_of_a_completed_saga_exits_non_zero_and_still_acts_on_the_others() -> None:
    done, running = order_saga(), order_saga()
    finish(done, "completed", "")

    with pytest.raises(
        CommandError, match=rf"1 of 2 .*\n  {done.id}: the saga is already completed"
    ):
        run("saga", "compensate", str(done.id), str(running.id))

    running.refresh_from_db()
    assert (running.status, running.reason_code) == ("compensating", "cancelled")


def test_saga_commands_fail_clearly_on_unknown_ids_and_change_nothing() -> None:
    saga = order_saga()
    for args in (("show", "nope"), ("retry", str(uuid.uuid4())), ("compensate", "not-a-uuid")):
        with pytest.raises(CommandError):
            run("saga", *args)
    saga.refresh_from_db()
    assert saga.status == "pending"
    with pytest.raises(CommandError, match="--limit"):
        run("saga", "list", "--limit", "0")


def test_saga_purge_deletes_only_finished_sagas_older_than_the_cutoff() -> None:
    old, recent, running = order_saga(), order_saga(), order_saga()
    Saga.objects.filter(id=old.id).update(
        status="completed",
        created_at=timezone.now() - timedelta(days=41),
        finished_at=timezone.now() - timedelta(days=40),
    )
    Saga.objects.filter(id=recent.id).update(status="failed", finished_at=timezone.now())
    dry_run = run("saga", "purge", "--days", "30", "--dry-run")
    assert "\n1 finished saga(s) (sagas.SagaEvent 4) would be purged: finished before" in dry_run
    assert Saga.objects.count() == 3
    run("saga", "purge", "--days", "30")
    assert set(Saga.objects.values_list("id", flat=True)) == {recent.id, running.id}


def test_saga_versions_shows_each_version_in_use_with_its_in_flight_and_total_counts() -> None:
    done, running, lost = order_saga(), order_saga(), order_saga()
    Saga.objects.filter(id=done.id).update(status="completed")
    Saga.objects.filter(id__in=[running.id, lost.id]).update(status="running")
    Saga.objects.filter(id=lost.id).update(version=4)

    text = run("saga", "versions")
    rows = json.loads(run("saga", "versions", "--json"))

    assert text.splitlines()[1:] == [
        "order              1          1         2  new sagas start here",
        "order              4          1         1  NOT REGISTERED",
    ]
    assert rows == [
        {"type": "order", "version": 1, "registered": True, "current": True, "in_flight": 1,
         "total": 2},
        {"type": "order", "version": 4, "registered": False, "current": False, "in_flight": 1,
         "total": 1},
    ]  # fmt: skip


def test_saga_versions_lists_a_registered_version_no_saga_uses_yet() -> None:
    assert run("saga", "versions").splitlines()[1:] == [
        "order              1          0         0  new sagas start here"
    ]


def test_saga_purge_reports_each_batch_and_defaults_to_the_retention_setting() -> None:
    old = [order_saga() for _ in range(3)]
    Saga.objects.filter(id__in=[s.id for s in old]).update(
        status="completed",
        created_at=timezone.now() - timedelta(days=41),
        finished_at=timezone.now() - timedelta(days=40),
    )

    out = run("saga", "purge", "--batch-size", "2")

    assert "batch 1: 2 saga(s) purged so far" in out
    assert "batch 2: 3 saga(s) purged so far" in out
    assert "3 finished saga(s) (" in out and "sagas.SagaEvent" in out
    assert not Saga.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--days", "0"), "--days must be positive"), (("--batch-size", "0"), "--batch-size")],
)
def test_saga_purge_refuses_bad_options_and_changes_nothing(
    args: tuple[str, ...], message: str
) -> None:
    saga = order_saga()
    Saga.objects.filter(id=saga.id).update(
        status="completed",
        created_at=timezone.now() - timedelta(days=41),
        finished_at=timezone.now() - timedelta(days=40),
    )
    with pytest.raises(CommandError, match=message):
        run("saga", "purge", *args)
    assert Saga.objects.filter(id=saga.id).exists()


def test_saga_audit_passes_on_a_consistent_database_and_flags_a_stray_charge() -> None:
    run("seed_demo")
    saga = order_saga()
    assert "violations 0" in run("saga_audit")
    Saga.objects.filter(id=saga.id).update(status="failed", reason_code="payment_declined")
    Charge.objects.create(
        saga_id=saga.id,
        order_id=uuid.uuid4(),
        payment_token="pm_x",
        amount=Decimal("10.00"),
        currency="EUR",
    )
    with pytest.raises(CommandError, match="1 invariant violation"):
        run("saga_audit")


def test_saga_audit_flags_stock_that_is_not_conserved() -> None:
    run("seed_demo")
    Product.objects.filter(sku="MUG-002").update(available=999)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("saga_audit", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert any("MUG-002: stock not conserved" in v for v in report["violations"])


@pytest.mark.parametrize(
    "spec",
    [
        "payments.charge:boom:0.1",
        "payments.charge:error:2",
        "payments.charge:error",
        "x:delay=-5:0.5",
    ],
)
def test_a_bad_fault_spec_is_refused_with_the_item_named(spec: str) -> None:
    with pytest.raises(ValueError, match="bad SAGA_FAULTS item"):
        faults.parse(spec)


def test_fault_specs_parse() -> None:
    rules = faults.parse("payments.charge:error:0.2, orders.create:delay=150:1")
    assert rules == [
        faults.FaultRule("payments.charge", "error", 0.2),
        faults.FaultRule("orders.create", "delay", 1.0, 150),
    ]


def progress(executed_ago: float, acknowledged_ago: float) -> Any:
    now = time.time()
    return SimpleNamespace(
        executed=SimpleNamespace(value=now - executed_ago),
        acknowledged=SimpleNamespace(value=now - acknowledged_ago),
    )


def dead_cluster(exitcode: int) -> Any:
    sentinel = SimpleNamespace(is_alive=lambda: False, exitcode=exitcode)
    return SimpleNamespace(sentinel=sentinel, stop_event=None)


def test_the_watchdog_takes_a_sentinel_killed_with_its_process_group_for_a_stop(
    monkeypatch: Any,
) -> None:
    # honcho and systemd signal the whole group: the sentinel may die before our handler runs.
    monkeypatch.setattr(cluster, "progress", progress(1, 1))
    stop = cluster.StopSignal()
    threading.Timer(0.2, lambda: setattr(stop, "received", signal.SIGTERM)).start()

    trouble = cluster.watch(dead_cluster(-signal.SIGTERM), "orders", stop, 10, check_every=0.05)

    assert trouble is None


def test_the_watchdog_restarts_a_cluster_whose_sentinel_died_on_its_own(monkeypatch: Any) -> None:
    monkeypatch.setattr(cluster, "progress", progress(1, 1))

    trouble = cluster.watch(
        dead_cluster(-signal.SIGKILL), "orders", cluster.StopSignal(), 10, check_every=0.05
    )

    assert trouble == "cluster sentinel died (exit -9)"


def test_the_watchdogs_signal_handler_only_records_the_signal() -> None:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stop = cluster.StopSignal()
    try:
        stop.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(1.0)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert stop.received == signal.SIGTERM


def test_metrics_report_sagas_by_status_queue_depth_and_failed_tasks() -> None:
    from django.test import Client
    from django_q.models import Failure

    order_saga()
    order_saga()
    Failure.objects.create(
        id="f" * 32,
        name="poison",
        func="sagas.transport.execute",
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
    )
    text = Client().get("/metrics").content.decode()
    assert 'saga_instances{status="pending"} 2.0' in text
    assert 'saga_queue_depth{queue="payments"} 2.0' in text
    assert "saga_failed_tasks 1.0" in text
    assert 'saga_started_total{type="order"}' in text


def test_qcluster_serves_a_service_queue_or_the_engines_and_refuses_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[str] = []
    monkeypatch.setattr(qcluster, "run_watched", served.append)
    for queue in ("payments", "housekeeping"):
        monkeypatch.setenv("Q_CLUSTER_NAME", queue)
        run("qcluster")
    assert served == ["payments", "housekeeping"]

    monkeypatch.setenv("Q_CLUSTER_NAME", "billing")
    with pytest.raises(CommandError, match="orders, payments, inventory, shipping, housekeeping"):
        run("qcluster")
    assert served == ["payments", "housekeeping"]
