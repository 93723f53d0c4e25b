"""A TCP forwarder: the network path from a namespaced host (lab.netns) to PostgreSQL.

PostgreSQL listens on 127.0.0.1 of this machine's namespace only, and its configuration is not
the lab's to change; a host reaches it at its veth address, where this forwarder listens and
copies bytes both ways to the server. It runs as a process of its own per host (no Django):
`python -m lab.forwarder LISTEN_HOST:PORT TARGET_HOST:PORT`; it prints one line once it listens
and stops on SIGTERM, or when the process that started it dies.

A host cut off the network never closes its connections: no FIN or RST crosses a link that is
down. The forwarder probes each host-side connection (TCP keepalive, and a user timeout for
unacknowledged data) and, when the peer is gone, closes the server side too, so the server ends
the dead host's sessions and rolls back their transactions, as PostgreSQL's own
`tcp_keepalives_*` and `tcp_user_timeout` settings would on a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys
from typing import Any

KEEPALIVE_IDLE = 3  # seconds of silence before the first probe
KEEPALIVE_INTERVAL = 1  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is dropped
USER_TIMEOUT_MS = 6000  # unacknowledged data older than this drops the connection
PR_SET_PDEATHSIG = 1


def probe_peer(sock: Any) -> None:
    """Turn on dead-peer detection for a host-side socket."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


class Pipe(asyncio.Protocol):
    """One end of a forwarded connection; bytes received are written to the other end. Flow
    control crosses over: when the other end's buffer fills, this end stops reading."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: Pipe | None = None
        self.early: list[bytes] = []  # received before the other end was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.other is not None:  # the server side: what the host sent first goes first
            for data in self.other.early:
                transport.write(data)
            self.other.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()
        self.transport = None

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class HostSide(Pipe):
    """A connection from a host: connects to the target, then forwards both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        probe_peer(transport.get_extra_info("socket"))
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        assert self.transport is not None
        server = Pipe()
        server.other, self.other = self, server
        try:
            await asyncio.get_running_loop().create_connection(lambda: server, *self.target)
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing() and server.transport is not None:
            server.transport.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = await loop.create_server(lambda: HostSide(target), *listen, reuse_address=True)
    print(f"forwarding {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await stopping.wait()


def address(raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {raw!r}")
    return host, int(port)


def die_with_parent() -> None:
    """SIGTERM this process when the one that started it dies, however it dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        sys.exit(0)


def main(argv: list[str]) -> None:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="python -m lab.forwarder", description=__doc__)
    parser.add_argument("listen", type=address, help="HOST:PORT to listen on")
    parser.add_argument("target", type=address, help="HOST:PORT to forward to")
    options = parser.parse_args(argv)
    asyncio.run(serve(options.listen, options.target))


if __name__ == "__main__":
    main(sys.argv[1:])
