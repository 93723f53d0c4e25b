"""The chaos run's one line says which tasks were left failed (lab.chaos.ChaosResult.line)."""

from __future__ import annotations

from lab.audit import AuditReport
from lab.chaos import ChaosCounts, ChaosResult


def result(report: AuditReport) -> ChaosResult:
    return ChaosResult(
        seed=1, orders=10, accepted=10, counts=ChaosCounts(), report=report, quiet=True
    )


def test_the_line_names_the_failed_tasks_by_function() -> None:
    report = AuditReport(
        failed_tasks=3,
        failed_by_func={"sagas.tasks.purge_finished_sagas": 1, "sagas.transport.execute": 2},
    )

    line = result(report).line()

    assert " failed_tasks=3 " in line
    assert line.endswith(
        " failed_task_funcs=sagas.tasks.purge_finished_sagas:1,sagas.transport.execute:2"
    )


def test_a_run_with_no_failed_task_names_none() -> None:
    line = result(AuditReport()).line()

    assert " failed_tasks=0 " in line
    assert "failed_task_funcs" not in line
