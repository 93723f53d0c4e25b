"""saga_engine_bench on PostgreSQL: a tiny run performs every task of every order in its own
process and accounts for them in its JSON line; a bad argument is refused before anything is
created. No timed assertion: the figures depend on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.processes


def test_a_tiny_run_performs_every_task_and_accounts_for_every_order() -> None:
    assert os.environ.get("DATABASE_URL", "").startswith("postgres")
    manage = str(settings.BASE_DIR / "manage.py")
    done = subprocess.run(
        [sys.executable, manage, "saga_engine_bench", "--orders", "6", "--warmup", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "performed 30 tasks" in done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])

    assert (figures["orders"], figures["database"]) == (6, "postgresql")
    assert (figures["completed"], figures["failed"], figures["in_flight"]) == (6, 0, 0)
    assert figures["tasks_per_saga"] == 5.0  # the order saga's five steps, one task each
    cpu = figures["cpu_ms_per_saga"]
    assert set(cpu) == {"checkout", "tasks", "postgres"}
    assert all(isinstance(value, float | int) and value > 0 for value in cpu.values())
    statements = figures["statements_per_saga"]
    assert statements["checkout"] >= 1 and statements["tasks"] >= 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders must be at least 1, not 0"),
        (["--warmup", "-1"], "--warmup must be 0 or more, not -1"),
    ],
)
def test_a_bad_argument_is_refused_with_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("saga_engine_bench", *args)
