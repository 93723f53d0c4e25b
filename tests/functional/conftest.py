from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.harness import RunningSystem, postgres_database, running_system


@pytest.fixture(scope="module")
def pg_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The whole system (web, 2 saga workers, 4 django-q2 clusters) on a fresh PostgreSQL db."""
    tmp: Path = tmp_path_factory.mktemp("pg_system")
    with postgres_database() as databases, running_system(tmp, databases) as system:
        yield system
