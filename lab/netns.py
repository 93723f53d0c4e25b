"""Hosts on one machine: Linux network namespaces joined to this one by veth pairs, with
loopback-range addresses only, so that the lab can run workers "on another host" and cut that
host off the network (`ip link set ... down`).

Each host gets a /30 of 127.x.y.0: the machine's end of its veth pair holds .1 (where the host
reaches PostgreSQL, through lab.forwarder), the host's end holds .2. Linux drops 127/8 packets on
any interface but loopback as martians unless `route_localnet` is on for that interface, in both
namespaces; with it on (checked on kernel 6.1, rp_filter 0 or 2), the /30 route beats the
`local 127.0.0.0/8` one and the packets cross the pair. Every process of a host runs under
`launcher()`: in the host's namespace and with the host's name as its hostname (a UTS namespace
of its own), so heartbeats name the host they come from.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "sagahost"  # every namespace this module makes is named sagahost-<tag>-<letter>
INNER_VETH = "eth0"  # the host's end of the pair, inside its namespace
IFF_UP = 0x1  # in /sys/class/net/<interface>/flags


class NetnsError(RuntimeError):
    """A namespace or link could not be made or changed; the message has `ip`'s own words."""


@dataclass(frozen=True)
class Host:
    name: str  # its hostname too: "host-a"
    namespace: str  # "sagahost-1a2b3-a"
    veth: str  # the machine's end of the pair, in this namespace: "sh1a2b3a"
    outside: str  # the machine's address on the pair: where the host reaches the database
    inside: str  # the host's own address

    def launcher(self) -> tuple[str, ...]:
        """An argv prefix that runs a command on this host."""
        return (
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.name,
        )


def unavailable() -> str:
    """Why namespaced hosts cannot be made here ("" if they can): not root, no `ip` or
    `unshare`, or the kernel refuses a namespace (a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root"
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install iproute2 and util-linux"
    probe = f"{PREFIX}-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except NetnsError as exc:
        return f"`ip netns add` fails here: {exc}"
    try:
        _ip("netns", "exec", probe, "unshare", "--uts", "--", "true")
    except NetnsError as exc:
        return f"a command cannot run in a namespace here: {exc}"
    finally:
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", probe)
    return ""


def new_tag() -> str:
    return secrets.token_hex(3)[:5]


def create(tag: str, count: int) -> list[Host]:
    """Make `count` hosts (host-a, host-b, ...) under `tag`; `remove(tag)` undoes it all, also
    when this fails half-way."""
    octet = 100 + int(tag, 16) % 100  # 127.<octet>.<n>.0/30: a run's own range
    hosts = []
    for n in range(count):
        letter = chr(ord("a") + n)
        host = Host(
            name=f"host-{letter}",
            namespace=f"{PREFIX}-{tag}-{letter}",
            veth=f"sh{tag}{letter}",
            outside=f"127.{octet}.{n + 1}.1",
            inside=f"127.{octet}.{n + 1}.2",
        )
        _ip("netns", "add", host.namespace)
        hosts.append(host)
        _ip(
            "link",
            "add",
            host.veth,
            "type",
            "veth",
            "peer",
            "name",
            INNER_VETH,
            "netns",
            host.namespace,
        )
        _ip("addr", "add", f"{host.outside}/30", "dev", host.veth)
        _route_localnet(host.veth)
        _ip("link", "set", host.veth, "up")
        inside = ("-n", host.namespace)
        _ip(*inside, "addr", "add", f"{host.inside}/30", "dev", INNER_VETH)
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "link", "set", INNER_VETH, "up")
        _ip(
            "netns",
            "exec",
            host.namespace,
            "sh",
            "-c",
            f"echo 1 > /proc/sys/net/ipv4/conf/{INNER_VETH}/route_localnet",
        )
    return hosts


class Plug:
    """The host's link, ready to be pulled at once: an `ip -batch` process started beforehand
    takes the command, which saves the fork and exec of a new `ip` at the moment of the cut
    (milliseconds, when the cut is timed to catch a worker mid-transaction)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.ip = subprocess.Popen(
            ["ip", "-batch", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def pull(self, timeout: float = 5.0) -> None:
        """Take the link down: no packet crosses in either direction from now on."""
        self._send(f"link set {self.host.veth} down")
        flags = Path(f"/sys/class/net/{self.host.veth}/flags")
        deadline = time.monotonic() + timeout
        while int(flags.read_text(), 16) & IFF_UP:
            if time.monotonic() > deadline or self.ip.poll() is not None:
                self.close()
                assert self.ip.stderr is not None
                said = self.ip.stderr.read().strip()
                raise NetnsError(f"{self.host.veth} is still up: {said or 'no word from ip'}")
            time.sleep(0.0005)

    def _send(self, command: str) -> None:
        assert self.ip.stdin is not None
        self.ip.stdin.write(command + "\n")
        self.ip.stdin.flush()

    def close(self) -> None:
        if self.ip.poll() is None:
            assert self.ip.stdin is not None
            self.ip.stdin.close()
            try:
                self.ip.wait(5)
            except subprocess.TimeoutExpired:
                self.ip.kill()


def reaches(host: Host, port: int, timeout: float = 1.0) -> bool:
    """Can a process on `host` open a TCP connection to the machine's end, on `port`?"""
    probe = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host.outside!r}, {port}), timeout={timeout}).close()\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", host.namespace, sys.executable, "-c", probe],
        capture_output=True,
        timeout=timeout + 10,
        check=False,
    )
    return done.returncode == 0


def pids(namespace: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in done.stdout.split()]


def namespaces(tag: str = "") -> Iterator[str]:
    """This module's namespaces: those of `tag`, or all of them."""
    root = Path("/run/netns")
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name.startswith(f"{PREFIX}-{tag}" if tag else f"{PREFIX}-"):
                yield path.name


def remove(tag: str) -> list[str]:
    """SIGKILL whatever still runs in the namespaces of `tag`, then delete them (which deletes
    their veth pairs too). Returns what was removed; safe to call twice."""
    removed = []
    for namespace in namespaces(tag):
        for pid in pids(namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tag_, letter = namespace.removeprefix(f"{PREFIX}-").rsplit("-", 1)
        with contextlib.suppress(NetnsError):  # gone with the namespace too, but later
            _ip("link", "del", f"sh{tag_}{letter}")
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", namespace)
            removed.append(namespace)
    return removed


def _route_localnet(interface: str) -> None:
    Path(f"/proc/sys/net/ipv4/conf/{interface}/route_localnet").write_text("1\n")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
