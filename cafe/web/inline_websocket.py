"""A websocket for gevent that reads in the connection's own task: no reader task, no second socket.

Under gevent, python-engineio serves websockets with simple-websocket (gevent-websocket, which it would
prefer, has had no release since 2017). simple-websocket gives every connection a reader task of its own,
which reads the socket and hands each message to Engine.IO's handler task through a list and an event,
and, under gevent's WSGI server, a duplicate of the connection's socket (``dup()``: a second file
descriptor per phone). Yet the handler task does nothing but wait for those messages. Here the handler
task reads the socket itself, as eventlet's own websocket does: one task and one descriptor fewer per
connection. Everything on the wire is wsproto's (which simple-websocket uses too).

Also unlike simple-websocket: a message that grows past ``max_message_size`` (Engine.IO's
``max_http_buffer_size``) closes the connection with 1009 as its frames arrive, instead of being
gathered whole first and refused afterwards; and the socket gets a timeout (``socket``, which Engine.IO
sets to its ping interval plus timeout), so a phone that vanished without a word is noticed.

Frames go out whole: a lock keeps a pong or a close (sent by the reading task) from landing in the
middle of a message the writing task is sending. The lock is ``threading.Lock``, which gevent's monkey
patching (``wsgi.py``, gunicorn's gevent worker) makes a cooperative one.

``send_nowait`` writes a message only if the socket takes it now (see ``cafe.web.transport``: the task that
queues a message writes it, and a writer task is started only for what a full socket would not take). A
frame the socket took only in part keeps its end here, and every later write sends that end first.
"""
from __future__ import annotations

import logging
import socket as socket_mod
import threading
from collections import deque
from typing import Any, Callable, Iterable

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Event, Message, Ping, Request,
                            TextMessage)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .transport import DONTWAIT, NOT_SENT, PARTLY_SENT, SENT, write_nowait

log = logging.getLogger(__name__)

RECEIVE_BYTES = 4096


def _socket_of(environ: dict[str, Any]) -> tuple[Any, str]:
    """The connection's socket, and which server it came from."""
    if "gunicorn.socket" in environ:
        return environ["gunicorn.socket"], "gunicorn"
    wsgi_input = environ.get("wsgi.input")
    rfile = getattr(wsgi_input, "rfile", wsgi_input)
    raw = getattr(rfile, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is None:
        raise RuntimeError("cannot find the connection's socket in the WSGI environment")
    return sock, "gevent"


def _handshake_request(environ: dict[str, Any]) -> bytes:
    """The upgrade request again, as bytes for wsproto (the server has already parsed it)."""
    lines = [f"GET {environ.get('PATH_INFO') or '/'} HTTP/1.1"]
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            lines.append(f"{'-'.join(p.capitalize() for p in key[5:].split('_'))}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class InlineWebSocket:
    """python-engineio's websocket interface (``__call__``, ``wait``, ``send``, ``close``), built with
    ``(handler, server)`` as its drivers' classes are."""

    def __init__(self, handler: Callable[[Any], Any], server: Any) -> None:
        self.app = handler
        self.max_message_size = int(getattr(server, "max_http_buffer_size", 0) or 0) or None
        self.socket: Any = None          # Engine.IO sets its timeout through this name
        self.mode = ""
        self.environ: dict[str, Any] = {}
        self.connected = False
        self._ws = WSConnection(ConnectionType.SERVER)
        self._messages: deque[Any] = deque()
        self._parts: list[Any] = []
        self._size = 0
        self._lock = threading.Lock()
        self._tail = b""                 # the end of a frame send_nowait could write only in part

    # -- the WSGI side ---------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.environ = environ
        self.socket, self.mode = _socket_of(environ)
        try:
            self._ws.receive_data(_handshake_request(environ))
            request = next((e for e in self._ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError:
            request = None
        if request is None:
            body = b"not a websocket handshake\n"
            start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        # Only negotiated when the client offered it (and cafe.web.transport left the offer in place).
        self._sendall(self._ws.send(AcceptConnection(extensions=[PerMessageDeflate()])))
        self.connected = True
        try:
            result = self.app(self)
        finally:
            self._end()
        if self.mode == "gunicorn":
            raise StopIteration()        # as simple-websocket: gunicorn must not write a response after it
        return result

    def _end(self) -> None:
        """The websocket is over: the server must not read another HTTP request from this connection (what
        follows is the rest of websocket frames). gevent's server stops once its request file is closed."""
        self.connected = False
        try:
            self.socket.shutdown(socket_mod.SHUT_RDWR)
        except OSError:
            pass
        if self.mode == "gevent":
            wsgi_input = self.environ.get("wsgi.input")     # for an upgrade, gevent gives its file itself
            rfile = getattr(wsgi_input, "rfile", wsgi_input)
            if rfile is not None:
                try:
                    rfile.close()
                except OSError:
                    pass

    # -- Engine.IO's side ------------------------------------------------------------------------------
    def wait(self) -> Any:
        """The next message (str or bytes), read by the calling task; None once the connection is over."""
        while not self._messages:
            if not self.connected:
                return None
            try:
                data = self.socket.recv(RECEIVE_BYTES)
            except OSError:              # reset, timed out, or closed under us
                self.connected = False
                return None
            if not data:
                self.connected = False
                return None
            try:
                self._ws.receive_data(data)
                self._handle(self._ws.events())
            except (RemoteProtocolError, LocalProtocolError):
                self._close_quietly(CloseReason.PROTOCOL_ERROR, "protocol error")
        return self._messages.popleft()

    def send(self, message: Any) -> None:
        if not self.connected:
            raise OSError("the websocket is closed")
        self._sendall(self._frame(message))

    def _frame(self, message: Any) -> bytes:
        try:
            return self._ws.send(Message(data=message) if isinstance(message, (bytes, bytearray))
                                 else TextMessage(data=str(message)))
        except LocalProtocolError as exc:   # the close handshake has begun
            raise OSError("the websocket is closing") from exc

    def send_nowait(self, message: Any) -> str:
        """Write one message's frame if the socket takes it now, never waiting (see
        ``cafe.web.transport._write_inline``): SENT, PARTLY_SENT (the end is kept, and written first by
        ``flush`` or the next send) or NOT_SENT."""
        # gevent's socket would wait for room; the socket under it (or a plain one) is told not to
        raw = getattr(self.socket, "_sock", self.socket)
        if not DONTWAIT or raw is None or not self.connected or not self._lock.acquire(blocking=False):
            return NOT_SENT
        try:
            if self._tail:
                return NOT_SENT
            self._tail = write_nowait(raw, self._frame(message))
            return PARTLY_SENT if self._tail else SENT
        finally:
            self._lock.release()

    def flush(self) -> None:
        """Write the end of a frame the socket took only part of (waiting as a send does)."""
        with self._lock:
            self._write_tail()

    def close(self, reason: int = CloseReason.NORMAL_CLOSURE, message: str | None = None) -> None:
        """Close from the server's side (Engine.IO's writer does, at the end). The reading task is woken
        at once rather than when the phone answers, or when the socket times out if it never does."""
        if self.connected:
            self._close_quietly(reason, message)
            try:
                self.socket.shutdown(socket_mod.SHUT_RD)
            except OSError:
                pass

    # -- inside ----------------------------------------------------------------------------------------
    def _sendall(self, data: bytes) -> None:
        if data:
            with self._lock:
                self._write_tail()
                self.socket.sendall(data)

    def _write_tail(self) -> None:
        tail, self._tail = self._tail, b""
        if tail:
            self.socket.sendall(tail)

    def _close_quietly(self, reason: int, message: str | None) -> None:
        self.connected = False
        try:
            self._sendall(self._ws.send(CloseConnection(code=reason, reason=message)))
        except (OSError, LocalProtocolError):
            pass

    def _handle(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, (TextMessage, BytesMessage)):
                self._size += len(event.data)
                if self.max_message_size and self._size > self.max_message_size:
                    self._parts.clear()
                    self._close_quietly(CloseReason.MESSAGE_TOO_BIG, "message too big")
                    return
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, [], 0
                    if len(parts) == 1:
                        self._messages.append(parts[0])
                    elif isinstance(event, TextMessage):
                        self._messages.append("".join(parts))
                    else:
                        self._messages.append(b"".join(parts))
            elif isinstance(event, Ping):
                self._sendall(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                try:
                    self._sendall(self._ws.send(event.response()))
                except (OSError, LocalProtocolError):
                    pass
                self.connected = False
                return


def install(eio_server: Any) -> None:
    """Serve this Engine.IO server's websockets with :class:`InlineWebSocket` (for gevent)."""
    eio_server._async = dict(eio_server._async, websocket=InlineWebSocket)
