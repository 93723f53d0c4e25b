"""Shared test fixtures. The suite runs on PostgreSQL when DATABASE_URL points at it."""

import os

# The suite's own process reads no `.env` (only the entry points do: sagaproject/envfile.py), and
# neither does any process it starts: a developer's `.env` in the checkout changes nothing here.
os.environ["ENV_FILE"] = ""
