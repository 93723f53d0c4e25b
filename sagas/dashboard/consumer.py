"""The dashboard's websocket: a snapshot on connect (or, for a client that comes back with the
position it last saw, exactly what it missed), then the tailer's batches, coalesced to at most one
frame per frame interval (docs/architecture.md §7).

Invariant: `self.seen` is the position up to which this client has been sent every event, once.
A batch is forwarded only from `self.seen` on; a batch that starts beyond it (lost or late on the
way, a new tailer) has the gap read from the log first, which is safe because every position the
tailer hands out is final (feed.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from sagas.config import dashboard_config
from sagas.dashboard import feed
from sagas.dashboard.feed import Batch, Filters, Position
from sagas.dashboard.tailer import GROUP, hub

REFUSED = 4403  # close code for a client that may not watch (anonymous, not staff)
GROUP_REJOIN_SECONDS = 3600
RESUME_LIMIT = 20_000  # events; a client further behind gets a fresh snapshot instead


def opening(since: Position | None, filters: Filters) -> tuple[Position, dict[str, Any]]:
    """The first frame: what a returning client missed, or a snapshot."""
    if since is not None and since <= feed.head():
        missed = feed.read_after(since, limit=RESUME_LIMIT, counts=True)
        if len(missed.events) < RESUME_LIMIT:
            return missed.end, {**missed.frame(), "resumed": True}
    snapshot = feed.snapshot(filters)
    return Position.parse(snapshot["position"]) or feed.START, snapshot


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if not (user is not None and user.is_authenticated and user.is_staff):
            await self.close(code=REFUSED)
            return
        params = dict(parse_qsl(self.scope.get("query_string", b"").decode()))
        self.frame_seconds = dashboard_config().frame_seconds
        self.filters = Filters.from_params(params)
        self.pending: Batch | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.last_frame = 0.0
        await self.accept()
        # Join before reading: batches published meanwhile wait in the channel and are trimmed
        # to what the opening frame did not cover.
        await self.channel_layer.group_add(GROUP, self.channel_name)
        hub.attach(asyncio.get_running_loop())
        self.attached = True
        self.membership = asyncio.get_running_loop().create_task(self.stay_in_group())
        self.seen, first = await database_sync_to_async(opening)(
            Position.parse(params.get("since")), self.filters
        )
        await self.send_json(first)
        self.last_frame = time.monotonic()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "attached", False):
            self.attached = False
            if self.flusher is not None:
                self.flusher.cancel()
            self.membership.cancel()
            hub.detach()
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the page only listens; filters and actions go over HTTP

    async def dashboard_batch(self, message: dict[str, Any]) -> None:
        batch = Batch.from_message(message)
        if batch.end <= self.seen:  # no event this client has not had
            if batch.counts is None:
                return
            batch = Batch(self.seen, self.seen, counts=batch.counts)  # the counts are news
        if batch.start > self.seen:
            gap = await database_sync_to_async(feed.read_after)(
                self.seen, limit=RESUME_LIMIT, upto=batch.start
            )
            if len(gap.events) >= RESUME_LIMIT:  # too far behind to fill: start afresh
                await self.restart()
                return
            gap.end = batch.start
            batch = gap.then(batch)
        batch = batch.after(self.seen)
        self.seen = batch.end
        self.pending = batch if self.pending is None else self.pending.then(batch)
        self.schedule_flush()

    async def stay_in_group(self) -> None:
        """Channel layers forget group members after `group_expiry` (a day by default): join
        again now and then, so that a page left open for days stays live."""
        while True:
            await asyncio.sleep(GROUP_REJOIN_SECONDS)
            await self.channel_layer.group_add(GROUP, self.channel_name)

    def schedule_flush(self) -> None:
        if self.flusher is None:
            delay = max(0.0, self.last_frame + self.frame_seconds - time.monotonic())
            self.flusher = asyncio.get_running_loop().create_task(self.flush(delay))

    async def flush(self, delay: float) -> None:
        """Send what is pending as one frame, no sooner than a frame interval after the last."""
        await asyncio.sleep(delay)
        self.flusher = None
        batch, self.pending = self.pending, None
        if batch is None or not self.attached:
            return
        self.last_frame = time.monotonic()
        await self.send_json(batch.frame())

    async def restart(self) -> None:
        self.pending = None
        self.seen, snapshot = await database_sync_to_async(opening)(None, self.filters)
        await self.send_json(snapshot)


class Refuse(AsyncWebsocketConsumer):
    """Any other websocket path: closed at the handshake, without an error."""

    async def connect(self) -> None:
        await self.close()
