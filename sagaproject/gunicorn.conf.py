"""gunicorn's settings for the web tier (`make serve`, Procfile.production), from the
environment: WEB_CONCURRENCY processes on HOST:PORT, each a uvicorn server (sagaproject.web_worker).
See docs/deployment.md for how many and what they cost in PostgreSQL connections."""

import os
from typing import Any

bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sagaproject.web_worker.WebWorker"
# No preload: each worker imports the application itself after the fork, so nothing (a database
# connection, the pool, a thread) is shared between processes.
preload_app = False
# The whole stop must fit in the process manager's wait before it kills (honcho: 5 s).
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "4"))
timeout = 30  # a worker whose event loop has not checked in for this long is restarted
keepalive = 5
# X-Forwarded-Proto/-For are believed only from these addresses (the TLS-terminating proxy).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
errorlog = "-"
accesslog = None  # requests are counted in /metrics; a proxy keeps the access log
proc_name = "sagas-web"
# gunicorn's runtime control socket sits at one path per user, so two servers on a host would
# fight over it; nothing here uses it.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the shared metrics (prometheus_client's
    multiprocess mode), so that /metrics does not report a process that is gone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
