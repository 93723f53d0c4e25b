"""A production configuration, made only from environment variables, passes Django's deployment
checklist (`manage.py check --deploy`) without a single warning."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

# Variables that could loosen the hardening; the check must pass with their defaults.
LOOSENERS = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")


def production_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in LOOSENERS}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="shop.example.com",
        DJANGO_SETTINGS_MODULE="sagaproject.settings",
    )
    return env


def test_production_settings_pass_the_deploy_check_without_warnings() -> None:
    base = Path(settings.BASE_DIR)

    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=base,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "System check identified no issues (0 silenced)." in run.stdout
    assert "WARNINGS" not in run.stdout + run.stderr


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    env = production_env()
    del env["SECRET_KEY"]

    run = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode != 0
    assert "SECRET_KEY must be set" in run.stderr
