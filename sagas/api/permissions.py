"""Who may do what: users read the catalogue and their own orders; staff act on everything."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from sagas.api.config import api_config


class IsStaffForWrites(permissions.BasePermission):
    """Any signed-in user reads; only staff write (e.g. add products)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or bool(user.is_staff)


class DocsAccess(permissions.BasePermission):
    """The schema and docs are public unless API_DOCS_PUBLIC is off; then a user must sign in."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return api_config().docs_public or bool(request.user and request.user.is_authenticated)


class MetricsAccess(permissions.BasePermission):
    """Scrapers read /metrics freely unless METRICS_REQUIRE_STAFF is on; then only staff."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return not api_config().metrics_require_staff or bool(
            request.user and request.user.is_staff
        )
