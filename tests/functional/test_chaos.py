"""The bounded chaos run of the suite: workers killed and paused, connections terminated and
messages duplicated under load, and still no invariant violated and no order lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.processes


def test_a_chaos_run_of_200_orders_ends_quiet_with_no_violation_and_nothing_lost() -> None:
    assert os.environ.get("DATABASE_URL", "").startswith("postgres")
    done = subprocess.run(
        [
            sys.executable,
            str(settings.BASE_DIR / "manage.py"),
            "saga_chaos",
            "--orders",
            "200",
            "--seed",
            "20261126",
            "--min-kills",
            "10",
            "--min-terminated",
            "5",
            "--min-duplicates",
            "1",
            "--quiet-timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    line = re.search(r"^chaos seed=.*$", output, re.MULTILINE)
    assert line, output[-3000:]
    figures = dict(re.findall(r"(\w+)=([\d.]+)", line.group(0)))
    assert done.returncode == 0, output[-3000:]
    assert int(figures["accepted"]) == 200
    assert int(figures["kills"]) >= 10
    assert int(figures["terminated"]) >= 5
    assert int(figures["duplicates"]) >= 1
    assert int(figures["violations"]) == 0
    assert int(figures["lost"]) == 0
    assert int(figures["completed"]) + int(figures["failed"]) + int(figures["stuck"]) == 200
