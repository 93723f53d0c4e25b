"""Tiny real benchmark runs on PostgreSQL: the final JSON line parses, has every figure with its
type, accounts for every order, and the audit is clean. No timed assertion: the figures depend on
the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings

pytestmark = pytest.mark.processes

NUMBER = (int, float)
CPU_ROLES = {"web", "saga_workers", "service_workers", "postgres", "total", "driver"}


def bench(*args: str) -> dict[str, Any]:
    assert os.environ.get("DATABASE_URL", "").startswith("postgres")
    done = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "saga_bench", *args],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "finished" in done.stderr, "a progress line"
    line = done.stdout.splitlines()[-1]
    figures = json.loads(line)
    assert isinstance(figures, dict)
    return figures


def assert_a_clean_run(figures: dict[str, Any], orders: int) -> None:
    assert figures["orders"] == orders
    assert figures["completed"] + figures["failed"] == orders
    assert figures["stuck"] == 0
    assert figures["failed"] == figures["declined"]
    assert figures["audit"] == {"violations": 0, "first": []}
    assert figures["database"] == "postgresql"
    for key in ("sagas_per_second", "p50_ms", "p95_ms", "p99_ms", "naive_ceiling", "ratio"):
        assert isinstance(figures[key], NUMBER) and figures[key] > 0, key
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    cpu = figures["cpu_ms_per_saga"]
    assert set(cpu) == CPU_ROLES
    assert all(isinstance(value, NUMBER) and value >= 0 for value in cpu.values())
    assert cpu["total"] > 0
    assert cpu["total"] == pytest.approx(
        cpu["web"] + cpu["saga_workers"] + cpu["service_workers"] + cpu["postgres"], abs=0.05
    )
    assert isinstance(figures["xacts_per_saga"], NUMBER) and figures["xacts_per_saga"] > 0
    assert isinstance(figures["wal_bytes_per_saga"], NUMBER) and figures["wal_bytes_per_saga"] > 0
    # What wrote the WAL (pg_walinspect, PostgreSQL 15 and later): the saga rows, their events
    # and the queue among it, and no more than the WAL itself.
    by_table = figures["wal_by_table"]
    assert {"sagas_saga", "sagas_sagaevent", "django_q_ormq"} <= set(by_table)
    assert all(isinstance(size, int) and size > 0 for size in by_table.values())
    assert sum(by_table.values()) <= figures["wal_bytes_per_saga"] + len(by_table)


def test_a_small_run_over_http_accounts_for_every_order_and_declines_exactly_its_share() -> None:
    figures = bench(
        "--orders=20", "--concurrency=4", "--decline-rate=0.25", "--skus=2", "--warmup=4"
    )
    assert_a_clean_run(figures, 20)
    assert (figures["declined"], figures["failed"], figures["completed"]) == (5, 5, 15)
    assert (figures["mode"], figures["graph"], figures["concurrency"], figures["skus"]) == (
        "http",
        "parallel",
        4,
        2,
    )
    assert figures["decline_rate"] == 0.25


def test_a_direct_run_places_the_orders_in_the_measuring_process() -> None:
    figures = bench("--orders=10", "--concurrency=2", "--direct", "--warmup=2")
    assert_a_clean_run(figures, 10)
    assert figures["mode"] == "direct" and figures["failed"] == 0
    # The checkout ran in the driver; the web server only idled.
    assert figures["cpu_ms_per_saga"]["driver"] > 0


def test_a_sequential_run_completes_with_the_chained_saga() -> None:
    figures = bench(
        "--orders=10", "--concurrency=2", "--sequential", "--decline-rate=0.2", "--warmup=2"
    )
    assert_a_clean_run(figures, 10)
    assert figures["graph"] == "sequential"
    assert (figures["declined"], figures["failed"]) == (2, 2)
