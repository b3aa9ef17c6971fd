"""Guards at the transport, before the Socket.IO libraries see a message.

- :class:`SafePacket`: a message whose JSON cannot be read (malformed, or nested past the recursion limit)
  becomes an event answered with ``invalid_payload`` instead of an exception inside the library.
- :class:`PollingGuard`: long-polling POSTs over the size limit are refused with 413, and bodies that are
  not UTF-8 with 400, before Engine.IO reads them (it would otherwise log a traceback, or wait forever on
  a session it closed). It also takes the browser's offer of websocket compression away, unless
  compression is turned on (see :data:`COMPRESSION_HEADER`).
- :func:`share_pings`: one task sends every connection's pings, instead of one sleeping task per
  connection.
- :func:`write_on_demand`: a websocket connection has a writer task only while it has something to
  send that its socket will not take at once, instead of one waiting on its queue for as long as the phone
  is connected; a message the socket has room for is written by the task that sends it.
"""
from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections import deque
from importlib import metadata
from typing import Any, Callable, Iterable

from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket
from socketio import packet as sio_packet

log = logging.getLogger(__name__)

UNREADABLE = "unreadable_message"


class SafePacket(sio_packet.Packet):
    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """python-socketio's answer (bytes or a bytearray anywhere in nested lists and dicts), found
        without its list of every item's answer at every level and ``reduce`` over it, which it builds for
        every message sent: a seat with the café's state is about 60 values. Stops at the first binary."""
        if isinstance(data, (bytes, bytearray)):
            return True
        if not isinstance(data, (list, dict)):
            return False
        stack = [data]
        while stack:
            item = stack.pop()
            for value in item.values() if isinstance(item, dict) else item:
                if isinstance(value, (bytes, bytearray)):
                    return True
                if isinstance(value, (list, dict)):
                    stack.append(value)
        return False

    def decode(self, encoded_packet: Any) -> int:
        try:
            return super().decode(encoded_packet)
        except (ValueError, RecursionError, TypeError):
            self.data = [UNREADABLE] if self.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT) else None
            self.attachment_count = 0
            return 0


# Every browser offers permessage-deflate when it opens a websocket, and the websocket servers the app runs
# on (eventlet's own; under gevent simple-websocket, and now cafe.web.inline_websocket, both through wsproto)
# accept it and then keep a zlib compressor and
# decompressor per connection for as long as it lasts: about 256 KB of compressor state each, most of it
# touched by the first messages. Measured with 2,000 phones that offer it as browsers do: 149 KB per phone
# under eventlet and 194 KB under gevent, against 41 and 61 KB without, and round changes slower (the
# server compresses 2,000 seats). The messages are small (a note, a seat with the round's state: 1-2 KB),
# so the app does without: the offer is removed before the websocket server sees it, and the browser then
# talks uncompressed, as the protocol provides. ``WEBSOCKET_COMPRESSION=1`` leaves the offer in place.
COMPRESSION_HEADER = "HTTP_SEC_WEBSOCKET_EXTENSIONS"


SOCKETIO_PATH = "/socket.io"  # Flask-SocketIO's default path, which the app keeps


class PollingGuard:
    """WSGI middleware for ``/socket.io``: long-polling POSTs, and websocket compression offers."""

    def __init__(self, app: Callable[..., Any], max_bytes: int, path: str = SOCKETIO_PATH,
                 compression: bool = False) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path = path
        self.compression = compression

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return self.app(environ, start_response)
        if not self.compression:
            environ.pop(COMPRESSION_HEADER, None)
        if environ.get("REQUEST_METHOD") == "POST":
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


# --------------------------------------------------------------------------- writers on demand
#
# python-engineio (4.x) gives every websocket connection a writer task that waits on the connection's queue
# for as long as it is connected: about 7.7 KB under eventlet and under gevent alike (measured, 4,000
# tasks each waiting on a queue), 15 MB for 2,000 phones that mostly wait. Here the task exists only while
# the queue has packets: ``send`` queues the packet as before and starts a writer if none is running; the
# writer sends what is queued and ends when the queue is empty. ``_WriterState.lock`` makes "queue empty,
# so end" and "a writer is running, so do not start one" exclusive, so a packet is never left behind and
# two writers never write to one websocket at once. Everything else is python-engineio's own code path.
# Side by side, 2,000 phones on eventlet: 50.0 -> 41.5 KB per phone, note latency and round changes
# unchanged; under gevent (with cafe.web.inline_websocket) 52.5 -> 42.9 KB, round changes unchanged now that
# a round change sends one message per phone (with two, they took about a quarter longer).
#
# Written at once: starting a task per message, and switching to it, cost more than writing the message.
# A websocket that can write without waiting (``send_nowait``: eventlet's own with
# cafe.web.eventlet_websocket, and cafe.web.inline_websocket under gevent) is written by the task that
# queues the packet, for as long as its socket takes each frame whole; only what it will not take (a slow
# phone whose buffer is full) goes to a writer task. Side by side, 2,000 phones and 400 notes a second,
# note-to-dashboard p95 / p99: eventlet 186-278 / 242-331 ms -> 43-44 / 68-73 ms, gevent 43-80 / 61-104
# -> 27-34 / 38-52 ms.

_ORIGINAL = {name: getattr(eio_socket.Socket, name) for name in ("send", "close", "_websocket_handler")}
WRITE_ON_DEMAND_VERSIONS = ("4.",)   # the python-engineio series whose websocket handler this follows


# What a websocket's ``send_nowait(message)`` did (see :func:`_write_inline`): wrote the whole frame; wrote its
# beginning and keeps the end, which ``flush()`` (or its next send) writes before anything else; wrote nothing.
SENT, PARTLY_SENT, NOT_SENT = "sent", "partly sent", "not sent"
# send()'s flag for "do not wait for room" on any socket, blocking or not (Linux, the BSDs, macOS); where
# there is none, websockets do not write inline and every message goes through a writer task as before.
DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def write_nowait(raw: Any, frame: bytes) -> bytes:
    """Write ``frame`` to the plain socket ``raw`` without waiting for room; return what it did not take (the
    frame is already packed, and a compressor, if any, has moved on: that end must still go out, first)."""
    try:
        sent = raw.send(frame, DONTWAIT)
    except (BlockingIOError, InterruptedError):
        sent = 0
    return frame[sent:] if sent < len(frame) else b""


class _WriterState:
    __slots__ = ("lock", "ws", "task", "running", "done")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ws: Any = None        # the websocket, while packets may be written to it
        self.task: Any = None      # the writer running now (or last), to wait for at the end
        self.running = False
        self.done = False          # the websocket is closed: nothing queued can be written any more


def _state(sock: Any) -> _WriterState:
    state = sock.__dict__.get("cafe_writer")
    if state is None:
        state = sock.__dict__.setdefault("cafe_writer", _WriterState())
    return state


def _kick(sock: Any) -> None:
    """Write what ``sock`` has queued, if it writes over a websocket and no writer is running: at once, from
    the calling task, as long as the socket takes each frame whole without waiting; the rest (a frame the
    socket would not take, or took only part of) goes to a writer task started for it."""
    state = _state(sock)
    with state.lock:
        if state.running or state.ws is None or sock.queue.empty():
            return
        state.running = True
    first, flush = _write_inline(sock, state)
    if first is _DONE:
        return
    state.task = sock.server.start_background_task(_write, sock, state, first, flush)


_DONE = object()      # _write_inline wrote everything: no writer task needed
_NOTHING = object()   # the writer task starts from the queue


def _next_packet(sock: Any, state: _WriterState, queue_empty: type[BaseException]) -> Any:
    """The next queued packet (marked done), or ``_DONE`` with ``state.running`` cleared once the queue is
    empty: checked under the lock that ``_kick`` takes, so a packet queued meanwhile is never left behind."""
    while True:
        try:
            pkt = sock.queue.get(block=False)
        except queue_empty:
            with state.lock:
                if sock.queue.empty():
                    state.running = False
                    return _DONE
            continue
        sock.queue.task_done()
        return pkt


def _write_inline(sock: Any, state: _WriterState) -> tuple[Any, bool]:
    """Send queued packets without waiting, while the websocket takes each frame whole at once. Returns
    ``(_DONE, False)`` when the queue is empty and no writer is needed (``state.running`` cleared), else what
    the writer task starts with: the packet taken from the queue but not written (or ``_NOTHING``), and whether
    the websocket holds the unwritten end of a frame to write first."""
    send_nowait = getattr(state.ws, "send_nowait", None)
    if send_nowait is None:
        return _NOTHING, False
    queue_empty = sock.server.get_queue_empty_exception()
    while True:
        pkt = _next_packet(sock, state, queue_empty)
        if pkt is _DONE:
            return _DONE, False
        if pkt is None:
            return pkt, False
        try:
            outcome = send_nowait(pkt.encode())
        except Exception:
            return pkt, False          # the writer's own send fails the same way and closes the websocket
        if outcome is SENT:
            continue
        if outcome is PARTLY_SENT:
            return _NOTHING, True
        return pkt, False              # NOT_SENT: the socket is full, or the websocket busy


def _write(sock: Any, state: _WriterState, first: Any = _NOTHING, flush: bool = False) -> None:
    """Send every queued packet, then end (as python-engineio's writer: a ``None`` or a failed send closes
    the websocket). ``first``: a packet already taken from the queue, to send before the rest; ``flush``:
    the websocket holds the end of a frame, to send before anything else."""
    queue_empty = sock.server.get_queue_empty_exception()
    ws = state.ws
    if flush:
        try:
            ws.flush()
        except Exception:
            first = None                   # as a failed send: close the websocket
    while True:
        if first is not _NOTHING:
            pkt, first = first, _NOTHING
        else:
            pkt = _next_packet(sock, state, queue_empty)
            if pkt is _DONE:
                return
        failed = pkt is None
        if not failed:
            try:
                ws.send(pkt.encode())
            except Exception:
                failed = True
        if failed:
            with state.lock:
                state.ws = None
                state.done = True
            try:
                ws.close()
            finally:
                _discard(sock, queue_empty)
                with state.lock:
                    state.running = False
            return


def _discard(sock: Any, queue_empty: type[BaseException]) -> None:
    """Mark what can no longer be written as done, so that ``close(wait=True)`` does not wait for it."""
    while True:
        try:
            sock.queue.get(block=False)
        except queue_empty:
            return
        sock.queue.task_done()


def _send(self: Any, pkt: Any) -> None:
    _ORIGINAL["send"](self, pkt)
    _kick(self)


def _close(self: Any, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
    # As python-engineio's Socket.close, with the writer started before waiting for the queue to empty.
    if not self.closed and not self.closing:
        self.closing = True
        self.server._trigger_event("disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT,
                                   run_async=False)
        if not abort:
            self.send(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.queue.put(None)
        _kick(self)
        if wait:
            state = _state(self)
            with state.lock:
                done = state.done and not state.running
            if done:   # the websocket is gone: python-engineio would wait here for ever
                _discard(self, self.server.get_queue_empty_exception())
            self.queue.join()


def _websocket_handler(self: Any, ws: Any) -> list[Any]:
    """python-engineio's ``Socket._websocket_handler`` (4.15), with writers on demand."""
    def websocket_wait() -> Any:
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    for attr in ("_sock", "socket"):
        if hasattr(ws, attr) and hasattr(getattr(ws, attr), "settimeout"):
            getattr(ws, attr).settimeout(self.server.ping_interval + self.server.ping_timeout)

    if self.connected:
        # the socket was already connected, so this is an upgrade
        self.upgrading = True  # hold packet sends during the upgrade
        pkt = websocket_wait()
        decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != eio_packet.PING or decoded_pkt.data != "probe":
            self.upgrading = False
            return []
        ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
        pkt = websocket_wait()
        decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
        if decoded_pkt.packet_type != eio_packet.UPGRADE:
            self.upgraded = False
            self.upgrading = False
            return []
        self.upgraded = True
        self.upgrading = False
    else:
        self.connected = True
        self.upgraded = True

    state = _state(self)
    with state.lock:
        state.ws = ws
    _kick(self)   # what was queued before the websocket was ready

    while True:
        try:
            p = websocket_wait()
        except Exception:
            break
        if p is None:   # connection closed by the client
            break
        try:
            self.receive(eio_packet.Packet(encoded_packet=p))
        except eio_exceptions.UnknownPacketError:
            pass
        except eio_exceptions.SocketIsClosedError:
            break
        except Exception:
            log.exception("Unknown receive error")
            break

    self.queue.put(None)  # the writer closes the websocket once what is queued is sent
    _kick(self)
    with state.lock:
        running = state.running
    if running and state.task is not None:
        state.task.join()
    self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
    return []


def write_on_demand() -> bool:
    """Make python-engineio's (synchronous) websocket connections use writers on demand. Idempotent.
    Returns False, changing nothing, on a python-engineio series this does not follow."""
    try:
        version = metadata.version("python-engineio")
    except metadata.PackageNotFoundError:
        return False
    if not version.startswith(WRITE_ON_DEMAND_VERSIONS):
        return False
    eio_socket.Socket.send = _send                              # type: ignore[method-assign]
    eio_socket.Socket.close = _close                            # type: ignore[method-assign]
    eio_socket.Socket._websocket_handler = _websocket_handler   # type: ignore[method-assign]
    return True
