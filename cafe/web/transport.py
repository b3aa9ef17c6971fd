"""Guards at the transport, before the Socket.IO libraries see a message.

- :class:`SafePacket`: a message whose JSON cannot be read (malformed, or nested past the recursion limit)
  becomes an event answered with ``invalid_payload`` instead of an exception inside the library.
- :class:`PollingGuard`: long-polling POSTs over the size limit are refused with 413, and bodies that are
  not UTF-8 with 400, before Engine.IO reads them (it would otherwise log a traceback, or wait forever on
  a session it closed).
- :func:`share_pings`: one task sends every connection's pings, instead of one sleeping task per
  connection.
"""
from __future__ import annotations

import io
import logging
import time
from collections import deque
from typing import Any, Callable, Iterable

from engineio import packet as eio_packet
from engineio import socket as eio_socket
from socketio import packet as sio_packet

log = logging.getLogger(__name__)

UNREADABLE = "unreadable_message"


class SafePacket(sio_packet.Packet):
    def decode(self, encoded_packet: Any) -> int:
        try:
            return super().decode(encoded_packet)
        except (ValueError, RecursionError, TypeError):
            self.data = [UNREADABLE] if self.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT) else None
            self.attachment_count = 0
            return 0


class PollingGuard:
    """WSGI middleware for ``/socket.io`` long-polling POSTs."""

    def __init__(self, app: Callable[..., Any], max_bytes: int, path: str = "/socket.io") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path = path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(self.path):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > self.max_bytes:
                return self._refuse(start_response, "413 Request Entity Too Large", b"message too large")
            body = environ["wsgi.input"].read(length) if length else b""
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                return self._refuse(start_response, "400 Bad Request", b"message is not UTF-8")
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(start_response: Callable[..., Any], status: str, text: bytes) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
        return [text]


class SharedPinger:
    """Sends the Engine.IO pings of every connection of one server from a single task.

    python-engineio starts a task per connection and per ping cycle, which sleeps ``ping_interval`` and
    then sends one ping: under eventlet a sleeping task costs about 7 KB (measured: 7.3 KB each for
    4,000), so 2,000 phones kept 14 MB asleep only to say "ping" every 20 seconds. Here a connection due
    for its next ping (when it connects, and each time it answers one) joins a queue in the order it is
    due (the interval is the same for all), and one task sends the pings as they fall due, exactly as the
    library's task would have: ``last_ping`` set, then the ping queued. The library's service task still
    closes the connections that stop answering."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.due: deque[tuple[float, Any]] = deque()
        self.running = False

    def schedule(self, sock: Any) -> None:
        self.due.append((time.monotonic() + self.server.ping_interval, sock))
        if not self.running:
            self.running = True
            self.server.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            wait = 1.0
            try:
                self.send_due(time.monotonic())
                if self.due:
                    wait = self.due[0][0] - time.monotonic()
            except Exception:   # never let one connection stop everyone's pings
                log.exception("sending pings failed")
            self.server.sleep(min(max(wait, 0.05), 1.0))

    def send_due(self, now: float) -> None:
        while self.due and self.due[0][0] <= now:
            _due, sock = self.due.popleft()
            if sock.closing or sock.closed:
                continue
            try:
                sock.last_ping = time.time()
                sock.send(eio_packet.Packet(eio_packet.PING))
            except Exception:
                log.exception("could not ping %s", getattr(sock, "sid", "?"))


def _schedule_ping(self: Any) -> None:
    # As python-engineio's Socket.schedule_ping: only once the previous ping was answered.
    if self.last_ping:
        self.last_ping = None
        pinger = self.server.__dict__.get("cafe_pinger")
        if pinger is None:
            pinger = self.server.__dict__.setdefault("cafe_pinger", SharedPinger(self.server))
        pinger.schedule(self)


def share_pings() -> None:
    """Make python-engineio's (synchronous) sockets use :class:`SharedPinger`. Idempotent."""
    eio_socket.Socket.schedule_ping = _schedule_ping  # type: ignore[method-assign]
