"""One error shape for every error on /api/, including the ones Django answers itself, and the
throttle on placing orders."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings

from sagas.api import errors
from storefront.api import views
from tests.api.builders import client_for, created_rows, place, product, user

pytestmark = pytest.mark.django_db


def assert_error_shape(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status
    assert answer["Content-Type"] == "application/json"
    body = answer.json()
    assert set(body) <= {"code", "message", "fields"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]


# Django answers a URL no route matches with its HTML debug page when DEBUG is on (`make run`),
# without calling handler404: the API's shape must hold in both modes.
both_debug_modes = pytest.mark.parametrize("debug", [False, True], ids=["debug_off", "debug_on"])


@both_debug_modes
def test_an_unknown_api_path_is_a_json_404(settings: Settings, debug: bool) -> None:
    settings.DEBUG = debug
    client = client_for(user())

    assert_error_shape(client.get("/api/nothing-here/"), 404, "not_found")
    assert_error_shape(client.get("/api/nope/"), 404, "not_found")
    assert_error_shape(client.post("/api/nope/", {}), 404, "not_found")
    signed_in = Client(enforce_csrf_checks=True)  # a browser session without a CSRF token
    signed_in.force_login(user())
    assert_error_shape(signed_in.post("/api/nope/", {}), 404, "not_found")
    assert_error_shape(client.get("/api/"), 404, "not_found")


@both_debug_modes
def test_a_malformed_id_in_an_api_path_is_a_json_404(settings: Settings, debug: bool) -> None:
    settings.DEBUG = debug

    assert_error_shape(client_for(user()).get("/api/orders/not-a-uuid/"), 404, "not_found")
    staff = client_for(user(staff=True))
    assert_error_shape(staff.post("/api/sagas/42/compensate/"), 404, "not_found")


@both_debug_modes
def test_an_api_path_missing_its_slash_is_a_json_404_naming_the_right_one(
    settings: Settings, debug: bool
) -> None:
    settings.DEBUG = debug

    answer = client_for(user()).post("/api/orders", {})

    assert_error_shape(answer, 404, "not_found")
    assert "/api/orders/" in answer.json()["message"]


@both_debug_modes
def test_a_404_outside_the_api_stays_html(settings: Settings, debug: bool) -> None:
    settings.DEBUG = debug

    answer = client_for(user()).get("/not-the-api/")

    assert answer.status_code == 404
    assert answer["Content-Type"].startswith("text/html")


def test_an_unsupported_method_is_a_405_in_the_error_shape() -> None:
    assert_error_shape(client_for(user()).delete("/api/orders/"), 405, "method_not_allowed")


def test_asking_for_anything_but_json_is_a_406() -> None:
    answer = client_for(user()).get("/api/products/", HTTP_ACCEPT="text/html")

    assert_error_shape(answer, 406, "not_acceptable")


def test_a_crash_in_a_view_is_a_json_500_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "catalogue", broken)
    client = client_for(user())
    client.raise_request_exception = False

    answer = client.get("/api/products/")

    assert_error_shape(answer, 500, "server_error")
    assert b"secret internals" not in answer.content


def test_a_disallowed_host_on_the_api_is_a_json_400() -> None:
    answer = client_for(user()).get("/api/products/", HTTP_HOST="evil.example")

    assert_error_shape(answer, 400, "bad_request")


def test_a_body_django_finds_too_large_is_a_json_413() -> None:
    request = RequestFactory().post("/api/orders/")

    answer = errors.handler400(request, RequestDataTooBig())

    assert answer.status_code == 413
    assert answer["Content-Type"] == "application/json"


# --- Throttle --------------------------------------------------------------------------------


def fresh_throttle_cache(settings: Settings) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_placing_orders_faster_than_the_rate_is_throttled_with_429(settings: Settings) -> None:
    fresh_throttle_cache(settings)
    settings.ORDER_THROTTLE_RATE = "2/minute"
    product()
    client = client_for(user())
    assert [place(client).status_code for _ in range(2)] == [202, 202]
    before = created_rows()

    answer = place(client)

    assert_error_shape(answer, 429, "throttled")
    assert int(answer["Retry-After"]) > 0
    assert created_rows() == before
    assert client.get("/api/orders/").status_code == 200  # reading is not throttled
    assert place(client_for(user())).status_code == 202  # the limit is per user


def test_an_empty_rate_turns_the_throttle_off(settings: Settings) -> None:
    fresh_throttle_cache(settings)
    settings.ORDER_THROTTLE_RATE = "1/minute"
    product()
    client = client_for(user())
    assert [place(client).status_code for _ in range(2)] == [202, 429]

    settings.ORDER_THROTTLE_RATE = ""

    assert [place(client).status_code for _ in range(3)] == [202, 202, 202]


def test_a_lost_database_connection_is_a_503_to_retry_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    def database_gone(**kwargs: Any) -> None:
        raise OperationalError("terminating connection due to administrator command")

    product()
    monkeypatch.setattr(views, "place_order", database_gone)
    before = created_rows()
    answer = place(client_for(user()))
    assert_error_shape(answer, 503, "service_unavailable")
    assert answer["Retry-After"] == "1"
    assert created_rows() == before
