"""The ASGI handler: Django's, with a request for a synchronous view handled in one thread hop.

Django's middleware classes (MiddlewareMixin) serve ASGI by running each of their hooks through
`sync_to_async`, so under Django's own handler a request for a synchronous view (the API, the
admin) crosses between the event loop and a thread about twenty times: each middleware's
`process_request` and `process_response`, then the view. Here such a request runs the
synchronous middleware chain in one crossing, as a WSGI server would run it. Everything else
keeps Django's asynchronous chain: an async view (an order's long poll waits in the event loop,
not in a thread), the static files (sagaproject.staticfiles answers them whole, in the loop) and
a path no view serves.

Django runs each request's thread-sensitive code on a thread of its own (a ThreadSensitiveContext),
and makes a new thread for every request, which costs about a fifth of an order's CPU in the web
process. Here each request gets a thread kept from an earlier request: the same rule (one
request's thread-sensitive code on one thread, no other request's meanwhile), without the
thread's start and end on every request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

# Threads kept for the next requests, at most: past this many requests at once, the extra
# threads end with their request.
THREADS_KEPT = 64


class RequestThread(ThreadPoolExecutor):
    """One thread for one request at a time, which knows whether work is still queued on it: a
    request whose client went away returns while its view may still be running there."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self._pending = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def idle(self) -> bool:
        return self._pending == 0


class ASGIHandler(DjangoASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        synchronous = BaseHandler()
        synchronous.load_middleware(is_async=False)
        self._in_one_thread_hop = sync_to_async(synchronous.get_response, thread_sensitive=True)
        self._idle_threads: list[RequestThread] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # as Django's handler
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self._idle_threads.pop() if self._idle_threads else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            if thread.idle and len(self._idle_threads) < THREADS_KEPT:
                self._idle_threads.append(thread)
            else:  # it ends once its work is done
                thread.shutdown(wait=False)

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
