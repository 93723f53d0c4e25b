"""The alerting that ships in ops/: the Prometheus rules pass promtool (syntax and their unit
tests), the Grafana dashboard imports with a Prometheus datasource input, and every metric either
of them names is exported by /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django_q.models import Failure, OrmQ
from django_q.signing import SignedPackage

from sagas import heartbeat, store, transport
from sagas.models import HeartbeatRole, Saga
from sagas.services import compensate_saga, start_saga

OPS = Path(settings.BASE_DIR) / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts.test.yml"
DASHBOARD = OPS / "grafana" / "saga-dashboard.json"

# The alerts the README documents, each with the urgency an operator reads from it.
ALERTS = {
    "SagaStuck": "warning",
    "SagaOverdue": "critical",
    "SagaCompensationRateHigh": "warning",
    "SagaQueueGrowing": "warning",
    "SagaWorkerHeartbeatMissing": "critical",
    "SagaClusterHeartbeatMissing": "critical",
    "SagaFailedTasksIncreasing": "warning",
    "SagaMetricsMissing": "critical",
}


def promtool() -> str:
    """promtool's path; skips without it, unless REQUIRE_PROMTOOL=1 (CI) makes that a failure."""
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("REQUIRE_PROMTOOL") == "1":
        pytest.fail("promtool not found and REQUIRE_PROMTOOL=1: apt-get install -y prometheus")
    pytest.skip("promtool not found: apt-get install -y prometheus (Debian) to run this test")


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


# --- naming the metrics in PromQL ---------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"bool", "offset", "inf", "nan"}
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[smhdwy]?)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
)


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression selects: every identifier that
    is not a function call, a keyword, a label, a string, a range or a number."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for token in _TOKEN.finditer(expr):
        name = token.group("name")
        if not name or name.lower() in _KEYWORDS or expr[token.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(saga_duration_seconds_bucket{a="b"}[5m])))'
    ) == {"saga_duration_seconds_bucket"}
    assert metric_names('max(saga_instances{status="stuck"}) or vector(0)') == {"saga_instances"}
    assert metric_names(
        "a:b:rate10m > 2 * c offset 1d and on (type) d > 1e-3 unless absent(e)"
    ) == {"a:b:rate10m", "c", "d", "e"}


# --- the rules ----------------------------------------------------------------------------------


def test_the_rules_pass_promtool_check() -> None:
    output = run_promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    """Input series for every alert (stuck, heartbeats, overdue, queues, failed tasks,
    compensations, no metrics): when each fires, with which labels and annotations."""
    output = run_promtool("test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == set(ALERTS)


def test_every_alert_waits_has_a_severity_and_tells_the_operator_what_to_do() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert {name: rule["labels"]["severity"] for name, rule in alerts.items()} == ALERTS
    for name, rule in alerts.items():
        assert rule["for"], name
        assert rule["annotations"]["summary"], name
        assert len(rule["annotations"]["description"]) > 100, name
    assert "manage.py saga list --status stuck" in alerts["SagaStuck"]["annotations"]["description"]


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query, written as a recording rule ($__rate_interval set)."""
    exprs = [expr.replace("$__rate_interval", "5m") for expr in dashboard_exprs()]
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(as_rules))
    assert f"SUCCESS: {len(exprs)} rules found" in run_promtool("check", "rules", str(path))


# --- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_imports_with_a_prometheus_datasource_input() -> None:
    board = dashboard()
    assert board["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes the orchestrator's /metrics",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert board["id"] is None and board["uid"] and board["title"]
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels:
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    assert all(x < 24 for x, _ in cells)


def test_the_dashboard_shows_the_live_figures() -> None:
    titles = {panel["title"] for panel in dashboard()["panels"]}
    assert {
        "Sagas by status",
        "Throughput",
        "Failures by reason",
        "Compensations by reason",
        "Queue depth per service",
        "Oldest due saga",
        "Heartbeat age",
        "Failed django-q2 tasks",
    } <= titles


# --- every named metric is exported -------------------------------------------------------------


def run_queued_tasks_and_workers(rounds: int = 20) -> None:
    """Play the service clusters and a saga worker in this process until nothing is left."""
    for _ in range(rounds):
        tasks = list(OrmQ.objects.order_by("id"))
        for task in tasks:
            transport.execute(SignedPackage.loads(task.payload)["args"][0])
            task.delete()
        claimed = store.claim("metrics-test", 100, 30)
        if not tasks and not claimed:
            return
        store.process("metrics-test", claimed)


def order_data() -> dict[str, Any]:
    order_id = str(uuid.uuid4())
    return {
        "order_id": order_id,
        "user_id": 1,
        "lines": [],
        "total": "10.00",
        "currency": "EUR",
        "payment_token": "pm_x",
        "shipping_address": {},
    }


def scrape_with_every_figure_present() -> str:
    """/metrics once something stands behind every figure: a saga cancelled and compensated to
    the end, one waiting (commands queued), one stuck, a failed task, heartbeats of each role."""
    cancelled = start_saga(saga_type="order", data=order_data(), correlation_id="cancelled")
    compensate_saga(saga_id=cancelled.id)
    run_queued_tasks_and_workers()
    assert Saga.objects.get(id=cancelled.id).status == "failed"
    data = order_data()
    start_saga(saga_type="order", data=data, correlation_id=data["order_id"])
    stuck = start_saga(saga_type="order", data=order_data(), correlation_id="stuck")
    Saga.objects.filter(id=stuck.id).update(status="stuck", due_at=None)
    Failure.objects.create(
        id="f" * 32,
        name="poison",
        func="sagas.transport.execute",
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
    )
    heartbeat.beat(HeartbeatRole.SAGA_WORKER, "", "saga_worker.1")
    heartbeat.beat(HeartbeatRole.CLUSTER, "payments", "host:1")
    return Client().get("/metrics").content.decode()


def sample_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.django_db(transaction=True)
def test_every_metric_in_the_rules_and_the_dashboard_is_exported() -> None:
    exported = sample_names(scrape_with_every_figure_present())

    recorded = {rule["record"] for rule in rules() if "record" in rule}
    in_rules = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    in_dashboard = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert in_rules - recorded - exported == set()
    assert in_dashboard - exported == set()
    assert {name for name in in_rules if ":" in name} <= recorded  # no undefined recording rule
    assert not in_dashboard & recorded  # the dashboard works without the rules loaded
    assert {
        "saga_instances",
        "saga_oldest_due_seconds",
        "saga_step_deadline_seconds",
        "saga_compensations_total",
        "saga_queue_depth",
        "saga_heartbeat_age_seconds",
        "saga_failed_tasks",
        "saga_started_total",
        "saga_finished_total",
        "saga_duration_seconds_bucket",
    } <= in_rules | in_dashboard


@pytest.mark.django_db(transaction=True)
def test_the_scrape_passes_promtool_check_metrics() -> None:
    done = subprocess.run(
        [promtool(), "check", "metrics"],
        input=scrape_with_every_figure_present(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
