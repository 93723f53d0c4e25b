#!/usr/bin/env python
"""Django's command-line entry point. It reads the project's `.env`, if any, under the real
environment (sagaproject.envfile)."""

import os
import sys

if __name__ == "__main__":
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
        from django.core.management import execute_from_command_line
    except ImportError:
        sys.exit(
            f"manage.py: Django is not installed for {sys.executable}; "
            "run it with .venv/bin/python (`make run` creates .venv)."
        )
    from sagaproject.envfile import use_local_env_file

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sagaproject.settings")
    use_local_env_file()
    # Load the settings first: a missing production variable is a message, not a traceback.
    try:
        settings.SECRET_KEY  # noqa: B018
    except ImproperlyConfigured as exc:
        sys.exit(f"manage.py: {exc}")
    execute_from_command_line(sys.argv)
