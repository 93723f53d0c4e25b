"""saga_hosts refuses bad arguments with a clear message before it makes a namespace or a
database, and from the command line with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders must be positive"),
        (["--concurrency", "-1"], "--concurrency must be positive"),
        (["--hosts", "1"], "cutting a host off needs --hosts 2 or more"),
        (["--hosts", "9", "--no-cut"], "--hosts must be from 1 to 8"),
        (["--cut-after", "1.5"], "--cut-after must be between 0 and 1"),
        (["--kill-after", "-2"], "--kill-after and --warmup cannot be negative"),
        (["--decline-rate", "2"], "--decline-rate must be from 0 to 1"),
        (["--q-workers", "0"], "--q-workers must be positive"),
    ],
)
def test_a_bad_argument_is_refused_with_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("saga_hosts", *args)


def test_from_the_command_line_a_bad_argument_exits_non_zero_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "saga_hosts", "--hosts", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "cutting a host off needs --hosts 2" in done.stderr
    assert "Traceback" not in done.stderr
