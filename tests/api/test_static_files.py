"""Static files come from the application itself (WhiteNoise) without turning the ASGI server's
middleware chain synchronous: the views behind it, such as an order's long poll, stay in the
event loop. (Served for real, collected and cached for a year: tests/functional/
test_production_serving.py.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, Client

DASHBOARD_JS = Path(settings.BASE_DIR) / "sagas" / "static" / "sagas" / "dashboard" / "dashboard.js"


def test_the_asgi_middleware_chain_is_asynchronous_from_end_to_end(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = True  # Django says which handler it adapts only in debug mode
    caplog.set_level(logging.DEBUG, logger="django.request")

    ASGIHandler()  # loads the middleware chain

    adapted = [r.getMessage() for r in caplog.records if "adapted for" in r.getMessage()]
    assert adapted == []


@pytest.mark.asyncio
async def test_a_static_file_is_served_whole_to_an_async_request() -> None:
    answer = await AsyncClient().get("/static/sagas/dashboard/dashboard.js")

    assert answer.status_code == 200
    assert answer.content == DASHBOARD_JS.read_bytes()
    assert answer["Content-Type"].startswith("text/javascript")
    assert int(answer["Content-Length"]) == DASHBOARD_JS.stat().st_size


@pytest.mark.asyncio
async def test_a_conditional_request_for_an_unchanged_file_gets_304() -> None:
    first = await AsyncClient().get("/static/sagas/dashboard/dashboard.js")

    again = await AsyncClient().get(
        "/static/sagas/dashboard/dashboard.js", headers={"If-None-Match": first["ETag"]}
    )

    assert again.status_code == 304
    assert again.content == b""


def test_the_sync_path_serves_the_same_file() -> None:
    answer = Client().get("/static/sagas/dashboard/dashboard.js")

    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == DASHBOARD_JS.read_bytes()  # type: ignore[attr-defined]
