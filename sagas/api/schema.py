"""OpenAPI pieces shared by every API view: the error responses in the one error shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from sagas.api.errors import ErrorSerializer

_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The request is invalid; `fields` says which fields and why. Nothing was created.",
        {
            "code": "invalid",
            "message": "The request has invalid fields.",
            "fields": {
                "items": {"0": {"quantity": ["Ensure this value is less than or equal to 1000."]}}
            },
        },
    ),
    401: (
        "No valid credentials (send `Authorization: Token <key>`).",
        {"code": "not_authenticated", "message": "Authentication credentials were not provided."},
    ),
    403: (
        "Signed in, but not allowed (staff only, or the CSRF check of a session failed).",
        {
            "code": "permission_denied",
            "message": "You do not have permission to perform this action.",
        },
    ),
    404: ("Not found, or not yours.", {"code": "not_found", "message": "Not found."}),
    409: (
        "The action conflicts with the current state.",
        {"code": "action_rejected", "message": "the saga is already completed"},
    ),
    413: (
        "The request body is larger than the server accepts.",
        {"code": "too_large", "message": "The request body is too large."},
    ),
    415: (
        "The body is not `application/json`.",
        {
            "code": "unsupported_media_type",
            "message": 'Unsupported media type "text/plain" in request.',
        },
    ),
    422: (
        "The Idempotency-Key was first used with a different request body.",
        {
            "code": "idempotency_key_reused",
            "message": "This Idempotency-Key was used with a different request body.",
        },
    ),
    429: (
        "Too many requests; retry after the `Retry-After` seconds.",
        {"code": "throttled", "message": "Request was throttled. Expected available in 1 second."},
    ),
    503: (
        "The database is unreachable (restart, failover); nothing was done. Retry after "
        "`Retry-After` seconds, with the same Idempotency-Key for an order.",
        {"code": "service_unavailable", "message": "The database is unavailable; retry shortly."},
    ),
}


def error(status_code: int, description: str, example: dict[str, str]) -> OpenApiResponse:
    """An error response in the one error shape, with an example."""
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[OpenApiExample(example["code"], value=example, status_codes=[status_code])],
    )


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The usual error responses of these statuses."""
    return {code: error(code, *_ERRORS[code]) for code in statuses}


def close_request_objects(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: request bodies refuse unknown fields, so their schemas say so."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
