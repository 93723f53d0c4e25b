"""The ASGI handler (sagaproject.handlers): a request for a synchronous view crosses into a
thread once, with every middleware applied; async views, static files and unknown paths keep
Django's asynchronous chain."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.testing import HttpCommunicator
from django.core.signals import request_finished
from django.db import connection, connections
from rest_framework.authtoken.models import Token

from sagaproject.asgi import application
from sagaproject.handlers import RequestThread, serves_synchronously
from tests.api.builders import user

# Importing the ASGI module marks the process as the ASGI server: processes tests start must not
# inherit it (settings are loaded already).
os.environ.pop("SAGA_SERVER", None)


@pytest.mark.parametrize(
    ("path", "synchronous"),
    [
        ("/api/orders/", True),  # DRF
        ("/api/products/", True),
        ("/admin/", True),
        (f"/api/orders/{uuid.uuid4()}/", False),  # the long poll: an async view
        ("/static/sagas/dashboard/dashboard.js", False),  # answered whole, in the loop
        ("/nowhere/", False),
    ],
)
def test_which_requests_take_the_synchronous_chain(path: str, synchronous: bool) -> None:
    assert serves_synchronously(path) is synchronous


@pytest.fixture
def crossings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the functions run through `sync_to_async` meanwhile."""
    seen: list[str] = []
    call = SyncToAsync.__call__

    async def counting(self: SyncToAsync, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    yield seen


@pytest.fixture
def connections_closed_per_request() -> Iterator[None]:
    """As in the ASGI server (CONN_MAX_AGE=0): the request's thread lets go of its connection
    when the request finishes, so that the test database can be flushed and dropped."""
    connection.settings_dict["CONN_MAX_AGE"] = 0
    yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("connections_closed_per_request")
async def test_a_synchronous_view_is_answered_in_one_crossing_with_every_middleware(
    crossings: list[str],
) -> None:
    token = await sync_to_async(lambda: Token.objects.create(user=user()).key)()
    crossings.clear()

    request = HttpCommunicator(
        application,
        "GET",
        "/api/products/",
        headers=[(b"authorization", f"Token {token}".encode()), (b"host", b"localhost")],
    )
    answer = await request.get_response(timeout=10)
    await request.wait(timeout=10)  # the response closed, the request finished

    assert answer["status"] == 200
    headers = {name.decode().lower(): value.decode() for name, value in answer["headers"]}
    assert headers["x-frame-options"] == "DENY"  # XFrameOptionsMiddleware, last of the chain
    assert headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware, near the first
    # The view with its middleware, once; the others are Django's own, as under its handler:
    # the request_started signal, and the response's close (with request_finished).
    assert crossings.count("BaseHandler.get_response") == 1
    assert len(crossings) == 3, crossings
    await sync_to_async(connections.close_all)()  # the token's, made in asgiref's thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.usefixtures("connections_closed_per_request")
async def test_requests_one_after_another_are_served_on_one_kept_thread() -> None:
    # Django's handler starts a thread for every request; this one keeps them.
    threads: list[threading.Thread] = []  # the Thread objects: kept, so never two with one id

    def finished(**kwargs: Any) -> None:  # runs on the request's thread, as its view did
        threads.append(threading.current_thread())

    request_finished.connect(finished, dispatch_uid="test_kept_thread")
    try:
        for _ in range(3):
            request = HttpCommunicator(
                application, "GET", "/api/products/", headers=[(b"host", b"localhost")]
            )
            answer = await request.get_response(timeout=10)
            await request.wait(timeout=10)
            assert answer["status"] == 401
    finally:
        request_finished.disconnect(dispatch_uid="test_kept_thread")

    assert len(threads) == 3
    assert len({id(thread) for thread in threads}) == 1
    assert threads[0] is not threading.main_thread()


def test_a_request_thread_is_idle_only_once_its_work_is_done() -> None:
    # A request whose client went away returns while its view may still run on its thread: the
    # handler keeps only idle threads, so that no request waits behind an abandoned one.
    thread = RequestThread()
    release = threading.Event()
    try:
        assert thread.idle
        running = thread.submit(release.wait, 10)
        queued = thread.submit(lambda: None)

        assert not thread.idle
        release.set()
        running.result(timeout=10)
        queued.result(timeout=10)
        deadline = time.monotonic() + 5  # the done callbacks run just after the results
        while not thread.idle and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.idle
    finally:
        release.set()
        thread.shutdown()
