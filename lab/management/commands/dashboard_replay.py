"""`manage.py dashboard_replay`: write saga traffic through the engine's event path at a chosen
rate, with scripted service replies (lab/replay.py), into DATABASE_URL's database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from lab.replay import Replay


class Command(BaseCommand):
    help = "Write saga events at a chosen rate through store.apply/store.record (no services)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events-per-minute", type=float, default=20000)
        parser.add_argument("--seconds", type=float, default=60)
        parser.add_argument("--probe-every", type=float, default=0, help="seconds between probes")
        parser.add_argument(
            "--probe-file", type=Path, help="append '<order id> <commit ms>' per probe"
        )
        parser.add_argument("--seed", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        replay = Replay(options["events_per_minute"], seed=options["seed"])
        probe_file = options["probe_file"]

        def probed(order_id: str, committed_ms: float) -> None:
            if probe_file is not None:
                with probe_file.open("a") as out:
                    out.write(f"{order_id} {committed_ms:.1f}\n")

        began = time.monotonic()
        replay.run(options["seconds"], options["probe_every"], probed)
        seconds = time.monotonic() - began
        self.stdout.write(f"events={replay.written} sagas={replay.started} seconds={seconds:.1f}")
