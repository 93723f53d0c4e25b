"""The OpenAPI schema: valid, served with local docs, and true to the running API, checked by
Schemathesis generating requests from it (valid ones and deliberately invalid ones) against the
in-process app, authenticated, on the test database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.builders import anonymous, product, user

pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))

    assert "/api/orders/{order_id}/" in (tmp_path / "s.yml").read_text()


def test_the_schema_documents_the_idempotency_key_and_the_error_shape() -> None:
    schema = anonymous().get("/api/schema/", HTTP_ACCEPT="application/json").json()

    create = schema["paths"]["/api/orders/"]["post"]
    headers = [p for p in create["parameters"] if p["in"] == "header"]
    assert [h["name"] for h in headers] == ["Idempotency-Key"]
    assert headers[0]["schema"]["maxLength"] == 255
    assert set(create["responses"]) >= {"202", "400", "401", "403", "413", "415", "422", "429"}
    error = create["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message"]
    wait = schema["paths"]["/api/orders/{order_id}/"]["get"]["parameters"]
    assert {"name": "wait", "in": "query"}.items() <= next(
        p for p in wait if p["name"] == "wait"
    ).items()


def test_the_docs_page_uses_locally_served_assets() -> None:
    page = anonymous().get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr.net" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


# --- Schemathesis ----------------------------------------------------------------------------


def in_test_transaction(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The project's WSGI app, minus the connection closing at the ends of a request (as Django's
    test client does), so that requests run inside the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        response = WSGIHandler()(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


RAW_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
SCHEMA = schemathesis.openapi.from_dict(RAW_SCHEMA)
SCHEMA.app = in_test_transaction
OPERATIONS = []
for result in SCHEMA.get_all_operations():
    if isinstance(result, Err):
        raise result.err()  # a schema Schemathesis cannot read is a failure of its own
    OPERATIONS.append(result.ok())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_MODE = 50
GENERATED: Counter[str] = Counter()


def takes_input(operation: Any) -> bool:
    raw = RAW_SCHEMA["paths"][operation.path][operation.method.lower()]
    return bool(raw.get("parameters") or raw.get("requestBody"))


# Negative cases need an input to break: an operation without any has none.
# Staff reach every operation; a user is refused the staff ones (403 must be documented too).
RUNS = [
    (operation, mode, staff)
    for operation in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for staff in (True, False)
    if (mode is GenerationMode.POSITIVE or takes_input(operation))
    and (staff or mode is GenerationMode.POSITIVE)
]


@pytest.mark.parametrize(
    ("operation", "mode", "staff"),
    RUNS,
    ids=[f"{op.label} {mode.value} {'staff' if staff else 'user'}" for op, mode, staff in RUNS],
)
def test_the_api_honours_its_schema_for_generated_requests(
    operation: Any, mode: GenerationMode, staff: bool
) -> None:
    product("MUG-002")
    token, _ = Token.objects.get_or_create(user=user(staff=staff))
    auth = {"Authorization": f"Token {token.key}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        GENERATED[label] += 1
        if case.query and "wait" in case.query:
            case.query["wait"] = _short(case.query["wait"])
        response = case.call(headers=auth)
        case.validate_response(response, checks=CHECKS, headers=auth)

    label = f"{operation.label} {mode.value} {staff}"
    run()
    assert GENERATED[label] >= EXAMPLES_PER_MODE // 2


def _short(wait: Any) -> Any:
    """Keep a generated ?wait= from making a case sleep: valid values become 0, others stay."""
    try:
        return 0 if 0 <= float(wait) <= 30 else wait
    except (TypeError, ValueError):
        return wait
