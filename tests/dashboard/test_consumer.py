"""The dashboard websocket: who may connect, the snapshot, live changes made by other processes,
and a client that comes back resuming with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, connections

from sagaproject.asgi import application
from sagas.dashboard import feed
from sagas.dashboard.feed import Position
from sagas.dashboard.tailer import hub
from sagas.models import SagaEvent
from tests.dashboard.builders import (
    ORIGIN,
    append_event,
    in_another_process,
    raw_connection,
    session_headers,
    started_saga,
    user,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

# Importing the ASGI module marks the process as the ASGI server (SAGA_SERVER=asgi; settings are
# already loaded, so it changes nothing here): processes that tests start must not inherit it.
os.environ.pop("SAGA_SERVER", None)

Frame = dict[str, Any]


@pytest.fixture(autouse=True)
def tailers_stop() -> Iterator[None]:
    """Each test's tailer thread ends and every thread lets go of its connection (as in the ASGI
    server, CONN_MAX_AGE=0), so that the test database can be flushed and dropped."""
    connection.settings_dict["CONN_MAX_AGE"] = 0
    yield
    with hub.lock:
        hub.clients = 0
        if hub.tailer is not None:
            hub.tailer.stopping.set()
    for thread in threading.enumerate():
        if thread.name == "dashboard-tailer":
            thread.join(10)
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


def communicator(headers: list[tuple[bytes, bytes]], query: str = "") -> WebsocketCommunicator:
    path = "/ws/dashboard/" + (f"?{query}" if query else "")
    return WebsocketCommunicator(application, path, headers=headers)


async def staff_socket(query: str = "") -> tuple[WebsocketCommunicator, Frame]:
    staff = await database_sync_to_async(user)(staff=True)
    headers = await database_sync_to_async(session_headers)(staff)
    socket = communicator(headers, query)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    return socket, await socket.receive_json_from(timeout=10)


async def frames_until(
    socket: WebsocketCommunicator, done: Callable[[list[Frame]], bool], timeout: float = 20
) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        left = deadline - time.monotonic()
        assert left > 0, f"gave up waiting; got {frames}"
        frames.append(await socket.receive_json_from(timeout=left))
    return frames


def event_ids(frames: list[Frame]) -> list[int]:
    return [event[0] for frame in frames for event in frame.get("events", [])]


def ids_after(position: str) -> list[int]:
    """Every event after `position` in log order, read straight from the table."""
    after = Position.parse(position)
    assert after is not None
    events = SagaEvent.objects.order_by("xid", "id").values_list("xid", "id")
    return [event_id for xid, event_id in events if Position(xid, event_id) > after]


@pytest.mark.parametrize("who", ["anonymous", "not staff"])
async def test_anonymous_and_non_staff_users_are_refused(who: str) -> None:
    someone = None if who == "anonymous" else await database_sync_to_async(user)(staff=False)
    headers = await database_sync_to_async(session_headers)(someone)

    connected, code = await communicator(headers).connect(timeout=10)

    assert not connected
    assert code == 4403


async def test_a_foreign_origin_is_refused_even_for_staff() -> None:
    staff = await database_sync_to_async(user)(staff=True)
    headers = await database_sync_to_async(session_headers)(staff)
    foreign = [(b"origin", b"http://evil.example")] + [h for h in headers if h != ORIGIN]

    connected, _ = await communicator(foreign).connect(timeout=10)

    assert not connected


async def test_any_other_websocket_path_is_closed_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    staff = await database_sync_to_async(user)(staff=True)
    headers = await database_sync_to_async(session_headers)(staff)

    connected, _ = await WebsocketCommunicator(application, "/ws/other/", headers).connect()

    assert not connected
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_connection_receives_a_snapshot_of_counts_recent_sagas_and_the_chart() -> None:
    saga = await database_sync_to_async(started_saga)()

    socket, snapshot = await staff_socket()

    assert snapshot["type"] == "snapshot"
    assert snapshot["counts"]["pending"] == 1
    assert [s["id"] for s in snapshot["sagas"]] == [str(saga.id)]
    assert snapshot["sagas"][0]["order"] == saga.correlation_id
    assert snapshot["position"] == str(await database_sync_to_async(feed.head)())
    assert set(snapshot["chart"]) == {"bucket_ms", "minutes", "points"}
    await socket.disconnect()


async def test_the_counts_follow_even_when_they_come_after_the_events() -> None:
    socket, snapshot = await staff_socket()
    assert snapshot["counts"]["pending"] == 0

    await database_sync_to_async(started_saga)()

    # Counts are recounted at most once a second, often in a read with no new event.
    frames = await frames_until(
        socket, lambda fs: any(f["counts"] and f["counts"]["pending"] == 1 for f in fs)
    )
    assert frames[-1]["from"] == frames[-1]["to"] or frames[-1]["events"]
    await socket.disconnect()


async def test_the_snapshot_list_follows_the_filters() -> None:
    shown = await database_sync_to_async(started_saga)()
    await database_sync_to_async(started_saga)()

    socket, snapshot = await staff_socket(f"q={shown.correlation_id}&status=pending")

    assert [s["id"] for s in snapshot["sagas"]] == [str(shown.id)]
    await socket.disconnect()


async def test_a_change_made_by_another_process_is_pushed_live() -> None:
    saga = await database_sync_to_async(started_saga)()
    socket, snapshot = await staff_socket()

    await asyncio.to_thread(in_another_process, "saga", "compensate", str(saga.id))

    def compensating(frames: list[Frame]) -> bool:
        return any(
            s["id"] == str(saga.id) and s["status"] == "compensating"
            for frame in frames
            for s in frame["sagas"]
        )

    frames = await frames_until(socket, compensating)
    assert frames[0]["from"] == snapshot["position"]
    assert "compensation_started" in [event[3] for event in frames[-1]["events"]]
    await socket.disconnect()


async def test_a_returning_client_resumes_with_no_gap_and_no_duplicate() -> None:
    socket, snapshot = await staff_socket()
    first = await database_sync_to_async(started_saga)()
    frames = await frames_until(socket, lambda fs: any(fs) and fs[-1]["sagas"] != [])
    seen = frames[-1]["to"]
    await socket.disconnect()

    while_away = await database_sync_to_async(started_saga)()  # missed while disconnected
    socket, resumed = await staff_socket(f"since={seen}")

    assert resumed["type"] == "update" and resumed["resumed"]
    assert resumed["from"] == seen
    after_resume = await database_sync_to_async(started_saga)()
    live = await frames_until(
        socket, lambda fs: any(s["id"] == str(after_resume.id) for f in fs for s in f["sagas"])
    )
    received = event_ids([snapshot_free(frames), resumed, *live])
    expected = await database_sync_to_async(ids_after)(snapshot["position"])
    assert received == expected  # in log order, each once
    changed = {s["id"] for frame in [resumed, *live] for s in frame["sagas"]}
    assert {str(while_away.id), str(after_resume.id)} <= changed
    assert str(first.id) not in changed
    await socket.disconnect()


def snapshot_free(frames: list[Frame]) -> Frame:
    """The live frames before a disconnect, as one."""
    return {"events": [e for frame in frames for e in frame["events"]]}


async def test_a_client_resuming_across_an_out_of_order_commit_gets_every_event_once() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: ids commit in order there")
    saga = await database_sync_to_async(started_saga)()
    socket, snapshot = await staff_socket()
    await socket.disconnect()

    with raw_connection() as early, raw_connection() as late:
        early_id = append_event(early, saga.id, "early")
        late_id = append_event(late, saga.id, "late")
        late.commit()  # the higher id is committed, the lower one is still in flight
        socket, resumed = await staff_socket(f"since={snapshot['position']}")
        assert resumed["events"] == []  # not `late` alone: it would leave `early` behind
        early.commit()
        live = await frames_until(socket, lambda fs: late_id in event_ids(fs))

    resumed_again_from = resumed["to"]
    assert event_ids([resumed, *live]) == [early_id, late_id]
    await socket.disconnect()

    # And a client that saw up to `early`... no: the position handed out is the last one sent.
    socket, again = await staff_socket(f"since={live[-1]['to']}")
    assert again["events"] == [] and again["from"] == live[-1]["to"] != resumed_again_from
    await socket.disconnect()


async def test_a_live_client_gets_both_sides_of_an_out_of_order_commit_in_log_order() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: ids commit in order there")
    saga = await database_sync_to_async(started_saga)()
    socket, _ = await staff_socket()

    with raw_connection() as early, raw_connection() as late:
        early_id = append_event(early, saga.id, "early")
        late_id = append_event(late, saga.id, "late")
        late.commit()
        await asyncio.sleep(1.0)  # several tailer looks while `early` is in flight
        early.commit()
    frames = await frames_until(socket, lambda fs: late_id in event_ids(fs))

    assert event_ids(frames) == [early_id, late_id]
    await socket.disconnect()


async def test_clients_of_one_process_share_one_tailer_reading_at_most_once_per_interval() -> None:
    sockets = [(await staff_socket())[0] for _ in range(3)]
    await asyncio.sleep(1.5)

    tailers = [t for t in threading.enumerate() if t.name == "dashboard-tailer" and t.is_alive()]
    assert tailers == [hub.tailer] and hub.clients == 3
    tailer = hub.tailer
    assert tailer is not None
    elapsed = time.monotonic() - tailer.began
    assert 1 <= tailer.reads <= elapsed / tailer.config.poll_seconds + 1
    for socket in sockets:
        await socket.disconnect()
