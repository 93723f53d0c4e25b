"""`manage.py qcluster`: django-q2's cluster, run under the watchdog of sagas.cluster.

It replaces django-q2's command of the same name (the sagas app is listed before django_q in
INSTALLED_APPS for this), so `Q_CLUSTER_NAME=<queue> manage.py qcluster` starts a service worker
that restarts its cluster when the cluster wedges or its sentinel dies;
`Q_CLUSTER_NAME=housekeeping` starts the engine's own cluster, which runs its schedules.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import CommandError
from django_q.management.commands.qcluster import Command as Q2Command

from sagas.cluster import run_watched
from sagas.config import saga_config


class Command(Q2Command):
    help = "Run a django-q2 cluster for the queue in Q_CLUSTER_NAME, restarted if it wedges."

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("cluster_name"):
            raise CommandError("set the queue with Q_CLUSTER_NAME=<queue>, not --name")
        if options.get("run_once"):
            super().handle(*args, **options)
            return
        queue = os.environ.get("Q_CLUSTER_NAME", "")
        queues = saga_config().cluster_queues
        if queue not in queues:
            raise CommandError(
                f"Q_CLUSTER_NAME must name a service queue or the engine's: {', '.join(queues)}"
            )
        run_watched(queue)
