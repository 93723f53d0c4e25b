"""`manage.py` as a new user types it after `make run`: the project's `.env` completes the
environment, the real environment always wins over it, and with neither a production setting
that is missing stops the command with a message. The suite and the lab read no `.env`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from lab.system import System, databases_of_this_process
from tests.commands.test_commands import order_saga

# What `make run` writes (see the Makefile's .env rule).
LOCAL_ENV = "DEBUG=1\nSECRET_KEY=from-the-env-file-" + "k" * 50 + "\n"
# Variables a new user's shell does not have.
UNSET = ("DEBUG", "SECRET_KEY", "ENV_FILE", "DJANGO_SETTINGS_MODULE", "SAGA_MAX_ATTEMPTS")
SHOW_SETTINGS = (
    "from django.conf import settings as s;"
    "print(s.DEBUG, s.SECRET_KEY, repr(s.ORDER_THROTTLE_RATE), s.SAGA_MAX_ATTEMPTS)"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's code with no `.env`: the test writes its own there, and the
    checkout's `.env`, if any, stays out of it."""
    copy = tmp_path / "project"
    shutil.copytree(
        settings.BASE_DIR,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", ".env", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    return copy


def user_env(tmp: Path, **env: str) -> dict[str, str]:
    """A shell without DEBUG or SECRET_KEY (or ENV_FILE), plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**base, "CACHE_DIR": str(tmp / "cache"), **env}


def manage(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def database_of_this_test() -> dict[str, str]:
    """This test's databases, as a child process's environment."""
    return databases_of_this_process()


@pytest.mark.django_db(transaction=True)
def test_saga_list_runs_on_the_env_file_when_debug_and_the_secret_key_are_unset(
    project: Path, tmp_path: Path
) -> None:
    (project / ".env").write_text(LOCAL_ENV)
    saga = order_saga()

    done = manage(project, user_env(tmp_path, **database_of_this_test()), "saga", "list")

    assert done.returncode == 0, done.stderr
    assert str(saga.id) in done.stdout
    assert "1 saga(s) shown" in done.stdout


def test_without_env_file_or_debug_a_command_stops_with_a_message_not_a_traceback(
    project: Path, tmp_path: Path
) -> None:
    done = manage(project, user_env(tmp_path), "saga", "list")

    assert done.returncode == 1
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr
    assert "make run" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_real_environment_wins_over_the_env_file_even_when_empty(
    project: Path, tmp_path: Path
) -> None:
    (project / ".env").write_text(LOCAL_ENV + "ORDER_THROTTLE_RATE=5/minute\nSAGA_MAX_ATTEMPTS=7\n")
    env = user_env(
        tmp_path, DEBUG="0", SECRET_KEY="from-the-environment-" + "e" * 50, ORDER_THROTTLE_RATE=""
    )

    done = manage(project, env, "shell", "-v", "0", "-c", SHOW_SETTINGS)

    assert done.returncode == 0, done.stderr
    # DEBUG, the key and the (empty) rate from the environment; the attempts from the file.
    assert done.stdout.split() == ["False", "from-the-environment-" + "e" * 50, "''", "7"]


def test_an_empty_env_file_variable_reads_no_file(project: Path, tmp_path: Path) -> None:
    (project / ".env").write_text(LOCAL_ENV)

    done = manage(project, user_env(tmp_path, ENV_FILE=""), "saga", "list")

    assert done.returncode == 1
    assert "SECRET_KEY must be set" in done.stderr


@pytest.mark.parametrize("entry_point", ["sagaproject.asgi", "sagaproject.wsgi"])
def test_the_web_entry_points_read_the_same_env_file_as_manage_py(
    project: Path, tmp_path: Path, entry_point: str
) -> None:
    # The web process and the workers must share SECRET_KEY: it signs django-q2's payloads.
    (project / ".env").write_text(LOCAL_ENV)

    done = subprocess.run(
        [sys.executable, "-c", f"import {entry_point}; {SHOW_SETTINGS}"],
        cwd=project,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["True", "from-the-env-file-" + "k" * 50]


def test_the_processes_the_lab_starts_read_no_env_file(project: Path, tmp_path: Path) -> None:
    (project / ".env").write_text(LOCAL_ENV + "SAGA_MAX_ATTEMPTS=7\n")
    env = System.process_env({**user_env(tmp_path), "DEBUG": "0", "SECRET_KEY": "lab-" + "l" * 50})
    env.pop("SAGA_MAX_ATTEMPTS", None)

    done = manage(project, env, "shell", "-v", "0", "-c", SHOW_SETTINGS)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "lab-" + "l" * 50, "'100/second'", "5"]


def test_the_suite_itself_reads_no_env_file() -> None:
    assert settings.ENV_FILE == ""
    assert os.environ["ENV_FILE"] == ""  # inherited by every process a test starts


def test_a_service_database_that_is_the_default_one_stops_a_command_with_a_message(
    tmp_path: Path,
) -> None:
    url = os.environ.get("DATABASE_URL", "")
    env = user_env(
        tmp_path,
        ENV_FILE="",
        DEBUG="1",
        DATABASE_URL=url,
        ORDERS_DATABASE_URL=url or "sqlite:///var/db.sqlite3",
    )

    done = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert "the default and orders databases are one and the same" in done.stderr
    assert "Traceback" not in done.stderr
