"""Admin building blocks the service apps share: read-only views of their tables.

Service rows change only through their services (inside saga steps): editing a charge, a stock
level or a stored reply by hand would break the invariants the audit checks.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StepRecordAdmin(ReadOnlyAdmin):
    """A service's record of what it did for each saga step (sagas.participant.StepRecord)."""

    list_display = ("saga_id", "step", "action_reply", "compensation_reply", "updated_at")
    list_filter = ("step",)
    search_fields = ("=saga_id",)
    ordering = ("-updated_at",)
