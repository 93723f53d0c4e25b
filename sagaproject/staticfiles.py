"""Static files from every web process: WhiteNoise, kept off the request's thread.

WhiteNoise's middleware is synchronous only. Under the ASGI server, one synchronous middleware
makes Django run the whole chain in a thread and the views inside it through async_to_sync, so
an order's long poll (`?wait=`, an async view that sleeps in the event loop) would hold a thread
for up to 30 s, and its file responses would be read chunk by chunk in threads. This middleware
answers a static file in one thread hop and hands every other request on as it came: async
under ASGI, sync under WSGI and the test client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware

Handler = Callable[[HttpRequest], Any]


@sync_and_async_middleware
def static_files(get_response: Handler) -> Handler:
    whitenoise = WhiteNoiseMiddleware(get_response)
    if not iscoroutinefunction(get_response):
        return whitenoise
    inner: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = get_response

    def lookup(path: str) -> Any:
        # Collected files are indexed once at start-up; with DEBUG (autorefresh) each request
        # looks in the apps' directories.
        return whitenoise.find_file(path) if whitenoise.autorefresh else whitenoise.files.get(path)

    def answer(found: Any, request: HttpRequest) -> HttpResponse:
        """The file as one response: the static files here are small (the largest, the API
        docs' script, is 1.4 MB and 0.4 MB gzipped), and a whole body leaves the event loop
        nothing to read in threads."""
        served = whitenoise.serve(found, request)
        try:
            body = b"".join(served.streaming_content)
        finally:
            served.close()
        response = HttpResponse(body, status=served.status_code)
        del response["Content-Type"]  # WhiteNoise's headers are complete
        for header, value in served.items():
            response[header] = value
        return response

    async def middleware(request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(whitenoise.static_prefix):
            return await inner(request)
        found = (
            await sync_to_async(lookup, thread_sensitive=False)(request.path_info)
            if whitenoise.autorefresh
            else lookup(request.path_info)
        )
        if found is None:
            return await inner(request)
        return await sync_to_async(answer, thread_sensitive=False)(found, request)

    return middleware
