"""Shared test fixtures. The suite runs on PostgreSQL when DATABASE_URL points at it."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import IO

import pytest

# The suite's own process reads no `.env` (only the entry points do: sagaproject/envfile.py), and
# neither does any process it starts: a developer's `.env` in the checkout changes nothing here.
os.environ["ENV_FILE"] = ""

# `make mutate` (docs/mutation.md): mutmut runs the tests of several mutants at once, each in a
# process forked from its own. It sets MUTANT_UNDER_TEST in every one of them.
MUTMUT = "MUTANT_UNDER_TEST"
MUTMUT_SLOTS = 32
_slot_lock: IO[str] | None = None  # held until the process exits: the kernel frees the slot


def mutmut_slot(database: str) -> int:
    """A slot of `database` that no other live test process holds, taken with an exclusive lock
    on a file named after it (machine-wide: any checkout testing against the same database
    shares the slots).

    A lock, not a counter: a mutant's test process can be killed at its timeout, and the kernel
    releases its lock with it, so the slot is free again for the next one.
    """
    global _slot_lock
    directory = Path(tempfile.gettempdir()) / "test-db-slots"
    directory.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]", "_", database)
    for slot in range(MUTMUT_SLOTS):
        handle = open(directory / f"{name}.{slot}.lock", "w")  # noqa: SIM115 (held while alive)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if _slot_lock is not None:
            _slot_lock.close()  # a slot taken by a session this process ran before
        _slot_lock = handle
        return slot
    raise RuntimeError(f"all {MUTMUT_SLOTS} test database slots are taken in {directory}")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Under mutmut, every test process works on a test database of its own slot.

    Mutants are tested in parallel, and transactional tests empty every table: two processes on
    one database would fail each other's tests. A slot's database is kept between runs
    (`--reuse-db`), so it is migrated once, not once per mutant.
    """
    if MUTMUT not in os.environ:
        return
    from django.conf import settings

    slot = mutmut_slot(settings.DATABASES["default"]["NAME"])
    for db in settings.DATABASES.values():
        # NAME is the settings' own here: a session puts it back when it ends.
        if db["ENGINE"].endswith("sqlite3"):
            name = str(Path(db["NAME"]).with_name(f"test-mutant{slot}.sqlite3"))
        else:
            name = f"{db['NAME']}_mutant{slot}"
        db.setdefault("TEST", {})["NAME"] = name


@pytest.fixture(autouse=True)
def _forget_api_tokens() -> None:
    """Each test starts with an empty token cache (sagas.api.authentication): a user a test
    changed with a queryset update, which sends no signal, is read afresh by the next."""
    from sagas.api.authentication import cache

    cache.clear()
