"""A run's figures: the one JSON line saga_bench prints last, and the table of a suite."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.bench.load import Outcome
from lab.bench.spec import RunSpec
from sagas.core.state import SagaStatus

# The roles whose CPU time makes the total; the driver (the measuring process) is reported apart.
SYSTEM_ROLES = ("web", "saga_workers", "service_workers", "postgres")
AUDIT_LISTED = 5
WAL_LISTED = 0.02  # the WAL by table lists what wrote at least this share of it


@dataclass
class Measured:
    """What one run gathered (measure.measure)."""

    spec: RunSpec
    database: str  # postgresql | sqlite
    warmup: int
    saga_workers: int
    q_workers: int
    web: str  # the web server (uvicorn | daphne)
    outcomes: list[Outcome]
    cpu_ms: dict[str, float | None] | None  # by role over the measured phase; None: no /proc
    xacts: int | None  # the system's transactions over the phase; None off PostgreSQL
    wal_bytes: int | None
    wal_by_table: dict[str, int] | None  # bytes of WAL records by table (meters.wal_by_table)
    naive_ceiling: float
    violations: list[str]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def figures(run: Measured) -> dict[str, Any]:
    spec, outcomes = run.spec, run.outcomes
    orders = len(outcomes)
    ended = [o for o in outcomes if o.finished is not None]
    seconds = (
        max(o.finished for o in ended if o.finished) - min(o.submitted for o in outcomes)
        if ended
        else 0.0
    )
    per_second = orders / seconds if seconds > 0 else 0.0
    latencies = [o.latency_ms for o in ended if o.latency_ms is not None]

    def per_saga(value: float | None, digits: int) -> float | None:
        return None if value is None or not orders else round(value / orders, digits)

    cpu: dict[str, float | None] | None = None
    if run.cpu_ms is not None:
        cpu = {role: per_saga(run.cpu_ms.get(role), 2) for role in SYSTEM_ROLES}
        known = [run.cpu_ms[r] for r in SYSTEM_ROLES if run.cpu_ms.get(r) is not None]
        cpu["total"] = per_saga(sum(v for v in known if v is not None), 2)
        cpu["driver"] = per_saga(run.cpu_ms.get("driver"), 2)
    return {
        "name": spec.label,
        "orders": orders,
        "concurrency": spec.concurrency,
        "skus": spec.skus,
        "decline_rate": float(spec.decline_rate),
        "declined": spec.declined,
        "mode": "direct" if spec.direct else "http",
        "graph": "sequential" if spec.sequential else "parallel",
        "database": run.database,
        "warmup": run.warmup,
        "saga_workers": run.saga_workers,
        "q_workers": run.q_workers,
        "web": run.web,
        "completed": sum(o.status == SagaStatus.COMPLETED for o in outcomes),
        "failed": sum(o.status == SagaStatus.FAILED for o in outcomes),
        "stuck": sum(o.status == SagaStatus.STUCK for o in outcomes),
        "seconds": round(seconds, 3),
        "sagas_per_second": round(per_second, 2),
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p95_ms": _ms(percentile(latencies, 0.95)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "cpu_ms_per_saga": cpu,
        "xacts_per_saga": per_saga(run.xacts, 2),
        "wal_bytes_per_saga": per_saga(run.wal_bytes, 0),
        "wal_by_table": _wal_by_table(run.wal_by_table, orders),
        "naive_ceiling": round(run.naive_ceiling, 2),
        "ratio": round(per_second / run.naive_ceiling, 4) if run.naive_ceiling else None,
        "audit": {"violations": len(run.violations), "first": run.violations[:AUDIT_LISTED]},
    }


def _wal_by_table(sizes: dict[str, int] | None, orders: int) -> dict[str, int] | None:
    """Bytes per saga of what wrote at least WAL_LISTED of the records' bytes, largest first;
    the rest together as "rest"."""
    if sizes is None or not orders:
        return None
    total = sum(sizes.values())
    listed = {what: size for what, size in sizes.items() if size >= WAL_LISTED * total}
    rest = total - sum(listed.values())
    shown = {what: round(size / orders) for what, size in listed.items()}
    return {**shown, "rest": round(rest / orders)} if rest else shown


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


COLUMNS = (
    ("run", "name", "{}"),
    ("sagas/s", "sagas_per_second", "{:.1f}"),
    ("ratio", "ratio", "{:.1%}"),
    ("p50 ms", "p50_ms", "{:.0f}"),
    ("p95 ms", "p95_ms", "{:.0f}"),
    ("p99 ms", "p99_ms", "{:.0f}"),
    ("CPU ms/saga", "cpu.total", "{:.1f}"),
    ("web", "cpu.web", "{:.1f}"),
    ("saga wk", "cpu.saga_workers", "{:.1f}"),
    ("svc wk", "cpu.service_workers", "{:.1f}"),
    ("pg", "cpu.postgres", "{:.1f}"),
    ("driver", "cpu.driver", "{:.1f}"),
    ("xacts/saga", "xacts_per_saga", "{:.1f}"),
    ("WAL KB/saga", "wal_kb", "{:.1f}"),
    ("audit", "audit", "{}"),
)


def table(runs: Sequence[dict[str, Any] | None], names: Sequence[str]) -> str:
    """One row per run (None: the run printed no figures), aligned columns, for a terminal."""
    rows = [[title for title, _, _ in COLUMNS]]
    for name, run in zip(names, runs, strict=True):
        if run is None:
            rows.append([name, "run failed"] + [""] * (len(COLUMNS) - 2))
            continue
        cells = _cells(run)
        rows.append(
            ["-" if cells.get(key) is None else fmt.format(cells[key]) for _, key, fmt in COLUMNS]
        )
    widths = [max(len(row[n]) for row in rows) for n in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if n == 0 else cell.rjust(w)
            for n, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(lines)


def _cells(run: dict[str, Any]) -> dict[str, Any]:
    cells = dict(run)
    for role, value in (run.get("cpu_ms_per_saga") or {}).items():
        cells[f"cpu.{role}"] = value
    wal = run.get("wal_bytes_per_saga")
    cells["wal_kb"] = None if wal is None else wal / 1024
    violations = run["audit"]["violations"]
    cells["audit"] = "clean" if not violations else f"FAILED ({violations})"
    return cells
