"""Websocket compression: browsers offer it on every websocket; the app declines unless told otherwise.

Accepted, it costs a zlib compressor and decompressor per connection for as long as the phone stays
(measured with 2,000 phones offering it: 149 KB per phone under eventlet, 194 KB under gevent, against 41
and 61 KB declined). These tests open a websocket as Chromium does, through the real start command on
both servers, and read the handshake's answer and the first message.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from tests.fault_phones import KillableServer

BROWSER_OFFER = "permessage-deflate; client_max_window_bits"   # what Chromium sends


def _raw_handshake(port: int) -> tuple[str, bytes]:
    """The 101 answer's head to a browser-like upgrade (with its compression offer), and what follows."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {BROWSER_OFFER}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed during the handshake: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head.decode("latin-1"), rest


def _first_message(port: int) -> tuple[list[str], str]:
    """Open a websocket offering compression (as a browser does) and read Engine.IO's open packet."""
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target="/socket.io/?EIO=4&transport=websocket",
                                     extensions=[PerMessageDeflate()])))
        accepted: list[str] | None = None
        while True:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the open packet"
            ws.receive_data(chunk)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = [ext.name for ext in event.extensions]
                elif isinstance(event, RejectConnection):
                    pytest.fail(f"websocket refused: {event.status_code}")
                elif isinstance(event, TextMessage):
                    assert accepted is not None
                    return accepted, event.data


@pytest.mark.parametrize("server", ["eventlet", "gevent"])
def test_the_browsers_compression_offer_is_declined_and_the_socket_works_uncompressed(
        tmp_path: Path, sqlite_url: str, server: str) -> None:
    live = KillableServer(tmp_path, sqlite_url, {"CAFE_SERVER": server})
    live.start()
    try:
        head, _ = _raw_handshake(live.port)
        assert head.startswith("HTTP/1.1 101"), head
        assert "sec-websocket-extensions" not in head.lower(), head
        extensions, first = _first_message(live.port)
        assert extensions == [] and first.startswith("0{") and '"sid"' in first
    finally:
        live.stop()
    assert "Traceback" not in live.tail()


@pytest.mark.parametrize("server", ["eventlet", "gevent"])
def test_websocket_compression_1_accepts_the_offer(tmp_path: Path, sqlite_url: str, server: str) -> None:
    live = KillableServer(tmp_path, sqlite_url, {"CAFE_SERVER": server, "WEBSOCKET_COMPRESSION": "1"})
    live.start()
    try:
        head, _ = _raw_handshake(live.port)
        assert head.startswith("HTTP/1.1 101"), head
        assert "permessage-deflate" in head.lower(), head
        extensions, first = _first_message(live.port)
        assert extensions == ["permessage-deflate"] and first.startswith("0{")
    finally:
        live.stop()
