"""Writes without waiting for eventlet's websocket (installed by the server entry point, ``wsgi.py``).

:func:`cafe.web.transport._write_inline` sends a connection's queued packets from the task that queued
them, as long as the socket takes each frame whole at once, instead of starting a writer task per
connection for every message. For that a websocket needs ``send_nowait(message)`` and ``flush()``; this
module gives them to eventlet's ``RFC6455WebSocket``. A frame the socket took only part of keeps its
end on the websocket, and every later send (a pong from the reading task, the writer task's next frame)
writes that end first, under the websocket's own send lock, so frames never interleave.
"""
from __future__ import annotations

from typing import Any

from .transport import DONTWAIT, NOT_SENT, PARTLY_SENT, SENT, write_nowait

TAIL = "cafe_tail"


def send_nowait(self: Any, message: Any) -> str:
    """Write one message's frame if the socket takes it now; never waits (see the module)."""
    raw = getattr(self.socket, "fd", None)       # under eventlet's GreenSocket, which would wait for room
    if not DONTWAIT or raw is None or not self._sendlock.acquire(blocking=False):
        return NOT_SENT
    try:
        if self.__dict__.get(TAIL):
            return NOT_SENT
        tail = write_nowait(raw, self._pack_message(message, masked=self.client))
        if not tail:
            return SENT
        self.__dict__[TAIL] = tail
        return PARTLY_SENT
    finally:
        self._sendlock.release()


def _write_tail(self: Any) -> None:
    tail = self.__dict__.pop(TAIL, None)
    if tail:
        self.socket.sendall(tail)


def flush(self: Any) -> None:
    """Write the end of a frame the socket took only part of (waiting as a send does)."""
    self._sendlock.acquire()
    try:
        _write_tail(self)
    finally:
        self._sendlock.release()


def _send(self: Any, frame: bytes) -> None:
    # eventlet's RFC6455WebSocket._send, writing the end of an unfinished frame first.
    self._sendlock.acquire()
    try:
        _write_tail(self)
        self.socket.sendall(frame)
    finally:
        self._sendlock.release()


def install(cls: Any) -> bool:
    """Give eventlet's websocket class (``eventlet.websocket.RFC6455WebSocket``, which the server entry
    point passes: only it imports eventlet) ``send_nowait`` and ``flush``. Idempotent. False, changing
    nothing, if the class does not look as this module expects."""
    if not all(hasattr(cls, name) for name in ("_send", "_pack_message")):
        return False
    cls.send_nowait = send_nowait
    cls.flush = flush
    cls._send = _send
    return True
