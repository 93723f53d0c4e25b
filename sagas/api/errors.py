"""One error shape for every API error: {"code", "message", "fields"?}, with stable codes.

`exception_handler` is DRF's one handler; the `handler*` views give Django-level errors on /api/
paths (a crash outside a view, a body too large) the same shape, and `no_such_endpoint`, the last
/api/ route, answers an unknown API URL in it whether DEBUG is on or off.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, get_urlconf, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from sagas.exceptions import SagaActionRejected, SagaError, SagaNotFound

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

# Stable codes by status, for errors that carry no more specific code of their own.
_STATUS_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_422_UNPROCESSABLE_ENTITY: "unprocessable",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
    status.HTTP_500_INTERNAL_SERVER_ERROR: "server_error",
    status.HTTP_503_SERVICE_UNAVAILABLE: "service_unavailable",
}
INVALID_MESSAGE = "The request has invalid fields."


class ApiError(exceptions.APIException):
    """An error with an explicit status, stable code and message, raised by views."""

    def __init__(
        self, status_code: int, code: str, message: str, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def invalid(fields: dict[str, Any]) -> ApiError:
    """A 400 with field errors, as a serializer's validation would give."""
    return ApiError(status.HTTP_400_BAD_REQUEST, "invalid", INVALID_MESSAGE, fields)


def error_body(code: str, message: str, fields: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        # The database went away (restart, failover, a killed connection): nothing was
        # committed, so the client may retry, with its Idempotency-Key for an order.
        log.warning("database unavailable", extra={"error": str(exc)[:200]})
        return Response(
            error_body("service_unavailable", "The database is unavailable; retry shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, SagaError):
        http_status: int = status.HTTP_400_BAD_REQUEST
        if isinstance(exc, SagaNotFound):
            http_status = status.HTTP_404_NOT_FOUND
        elif isinstance(exc, SagaActionRejected):
            http_status = status.HTTP_409_CONFLICT
        return Response(error_body(exc.code, str(exc)), status=http_status)
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    # Imported here: rest_framework.views loads the configured parsers, which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's handler500 answers (in this shape on /api/)
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        body = error_body("invalid", INVALID_MESSAGE, fields)
    else:
        error_code = str(getattr(exc, "default_code", "error"))
        if error_code == "error":  # a plain APIException: name it by its status
            error_code = _STATUS_CODES.get(response.status_code, "error")
        body = error_body(error_code, str(getattr(exc, "detail", "")))
    response.data = body
    return response


# --- Django-level errors on /api/ paths -------------------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)  # type: ignore[arg-type]
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            error_body("too_large", RequestTooLarge.default_detail),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return JsonResponse(error_body("bad_request", "The request is malformed."), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)  # type: ignore[arg-type]
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body("not_found", "Not found."), status=404)


@csrf_exempt  # it changes nothing; a CSRF refusal would answer Django's HTML 403 instead
def no_such_endpoint(request: HttpRequest) -> HttpResponse:
    """The last route under /api/: what no API route matched.

    With DEBUG on, Django answers an unmatched URL with its HTML debug page and never calls
    handler404; matching every leftover /api/ path here keeps the API's error shape in both
    modes. It also stands in for APPEND_SLASH's redirect, which cannot carry a POST body: the
    message names the URL with its slash.
    """
    with_slash = f"{request.path_info}/"
    if not request.path_info.endswith("/") and _routed(with_slash):
        message = f"Not found. The endpoint is {with_slash} (with the trailing slash)."
    else:
        message = "Not found."
    return JsonResponse(error_body("not_found", message), status=404)


def _routed(path: str) -> bool:
    try:
        return resolve(path, get_urlconf()).func is not no_such_endpoint
    except Resolver404:
        return False


def handler500(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse(
        error_body("server_error", "The server failed to answer; the error was logged."),
        status=500,
    )


# --- The error shape in the OpenAPI schema --------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """Every error the API returns."""

    code = serializers.CharField(
        help_text=(
            "Stable code: invalid, parse_error, bad_request, not_authenticated, "
            "authentication_failed, permission_denied, not_found, method_not_allowed, "
            "not_acceptable, action_rejected, product_exists, idempotency_key_reused, too_large, "
            "unsupported_media_type, throttled, server_error."
        ),
    )
    message = serializers.CharField(help_text="For people; the wording may change.")
    # Declared fields are popped from the class body, so this does not shadow Serializer.fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        required=False,
        help_text="Only with code `invalid`: each request field (nested as sent) to its messages.",
    )
