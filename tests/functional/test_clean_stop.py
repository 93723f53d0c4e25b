"""A clean stop is clean: SIGTERM or Ctrl-C stops a service worker (`qcluster`) or the whole
`make run` system without restarting a cluster and without leaving a process behind, well
within honcho's 5 s before it SIGKILLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from django.conf import settings

from lab.system import SERVICE_DATABASE_VARIABLES, free_port

pytestmark = pytest.mark.processes

BASE = Path(settings.BASE_DIR)
RESTARTED = re.compile(r"restarting|cluster sentinel died", re.IGNORECASE)


def local_sqlite_env(tmp: Path) -> dict[str, str]:
    """DEBUG on, a scratch SQLite database and cache, no .env: what `make run` runs on."""
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "1",
        "DATABASE_URL": "",
        **dict.fromkeys(SERVICE_DATABASE_VARIABLES.values(), ""),  # one database, as make run
        "SQLITE_PATH": str(tmp / "db.sqlite3"),
        "CACHE_DIR": str(tmp / "cache"),
        "Q_LOG_LEVEL": "INFO",  # django-q2 says when a cluster runs
        "PYTHONUNBUFFERED": "1",
    }


def processes_of(env: dict[str, str]) -> list[int]:
    """Every live process of a run: each carries its scratch database in its environment."""
    marker = f"SQLITE_PATH={env['SQLITE_PATH']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s; output:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start `argv` in a session of its own; SIGKILL whatever of the run is left afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=BASE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            for pid in processes_of(env):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(10)


def clusters_running(log: Path) -> int:
    return len(re.findall(r"Q Cluster [\w-]+ \[\w+\] running", log.read_text()))


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, True)],
    ids=["sigterm_to_qcluster", "sigterm_to_its_group", "ctrl_c_on_its_terminal"],
)
def test_a_stop_signal_stops_a_qcluster_without_a_restart_and_leaves_no_process(
    tmp_path: Path, signum: int, to_group: bool
) -> None:
    env = {**local_sqlite_env(tmp_path), "Q_CLUSTER_NAME": "orders"}
    manage = [sys.executable, str(BASE / "manage.py")]
    subprocess.run([*manage, "migrate", "--no-input"], env=env, check=True, capture_output=True)
    log = tmp_path / "qcluster.log"
    with started([*manage, "qcluster"], env, log) as qcluster:
        wait_until(lambda: clusters_running(log) == 1, 60, "the cluster did not run", log)
        assert len(processes_of(env)) == 6  # qcluster, sentinel, 2 workers, pusher, monitor

        (os.killpg if to_group else os.kill)(qcluster.pid, signum)

        try:
            exit_code = qcluster.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qcluster still runs 15 s after the signal:\n{log.read_text()[-4000:]}")
        wait_until(lambda: not processes_of(env), 5, "processes were left", log)
    output = log.read_text()
    assert exit_code == 0, output[-4000:]
    assert not RESTARTED.search(output), output[-4000:]
    assert clusters_running(log) == 1


def test_sigterm_to_make_run_stops_every_process_without_a_restart(tmp_path: Path) -> None:
    env = local_sqlite_env(tmp_path)
    port = free_port()
    venv = Path(sys.prefix)
    log = tmp_path / "make-run.log"
    # -o: make writes no .env into the checkout and reinstalls nothing into the virtualenv.
    argv = ["make", "-o", ".env", "-o", f"{venv}/.installed", "run", f"VENV={venv}", f"PORT={port}"]
    with started(argv, env, log) as make:

        def serving() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(serving, 120, "make run did not serve /healthz", log)
        # One cluster per service queue and the engine's housekeeping cluster.
        wait_until(lambda: clusters_running(log) == 5, 60, "the five clusters did not run", log)
        started_at = time.monotonic()

        os.killpg(make.pid, signal.SIGTERM)  # what Ctrl-C amounts to: honcho SIGTERMs each group

        wait_until(lambda: not processes_of(env), 20, "processes were left", log)
        stopped_in = time.monotonic() - started_at
    output = log.read_text()
    assert not RESTARTED.search(output), output[-4000:]
    assert "SIGKILL" not in output, output[-4000:]  # honcho had to kill nothing
    assert stopped_in < 5, output[-4000:]
