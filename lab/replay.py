"""Saga traffic through the engine's real event path without the services: sagas are started and
advanced by the engine's own transition function (`store.apply`) and written by `store.record`,
exactly as the API and the saga workers write them, while the services' replies are played back
from a script (every command succeeds, or one named step is refused). Commands are not queued.

This produces events at a chosen rate (tens of thousands a minute), far beyond what the services
of one small machine do, to load the dashboard; `probe` sagas mark moments whose arrival on the
screen the load tool times.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from sagas import registry, store
from sagas.core.state import SagaState
from sagas.core.transition import Replied, Start
from sagas.messages import Command, Outcome
from sagas.models import Saga, SagaEvent

# (share of sagas, step refused, reason code): what the script answers.
SCENARIOS = [
    (0.85, "", ""),
    (0.08, "charge_payment", "payment_declined"),
    (0.04, "reserve_stock", "out_of_stock"),
    (0.03, "schedule_shipment", "shipping_unavailable"),
]
EVENTS_PER_SAGA = 12  # about, for the completed order saga; only used to pace the starts


@dataclass
class Flight:
    saga: Saga
    sends: list[Command]
    refuse: str
    code: str
    reply_at: float  # monotonic: when the script's services answer


@dataclass
class Replay:
    events_per_minute: float
    saga_type: str = "order"
    latency: tuple[float, float] = (0.05, 0.4)  # seconds the scripted services take to answer
    tick: float = 0.05
    seed: int | None = None
    written: int = 0
    started: int = 0
    flights: list[Flight] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        logging.getLogger("sagas").setLevel(logging.WARNING)  # one log line per event otherwise

    def run(
        self,
        seconds: float,
        probe_every: float = 0.0,
        on_probe: Callable[[str, float], None] | None = None,
    ) -> None:
        """Write for `seconds`; every `probe_every` seconds start a saga whose order id begins
        with `probe-` and call `on_probe(order_id, commit_time_ms)` once it is committed."""
        begin = time.monotonic()
        next_probe = begin + probe_every if probe_every else float("inf")
        probes = 0
        while (now := time.monotonic()) - begin < seconds:
            probe = ""
            if now >= next_probe:
                probes += 1
                probe, next_probe = f"probe-{probes}-{uuid.uuid4().hex[:8]}", now + probe_every
            budget = self.events_per_minute / 60 * (now - begin) - self.written
            self.step(now, budget, probe)
            if probe and on_probe:
                on_probe(probe, time.time() * 1000)
            time.sleep(max(0.0, self.tick - (time.monotonic() - now)))

    def step(self, now: float, budget: float, probe: str = "") -> None:
        """One transaction: the replies that are due, then new sagas within the budget."""
        due = [f for f in self.flights if f.reply_at <= now]
        self.flights = [f for f in self.flights if f.reply_at > now]
        moment = timezone.now()
        events: list[SagaEvent] = []
        advanced: list[Saga] = []
        for flight in due:
            inputs = [self._reply(flight, command) for command in flight.sends]
            commands, logged, _ = store.apply(flight.saga, inputs, moment)
            events += logged
            advanced.append(flight.saga)
            if commands:
                flight.sends, flight.reply_at = commands, now + self.random.uniform(*self.latency)
                self.flights.append(flight)
        new: list[Saga] = []
        starts = max(0, round((budget - len(events)) / EVENTS_PER_SAGA)) + (1 if probe else 0)
        for index in range(starts):
            saga, commands, logged = self._start(moment, probe if index == 0 else "")
            new.append(saga)
            events += logged
            refuse, code = self._scenario()
            self.flights.append(
                Flight(saga, commands, refuse, code, now + self.random.uniform(*self.latency))
            )
        with transaction.atomic():
            Saga.objects.bulk_create(new)
            store.record(advanced, [], events)
        self.written += len(events)
        self.started += len(new)

    def _start(
        self, moment: datetime, order_id: str
    ) -> tuple[Saga, list[Command], list[SagaEvent]]:
        definition = registry.latest(self.saga_type)
        order_id = order_id or str(uuid.uuid4())
        saga = Saga(
            id=uuid.uuid4(),
            type=self.saga_type,
            version=definition.version,
            data={"order_id": order_id, "replayed": True},
            state=SagaState.new(definition).to_json(),
            correlation_id=order_id,
            created_at=moment,
        )
        commands, events, _ = store.apply(saga, [Start()], timezone.now())
        return saga, commands, events

    def _scenario(self) -> tuple[str, str]:
        draw = self.random.random()
        for share, step, code in SCENARIOS:
            if draw < share:
                return step, code
            draw -= share
        return "", ""

    @staticmethod
    def _reply(flight: Flight, command: Command) -> Replied:
        if command.step == flight.refuse and not command.compensation:
            return Replied(command.step, False, command.attempt, Outcome.REFUSED, flight.code, "")
        return Replied(command.step, command.compensation, command.attempt, Outcome.OK)
