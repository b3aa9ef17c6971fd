"""Guards at the transport, before the Socket.IO libraries see a message.

- :class:`SafePacket`: a message whose JSON cannot be read (malformed, or nested past the recursion limit)
  becomes an event answered with ``invalid_payload`` instead of an exception inside the library.
- :class:`PollingGuard`: long-polling POSTs over the size limit are refused with 413, and bodies that are
  not UTF-8 with 400, before Engine.IO reads them (it would otherwise log a traceback, or wait forever on
  a session it closed).
"""
from __future__ import annotations

import io
from typing import Any, Callable, Iterable

from socketio import packet as sio_packet

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
