"""The benchmark's pure parts, without a database: the chained order saga, the spread of declined
cards, percentiles, and the figures' shape."""

from __future__ import annotations

import itertools
import json
import uuid
from fractions import Fraction

import pytest

from lab import sequential
from lab.bench.load import Outcome
from lab.bench.report import Measured, figures, percentile, table
from lab.bench.spec import STANDARD, RunSpec, decline_rate, is_declined
from orders.saga import ORDER_SAGA, order_saga
from sagas import registry
from sagas.config import saga_config
from sagas.core.definition import StepKind
from sagas.core.state import SagaState
from sagas.core.transition import Replied, Start, decide
from sagas.messages import Outcome as ReplyOutcome

ORDER = order_saga(saga_config())


def test_chained_makes_each_step_depend_on_the_one_before_and_keeps_the_rest() -> None:
    chain = sequential.chained(ORDER)
    assert [s.name for s in chain.steps] == [s.name for s in ORDER.steps]
    assert [s.depends_on for s in chain.steps] == [
        (),
        ("create_order",),
        ("reserve_stock",),
        ("charge_payment",),
        ("schedule_shipment",),
    ]
    for before, after in zip(ORDER.steps, chain.steps, strict=True):
        assert (after.action, after.compensation, after.kind) == (
            before.action,
            before.compensation,
            before.kind,
        )
        assert (after.retry, after.compensation_retry, after.deadline) == (
            before.retry,
            before.compensation_retry,
            before.deadline,
        )
    assert chain.step("schedule_shipment").kind is StepKind.PIVOT
    assert chain.problems() == []
    assert ORDER.step("schedule_shipment").depends_on == (
        "create_order",
        "reserve_stock",
        "charge_payment",
    ), "the original is left alone"


def test_the_chained_order_saga_sends_one_step_at_a_time() -> None:
    chain = sequential.chained(ORDER)
    started = decide(chain, SagaState.new(chain), Start(), 1000.0, lambda: 0.5)
    assert [s.step for s in started.sends] == ["create_order"]
    created = decide(
        chain,
        started.state,
        Replied("create_order", False, 1, ReplyOutcome.OK),
        1001.0,
        lambda: 0.5,
    )
    assert [s.step for s in created.sends] == ["reserve_stock"]


def test_the_lab_chains_the_registered_order_saga_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered = registry.latest(ORDER_SAGA)
    try:
        monkeypatch.delenv(sequential.ENV, raising=False)
        sequential.install()
        assert registry.latest(ORDER_SAGA) is registered
        monkeypatch.setenv(sequential.ENV, "1")
        sequential.install()
        assert registry.latest(ORDER_SAGA) == sequential.chained(registered)
    finally:
        registry.register(registered)


@pytest.mark.parametrize(
    ("rate", "orders", "declined"),
    [("0", 20, 0), ("0.25", 20, 5), ("1", 7, 7), ("0.05", 2000, 100), ("0.29", 100, 29)],
)
def test_declined_cards_are_spread_evenly_and_counted_exactly(
    rate: str, orders: int, declined: int
) -> None:
    r = decline_rate(rate)
    chosen = [n for n in range(orders) if is_declined(n, r)]
    assert len(chosen) == declined == RunSpec(orders=orders, decline_rate=r).declined
    gaps = {b - a for a, b in itertools.pairwise(chosen)}
    assert len(gaps) <= 2, "evenly spread, not bunched"


def test_every_fourth_order_is_declined_at_a_quarter() -> None:
    assert [n for n in range(20) if is_declined(n, Fraction(1, 4))] == [3, 7, 11, 15, 19]


@pytest.mark.parametrize("raw", ["x", "nan", "inf", "1/0", ""])
def test_a_decline_rate_that_is_not_a_number_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        decline_rate(raw)


def test_a_spec_lists_what_is_wrong_with_it() -> None:
    bad = RunSpec(orders=0, concurrency=-1, skus=0, decline_rate=Fraction(3, 2))
    assert len(bad.problems()) == 4
    assert all(not spec.problems() for spec in STANDARD)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def measured(**overrides: object) -> Measured:
    outcomes = [
        Outcome(uuid.uuid4(), 100.0 + n, "completed" if n % 4 else "failed", 100.5 + n)
        for n in range(8)
    ]
    base = {
        "spec": RunSpec(orders=8, concurrency=2, decline_rate=Fraction(1, 4)),
        "database": "postgresql",
        "warmup": 2,
        "saga_workers": 2,
        "q_workers": 2,
        "web": "uvicorn",
        "outcomes": outcomes,
        "cpu_ms": {
            "web": 80.0,
            "saga_workers": 160.0,
            "service_workers": 240.0,
            "postgres": 320.0,
            "driver": 40.0,
        },
        "xacts": 800,
        "wal_bytes": 8192,
        "wal_by_table": {"sagas_saga": 4800, "Transaction": 3200, "auth_user": 80, "pg_class": 40},
        "naive_ceiling": 4.0,
        "violations": [],
    }
    return Measured(**{**base, **overrides})  # type: ignore[arg-type]


def test_the_figures_have_every_field_per_saga() -> None:
    line = figures(measured())
    assert json.loads(json.dumps(line)) == line
    assert (line["completed"], line["failed"], line["stuck"], line["declined"]) == (6, 2, 0, 2)
    assert line["seconds"] == 7.5 and line["sagas_per_second"] == round(8 / 7.5, 2)
    assert line["p50_ms"] == line["p99_ms"] == 500.0
    assert line["cpu_ms_per_saga"] == {
        "web": 10.0,
        "saga_workers": 20.0,
        "service_workers": 30.0,
        "postgres": 40.0,
        "total": 100.0,  # the driver is apart
        "driver": 5.0,
    }
    assert (line["xacts_per_saga"], line["wal_bytes_per_saga"]) == (100.0, 1024.0)
    # Per saga, what wrote at least 2 % of the WAL by itself, the rest together.
    assert line["wal_by_table"] == {"sagas_saga": 600, "Transaction": 400, "rest": 15}
    assert line["ratio"] == round(8 / 7.5 / 4.0, 4)
    assert line["audit"] == {"violations": 0, "first": []}


def test_on_sqlite_the_postgresql_figures_are_null() -> None:
    line = figures(
        measured(
            database="sqlite",
            cpu_ms={"postgres": None, "web": 8.0, "saga_workers": 8.0, "service_workers": 8.0},
            xacts=None,
            wal_bytes=None,
            wal_by_table=None,
        )
    )
    assert line["cpu_ms_per_saga"]["postgres"] is None
    assert line["cpu_ms_per_saga"]["total"] == 3.0
    assert line["xacts_per_saga"] is None and line["wal_bytes_per_saga"] is None
    assert line["wal_by_table"] is None


def test_the_table_has_a_row_per_run_and_marks_a_failed_audit() -> None:
    good = figures(measured())
    bad = figures(measured(violations=["completed x: no live reservation"]))
    rendered = table([good, bad, None], ["a", "b", "c"]).splitlines()
    assert len(rendered) == 4
    assert "clean" in rendered[1] and "FAILED (1)" in rendered[2] and "run failed" in rendered[3]
