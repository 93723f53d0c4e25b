"""The API's settings, read from Django settings into one typed object (see sagaproject/settings)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class ApiConfig:
    order_throttle_rate: str | None  # DRF rate such as "100/second"; None: no throttle
    docs_public: bool  # schema and docs open to anonymous clients
    metrics_require_staff: bool  # /metrics only for a staff user (token or session)
    max_body_bytes: int  # larger request bodies are refused with 413
    max_wait_seconds: int  # upper bound of ?wait= on an order


def api_config() -> ApiConfig:
    """Read on each use (cheap), so that tests overriding settings see their values."""
    return ApiConfig(
        order_throttle_rate=settings.ORDER_THROTTLE_RATE or None,
        docs_public=settings.API_DOCS_PUBLIC,
        metrics_require_staff=settings.METRICS_REQUIRE_STAFF,
        max_body_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        max_wait_seconds=30,
    )
