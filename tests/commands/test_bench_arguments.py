"""saga_bench refuses bad arguments with a clear message, before it creates or starts anything
(no database is touched here), and from the command line with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders must be at least 1, not 0"),
        (["--concurrency", "-3"], "--concurrency must be at least 1, not -3"),
        (["--skus", "0"], "--skus must be at least 1, not 0"),
        (["--decline-rate", "1.5"], "--decline-rate must be from 0 to 1, not 1.5"),
        (["--decline-rate", "-0.1"], "--decline-rate must be from 0 to 1"),
        (["--decline-rate", "lots"], "argument --decline-rate: invalid decline_rate value"),
        (["--decline-rate", "nan"], "argument --decline-rate: invalid decline_rate value"),
        (["--orders", "ten"], "argument --orders: invalid int value"),
        (["--warmup", "-1"], "--warmup must be 0 or more, not -1"),
        (["--saga-workers", "0"], "--saga-workers must be at least 1, not 0"),
        (["--q-workers", "0"], "--q-workers must be at least 1, not 0"),
        (["--naive-processes", "0"], "--naive-processes must be at least 1, not 0"),
        (["--suite", "huge"], "argument --suite: invalid choice"),
        (
            ["--suite", "standard", "--orders", "10", "--direct"],
            "--suite runs its own set; leave out --orders, --direct",
        ),
    ],
)
def test_a_bad_argument_is_refused_with_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("saga_bench", *args)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(CommandError) as refused:
        call_command("saga_bench", "--orders", "0", "--skus", "0")
    assert "--orders" in str(refused.value) and "--skus" in str(refused.value)


@pytest.mark.parametrize("args", [["--orders", "0"], ["--decline-rate", "x"]])
def test_from_the_command_line_a_bad_argument_exits_non_zero_without_a_traceback(
    args: list[str],
) -> None:
    done = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "saga_bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "--orders" in done.stderr or "--decline-rate" in done.stderr
    assert done.stdout == ""
