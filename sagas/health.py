"""Liveness and readiness probes."""

from __future__ import annotations

from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when every configured database (default, and a service's own when it has one) is
    reachable and fully migrated."""
    for alias in connections:
        try:
            executor = MigrationExecutor(connections[alias])
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            return JsonResponse(
                {"status": "unavailable", "database": alias, "error": str(exc)[:200]}, status=503
            )
        if pending:
            return JsonResponse(
                {"status": "unavailable", "database": alias, "migrations_pending": len(pending)},
                status=503,
            )
    return JsonResponse({"status": "ok"})
