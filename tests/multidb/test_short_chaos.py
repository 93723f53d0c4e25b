"""A short chaos run with a database per service: the chaos run makes five fresh databases
(default and one per service), kills workers, terminates connections to all five and
duplicates messages under load; nothing is lost and no invariant breaks across the databases."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.processes


def test_a_short_chaos_run_over_five_databases_ends_quiet_with_no_violation() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(settings.BASE_DIR / "manage.py"),
            "saga_chaos",
            "--orders",
            "60",
            "--seed",
            "20261127",
            "--min-kills",
            "4",
            "--min-terminated",
            "3",
            "--min-duplicates",
            "1",
            "--quiet-timeout",
            "180",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = done.stdout + done.stderr
    line = re.search(r"^chaos seed=.*$", output, re.MULTILINE)
    assert line, output[-3000:]
    figures = dict(re.findall(r"(\w+)=([\d.]+)", line.group(0)))
    assert done.returncode == 0, output[-3000:]
    assert int(figures["databases"]) == 5
    assert int(figures["accepted"]) == 60
    assert int(figures["kills"]) >= 4
    assert int(figures["terminated"]) >= 3
    assert int(figures["duplicates"]) >= 1
    assert int(figures["violations"]) == 0
    assert int(figures["lost"]) == 0
    assert int(figures["completed"]) + int(figures["failed"]) + int(figures["stuck"]) == 60
