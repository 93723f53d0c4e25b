"""The engine's own django-q2 tasks, run by the housekeeping cluster (Q_CLUSTER_NAME=housekeeping)."""

from __future__ import annotations

import logging

from sagas import housekeeping
from sagas.config import saga_config

log = logging.getLogger(__name__)


def purge_finished_sagas() -> dict[str, int]:
    """The schedule's task: one bounded purge run; the next run goes on where this one stopped."""
    config = saga_config().housekeeping
    report = housekeeping.purge_finished_sagas(
        older_than=config.retention,
        batch_size=config.batch_size,
        max_seconds=config.run_seconds,
    )
    log.info(
        "finished sagas purged",
        extra={
            "sagas": report.sagas,
            "rows": dict(report.rows),
            "batches": report.batches,
            "complete": report.complete,
            "cutoff": report.cutoff.isoformat(),
        },
    )
    return dict(report.rows)
