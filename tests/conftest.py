"""Shared test fixtures. The suite runs on PostgreSQL when DATABASE_URL points at it."""
