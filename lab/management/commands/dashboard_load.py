"""`manage.py dashboard_load`: the dashboard under load, measured in a real browser.

Starts the web server on a fresh database of its own, signs a headless Chromium in as staff,
times how long a change takes to reach the screen when idle, then writes saga events at
--events-per-minute for --minutes through the engine's event path (dashboard_replay) while
sampling the page: websocket frames per second, events received, rows shown, and the JS heap
(`performance.memory.usedJSHeapSize`, after a forced collection). Prints the figures. A
benchmark, not a test.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab import browser
from lab.system import MANAGE, System, local_env, scratch_database

OBSERVE_PROBES = """
window.probesSeen = {};
new MutationObserver((changes) => {
  const now = Date.now();
  for (const change of changes) for (const node of change.addedNodes) {
    const order = node.querySelector && node.querySelector('[data-field=order]');
    if (order && order.textContent.startsWith('probe-') && !(order.textContent in probesSeen))
      probesSeen[order.textContent] = now;
  }
}).observe(document.getElementById('rows'), {childList: true});
"""
SAMPLE = """
if (arguments[0] && window.gc) window.gc();
const s = window.dashboardStats;
return {frames: s.frames, events: s.events, bytes: s.bytes, position: s.position,
        snapshots: s.snapshots, reconnects: s.reconnects,
        heap: performance.memory.usedJSHeapSize, total: performance.memory.totalJSHeapSize,
        rows: document.getElementById('rows').children.length,
        nodes: document.getElementsByTagName('*').length, at: Date.now()};
"""


class Command(BaseCommand):
    help = "Measure the dashboard in a real browser under a stream of saga events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=float, default=10)
        parser.add_argument("--events-per-minute", type=float, default=20000)
        parser.add_argument("--idle-probes", type=int, default=20)
        parser.add_argument("--probe-every", type=float, default=5, help="seconds, under load")
        parser.add_argument("--sample-every", type=float, default=5, help="seconds")
        parser.add_argument(
            "--screenshot",
            type=Path,
            default=Path(settings.BASE_DIR) / "var" / "artifacts" / "dashboard-load.png",
        )
        parser.add_argument("--keep", action="store_true", help="keep the database and logs")

    def handle(self, *args: Any, **options: Any) -> None:
        why = browser.missing()
        if why:
            raise CommandError(f"no browser: {why}")
        tmp = Path(tempfile.mkdtemp(prefix="dashboard-load-"))
        url = os.environ.get("DATABASE_URL", "")
        with scratch_database(url, tmp, "saga_dash", keep=options["keep"]) as db_env:
            env = {**local_env(tmp, "dashboard-load-" + "x" * 50), **db_env}
            system = System(env=env, log_dir=tmp / "logs", saga_workers=0, queues=())
            system.migrate()
            system.manage("seed_demo")
            system.start()
            driver = browser.chromium(tmp / "chromium")
            try:
                browser.sign_in(driver, system.url, "admin", "admin")
                self.measure(system, driver, tmp, options)
            finally:
                driver.quit()
                system.stop()
        self.stdout.write(f"logs: {tmp}" if options["keep"] else "")

    def measure(self, system: System, driver: Any, tmp: Path, options: dict[str, Any]) -> None:
        out = self.stdout.write
        driver.execute_script(OBSERVE_PROBES)
        idle_file = tmp / "idle-probes.txt"
        self.replay(system, 0, options["idle_probes"] + 1, 1.0, idle_file).wait()
        time.sleep(2)
        idle = self.latencies(driver, idle_file)

        web = next(p for p in system.procs if p.name == "web")
        cpu_before = cpu_seconds(web.pid)
        start = driver.execute_script(SAMPLE, True)
        seconds = options["minutes"] * 60
        load_file = tmp / "load-probes.txt"
        replay = self.replay(
            system, options["events_per_minute"], seconds, options["probe_every"], load_file
        )
        samples = [start]
        began = time.monotonic()
        while replay.poll() is None:
            time.sleep(options["sample_every"])
            samples.append(driver.execute_script(SAMPLE, False))
            if len(samples) % 12 == 0:
                minute = (time.monotonic() - began) / 60
                out(
                    f"  {minute:4.1f} min: {samples[-1]['events'] - start['events']} events,"
                    f" heap {samples[-1]['heap'] / 1e6:.1f} MB, rows {samples[-1]['rows']}"
                )
        elapsed = time.monotonic() - began
        report = dict(
            item.split("=") for item in (replay.stdout.read() if replay.stdout else "").split()
        )
        written, replay_seconds = int(report["events"]), float(report["seconds"])
        time.sleep(3)  # the last batches
        end = driver.execute_script(SAMPLE, True)
        cpu = cpu_seconds(web.pid) - cpu_before
        loaded = self.latencies(driver, load_file)
        options["screenshot"].parent.mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(options["screenshot"]))

        rates = [
            (b["frames"] - a["frames"]) / ((b["at"] - a["at"]) / 1000)
            for a, b in itertools.pairwise(samples)
            if b["at"] > a["at"]
        ]
        received = end["events"] - start["events"]
        out(
            f"dashboard load: {replay_seconds / 60:.1f} min of events at"
            f" {written / replay_seconds * 60:,.0f} events/min"
        )
        out(f"  events written {written:,}, received by the page {received:,}")
        out(
            f"  frames/s per client: mean {(end['frames'] - start['frames']) / elapsed:.2f},"
            f" max over {options['sample_every']:.0f} s windows {max(rates, default=0):.2f}"
        )
        out(f"  bytes/s per client: {(end['bytes'] - start['bytes']) / elapsed / 1000:.1f} kB")
        out(
            f"  JS heap after gc: {start['heap'] / 1e6:.2f} MB at start,"
            f" {end['heap'] / 1e6:.2f} MB after {elapsed / 60:.1f} min"
            f" (max sampled {max(s['heap'] for s in samples) / 1e6:.2f} MB)"
        )
        out(
            f"  rows shown {end['rows']}, DOM nodes {start['nodes']} -> {end['nodes']},"
            f" snapshots {end['snapshots']}, reconnects {end['reconnects']}"
        )
        out(f"  web process CPU: {100 * cpu / elapsed:.0f}% of one core")
        out("  change -> screen latency (commit to row on screen):")
        for name, values in (("idle", idle), ("under load", loaded)):
            out(f"    {name:10}: {summary(values)}")
        out(f"  screenshot: {options['screenshot']}")

    @staticmethod
    def replay(
        system: System, rate: float, seconds: float, probe_every: float, probe_file: Path
    ) -> subprocess.Popen[str]:
        arguments = {
            "--events-per-minute": rate,
            "--seconds": seconds,
            "--probe-every": probe_every,
            "--probe-file": probe_file,
            "--seed": 1,
        }
        return subprocess.Popen(
            [sys.executable, MANAGE, "dashboard_replay"]
            + [str(part) for pair in arguments.items() for part in pair],
            env=system.process_env(system.env),
            stdout=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def latencies(driver: Any, probe_file: Path) -> list[float]:
        seen: dict[str, int] = driver.execute_script("return window.probesSeen")
        committed = dict(line.split() for line in probe_file.read_text().splitlines())
        return [seen[o] - float(ms) for o, ms in committed.items() if o in seen]


def summary(values: list[float]) -> str:
    if not values:
        return "no probe seen"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered):.0f} ms, p95 {p95:.0f} ms,"
        f" max {ordered[-1]:.0f} ms (n={len(ordered)})"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
