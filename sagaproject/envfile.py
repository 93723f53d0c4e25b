"""Which processes read the project's local `.env` file.

The entry points that people and process managers start (manage.py, asgi, wsgi) name it in
ENV_FILE before the settings load; the settings then read it under the real environment, which
always wins. Code that only imports the settings (the test suite, the type checker) names no
file, so a developer's `.env` cannot change what the suite sees.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def use_local_env_file() -> None:
    """Read the project's `.env` (written by `make run`), unless ENV_FILE says otherwise."""
    os.environ.setdefault("ENV_FILE", str(LOCAL_ENV_FILE))
