"""Fault injection for tests and demos, read from the service workers' environment.

SAGA_FAULTS="<command>:<kind>:<probability>,..." with kind `error` (a transient exception),
`crash` (the process dies mid-handler, before or after its commit at random) or `delay=<ms>`.
SAGA_FAULT_SEED makes each process's draws repeatable. Unset means no faults: the engine's
transport then runs commands with no hook at all.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from functools import cache

from sagas import transport
from sagas.messages import Command, Reply


class InjectedFault(Exception):
    """A transient error injected by SAGA_FAULTS."""


@dataclass(frozen=True)
class FaultRule:
    command: str
    kind: str  # error | crash | delay
    probability: float
    delay_ms: int = 0


def parse(spec: str) -> list[FaultRule]:
    """Parse SAGA_FAULTS; raises ValueError with the offending item."""
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            command, kind, probability = item.split(":")
            chance = float(probability)
            delay_ms = 0
            if kind.startswith("delay="):
                kind, delay_ms = "delay", int(kind.removeprefix("delay="))
            if kind not in ("error", "crash", "delay") or not 0 <= chance <= 1 or delay_ms < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"bad SAGA_FAULTS item {item!r}: want <command>:<error|crash|delay=MS>:<0..1>"
            ) from None
        rules.append(FaultRule(command, kind, chance, delay_ms))
    return rules


class Faults:
    def __init__(self, rules: list[FaultRule], seed: str | None) -> None:
        self.rules = rules
        self.random = random.Random(f"{seed}:{os.getpid()}" if seed is not None else None)

    def _drawn(self, command: Command, kind: str) -> list[FaultRule]:
        return [
            r
            for r in self.rules
            if r.command == command.name and r.kind == kind and self.random.random() < r.probability
        ]

    def before(self, command: Command) -> str:
        """Run before a handler: may sleep or raise; returns "before"/"after" for a crash to come."""
        for rule in self._drawn(command, "delay"):
            time.sleep(rule.delay_ms / 1000)
        if self._drawn(command, "error"):
            raise InjectedFault(f"injected error in {command.name}")
        if self._drawn(command, "crash"):
            return self.random.choice(("before", "after"))
        return ""


def crash() -> None:
    """Die at once, as a killed worker would: no cleanup, no acknowledgement."""
    os.kill(os.getpid(), signal.SIGKILL)


@cache
def faults() -> Faults:
    return Faults(parse(os.environ.get("SAGA_FAULTS", "")), os.environ.get("SAGA_FAULT_SEED"))


def inject(command: Command, run: transport.Perform) -> Reply:
    """The transport's command hook: maybe delay, fail, or crash before or after the commit."""
    crash_at = faults().before(command)
    reply = run((lambda _: crash()) if crash_at == "before" else None)
    if crash_at == "after":
        crash()
    return reply


def install() -> None:
    """Hook the injector into the transport when SAGA_FAULTS is set (in the lab's ready())."""
    if os.environ.get("SAGA_FAULTS"):
        transport.set_command_hook(inject)
