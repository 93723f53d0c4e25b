"""The ASGI handler: Django's, with a request for a synchronous view handled in one thread hop.

Django's middleware classes (MiddlewareMixin) serve ASGI by running each of their hooks through
`sync_to_async`, so under Django's own handler a request for a synchronous view (the API, the
admin) crosses between the event loop and a thread about twenty times: each middleware's
`process_request` and `process_response`, then the view. Here such a request runs the
synchronous middleware chain in one crossing, as a WSGI server would run it. Everything else
keeps Django's asynchronous chain: an async view (an order's long poll waits in the event loop,
not in a thread), the static files (sagaproject.staticfiles answers them whole, in the loop) and
a path no view serves.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve


class ASGIHandler(DjangoASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        synchronous = BaseHandler()
        synchronous.load_middleware(is_async=False)
        self._in_one_thread_hop = sync_to_async(synchronous.get_response, thread_sensitive=True)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if serves_synchronously(request.path_info):
            response: HttpResponseBase = await self._in_one_thread_hop(request)
            return response
        return await super().get_response_async(request)


def serves_synchronously(path: str) -> bool:
    """Whether `path` resolves to a synchronous view (no view serves the static files)."""
    try:
        view: Any = resolve(path, urlconf=settings.ROOT_URLCONF).func
    except Resolver404:
        return False
    return not iscoroutinefunction(view)
