"""The project's settings plus the Notification Service and its queue: the "new code" that the
version-change test (tests/functional/test_versions.py) rolls out to real processes with
DJANGO_SETTINGS_MODULE=tests.notices.settings."""

from sagaproject.settings import *  # noqa: F403
from sagaproject.settings import INSTALLED_APPS, Q_CLUSTER, SERVICE_QUEUES

INSTALLED_APPS = [*INSTALLED_APPS, "tests.notices"]
SERVICE_QUEUES = (*SERVICE_QUEUES, "notices")  # type: ignore[assignment]  # one queue more
Q_CLUSTER = {**Q_CLUSTER, "ALT_CLUSTERS": {queue: {} for queue in SERVICE_QUEUES}}
