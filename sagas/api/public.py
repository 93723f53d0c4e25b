"""Endpoints outside the user API: the Prometheus scrape, open unless METRICS_REQUIRE_STAFF."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from sagas.api.config import api_config
from sagas.api.permissions import MetricsAccess
from sagas.metrics import metrics_view


class _AnyAccept(BaseContentNegotiation):
    """The scrape is text whatever the scraper accepts; errors are JSON."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


@extend_schema(exclude=True)
class Metrics(APIView):
    permission_classes = [MetricsAccess]
    content_negotiation_class = _AnyAccept

    def get_authenticators(self) -> list[BaseAuthentication]:
        # Open metrics ignore credentials, so a scraper's stale token cannot lock it out.
        return super().get_authenticators() if api_config().metrics_require_staff else []

    def get(self, request: Request) -> HttpResponse:
        return metrics_view(request._request)
