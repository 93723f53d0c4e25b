"""The deployment guide agrees with the code: it is linked from the README, every variable it
tells a deployment to set is in the README's Configuration table, and `Procfile.production`
starts every process it describes."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

BASE = Path(settings.BASE_DIR)
GUIDE = (BASE / "docs" / "deployment.md").read_text()
README = (BASE / "README.md").read_text()


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_readme_links_the_deployment_guide() -> None:
    assert "(docs/deployment.md)" in README


def test_every_variable_the_guide_asks_for_is_in_the_configuration_table() -> None:
    asked = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section(GUIDE, "Settings")))
    table = section(README, "Configuration")
    documented = {
        name
        for row in re.findall(r"^\| (`[^|]+) \|", table, re.MULTILINE)
        for name in re.findall(r"`([A-Z_]+)`", row)
    }

    assert {"DATABASE_URL", "SECRET_KEY", "WEB_CONCURRENCY"} <= asked
    assert sorted(asked - documented) == []


def test_the_production_procfile_starts_the_web_tier_workers_and_every_cluster() -> None:
    lines = dict(
        line.split(": ", 1)
        for line in (BASE / "Procfile.production").read_text().splitlines()
        if line.strip()
    )

    assert lines["web"].startswith("gunicorn --config sagaproject/gunicorn.conf.py ")
    assert lines["saga_worker"] == "python manage.py saga_worker"
    queues = [*settings.SERVICE_QUEUES, settings.HOUSEKEEPING_QUEUE]  # the engine's schedules
    for queue in queues:
        assert lines[f"q_{queue}"] == f"env Q_CLUSTER_NAME={queue} python manage.py qcluster"
    assert len(lines) == 2 + len(queues)
