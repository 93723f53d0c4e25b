"""The migrations describe the models: a model change without its migration fails the suite,
not the first deployment."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    except SystemExit as exit_:
        pytest.fail(f"models and migrations disagree (exit {exit_.code}):\n{out.getvalue()}")
