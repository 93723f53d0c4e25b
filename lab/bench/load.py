"""A run's orders as a closed loop: `concurrency` clients, each placing an order and waiting for
its saga to end before placing the next (one client measures the idle latency). Orders go in over
HTTP, as a shop's clients send them, or straight through the storefront's service function
(`--direct`), which leaves the web server out.

One poller, in the main thread, watches the database for the sagas in flight and releases their
clients; it alone queries from the measuring process's main connection (see meters.OwnStatements).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import requests
from django.db import connections
from django.db.models import Q

from lab.bench.spec import RunSpec, is_declined
from payments import testcards
from sagas.core.state import SagaStatus
from sagas.models import Saga
from storefront.checkout import ACCEPTED, place_order
from storefront.samples import order_body

Place = Callable[[dict[str, Any]], str]  # places one order, returns its saga id

POLL_SECONDS = 0.01  # the poller's pace: a client waits this long at most after its saga ended
STALL_SECONDS = 120.0  # no saga ended for this long while some are in flight: the run fails


@dataclass(frozen=True)
class Outcome:
    """One order as the driver saw it; both times are this host's wall clock."""

    saga_id: uuid.UUID
    submitted: float  # just before the request (or the call) went out
    status: str
    finished: float | None  # the saga's finished_at; None for a stuck saga

    @property
    def latency_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.submitted) * 1000


def order_bodies(spec: RunSpec, skus: list[str]) -> list[dict[str, Any]]:
    """The run's orders: one unit each, over the products in turn, declined cards spread evenly."""
    return [
        order_body(
            sku=skus[n % len(skus)],
            quantity=1,
            card=testcards.DECLINED if is_declined(n, spec.decline_rate) else testcards.OK,
        )
        for n in range(spec.orders)
    ]


class Checkout(Protocol):
    def client(self) -> AbstractContextManager[Place]: ...


class HttpCheckout:
    """`POST /api/orders/`, one keep-alive session per client."""

    def __init__(self, base_url: str, token: str) -> None:
        self.url, self.token = f"{base_url}/api/orders/", token

    @contextmanager
    def client(self) -> Iterator[Place]:
        with requests.Session() as http:
            http.headers["Authorization"] = f"Token {self.token}"

            def place(body: dict[str, Any]) -> str:
                answer = http.post(self.url, json=body, timeout=60)
                if answer.status_code != ACCEPTED:
                    raise RuntimeError(f"order refused: {answer.status_code} {answer.text[:300]}")
                return str(answer.json()["saga_id"])

            yield place


class DirectCheckout:
    """`storefront.checkout.place_order` in the client's thread, on its own connection."""

    def __init__(self, owner_id: int) -> None:
        self.owner_id = owner_id

    @contextmanager
    def client(self) -> Iterator[Place]:
        def place(body: dict[str, Any]) -> str:
            placed = place_order(owner_id=self.owner_id, **body)
            if placed.status_code != ACCEPTED:
                raise RuntimeError(f"order refused: {placed.status_code} {placed.body}")
            return str(placed.body["saga_id"])

        try:
            yield place
        finally:
            connections.close_all()  # this thread's connection


class Progress:
    """Submitted, finished and rate: rewritten in place on a terminal, a line a second elsewhere."""

    def __init__(self, stream: TextIO, label: str, total: int) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.tty = stream.isatty()
        self.started = self.shown = time.monotonic()

    def show(self, submitted: int, finished: int, *, last: bool = False) -> None:
        now = time.monotonic()
        if not last and now - self.shown < (0.2 if self.tty else 1.0):
            return
        self.shown = now
        rate = finished / (now - self.started) if now > self.started else 0.0
        line = (
            f"{self.label}: submitted {submitted}/{self.total}, finished {finished}, "
            f"{rate:.1f} sagas/s"
        )
        if self.tty:
            self.stream.write(f"\r\033[K{line}" + ("\n" if last else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class _Loop:
    """State shared by the clients and the poller."""

    def __init__(self, total: int) -> None:
        self.lock = threading.Lock()
        self.total = total
        self.taken = 0
        self.submitted = 0
        self.waiting: dict[uuid.UUID, tuple[float, threading.Event]] = {}
        self.outcomes: list[Outcome] = []
        self.failed = threading.Event()
        self.errors: list[BaseException] = []

    def take(self) -> int | None:
        with self.lock:
            if self.taken == self.total or self.failed.is_set():
                return None
            self.taken += 1
            return self.taken - 1

    def fail(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)
        self.failed.set()


def drive(
    checkout: Checkout,
    bodies: list[dict[str, Any]],
    concurrency: int,
    progress: Progress,
    *,
    stall_seconds: float = STALL_SECONDS,
) -> list[Outcome]:
    """Place `bodies` with `concurrency` clients; returns each order's outcome once every saga
    has ended (completed, failed or stuck). Raises the first client error, or RuntimeError when
    the sagas stop ending."""
    loop = _Loop(len(bodies))

    def client() -> None:
        try:
            with checkout.client() as place:
                while (n := loop.take()) is not None:
                    submitted = time.time()
                    saga_id = uuid.UUID(place(bodies[n]))
                    ended = threading.Event()
                    with loop.lock:
                        loop.waiting[saga_id] = (submitted, ended)
                        loop.submitted += 1
                    while not ended.wait(0.5):
                        if loop.failed.is_set():
                            return
        except BaseException as error:
            loop.fail(error)

    clients = [
        threading.Thread(target=client, name=f"bench-client-{n}", daemon=True)
        for n in range(min(concurrency, len(bodies)))
    ]
    for thread in clients:
        thread.start()
    last_end = time.monotonic()
    while len(loop.outcomes) < len(bodies) and not loop.failed.is_set():
        with loop.lock:
            in_flight = list(loop.waiting)
        ended = _ended(in_flight) if in_flight else []
        with loop.lock:
            for saga_id, status, finished in ended:
                submitted, event = loop.waiting.pop(saga_id)
                loop.outcomes.append(Outcome(saga_id, submitted, status, finished))
                event.set()
        now = time.monotonic()
        if ended:
            last_end = now
        elif in_flight and now - last_end > stall_seconds:
            loop.fail(RuntimeError(f"no saga ended for {stall_seconds:.0f} s"))
        progress.show(loop.submitted, len(loop.outcomes))
        time.sleep(POLL_SECONDS)
    for thread in clients:
        thread.join(timeout=70)
    progress.show(loop.submitted, len(loop.outcomes), last=True)
    if loop.errors:
        raise loop.errors[0]
    return loop.outcomes


def _ended(saga_ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, str, float | None]]:
    """The sagas among `saga_ids` that are terminal (with their finish time) or stuck."""
    rows = (
        Saga.objects.filter(id__in=saga_ids)
        .filter(Q(finished_at__isnull=False) | Q(status=SagaStatus.STUCK))
        .values_list("id", "status", "finished_at")
    )
    return [
        (saga_id, status, None if finished is None else finished.timestamp())
        for saga_id, status, finished in rows
    ]
