"""The web tier's gunicorn worker: a uvicorn server running sagaproject.asgi in each process
(uvloop's event loop, httptools' HTTP parser, and the dashboard's websocket over wsproto). gunicorn forks and watches the processes;
each one opens its own connection pool on first use (settings, DATABASES), never before the fork.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class WebWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "ws": "wsproto",
        # Channels' router answers HTTP and websockets only; the lifespan probe would just log
        # that it is unsupported.
        "lifespan": "off",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # On SIGTERM, open websockets are closed at once (code 1012) and requests in progress
        # (a long poll waits up to 30 s) get until a second before gunicorn's graceful timeout;
        # then they are cancelled, so that the worker exits by itself rather than by SIGKILL.
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout) - 1)
