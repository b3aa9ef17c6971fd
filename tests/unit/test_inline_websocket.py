"""cafe.web.inline_websocket over a real socket pair, with wsproto as the browser: the handshake, messages
read by the calling task (fragments joined, pings answered), the size limit, and both ways of closing."""
from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, CloseConnection, Message, Ping, Pong, Request, TextMessage)

from cafe.web.inline_websocket import InlineWebSocket


OPENED: list[Any] = []


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while OPENED:
        OPENED.pop().close()


class Server:
    max_http_buffer_size = 1000


def _environ(sock: socket.socket, request: bytes) -> dict[str, Any]:
    """As the WSGI server hands the upgrade request over: its headers as HTTP_* keys."""
    environ: dict[str, Any] = {"PATH_INFO": "/socket.io/", "wsgi.input": sock.makefile("rb")}
    OPENED.append(environ["wsgi.input"])
    for line in request.decode("latin-1").split("\r\n")[1:]:
        if ": " in line:
            name, value = line.split(": ", 1)
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _run(handler) -> tuple[WSConnection, socket.socket, threading.Thread, dict[str, Any]]:
    server_sock, client_sock = socket.socketpair()
    OPENED.extend((server_sock, client_sock))
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="127.0.0.1", target="/socket.io/"))
    out: dict[str, Any] = {}

    def serve() -> None:
        ws = InlineWebSocket(handler, Server())
        out["ws"] = ws
        out["result"] = ws(_environ(server_sock, request), lambda *a: out.setdefault("status", a[0]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return client, client_sock, thread, out


def _events(client: WSConnection, sock: socket.socket, want: type) -> list[Any]:
    got: list[Any] = []
    sock.settimeout(5)
    while not any(isinstance(e, want) for e in got):
        data = sock.recv(65536)
        if not data:
            break
        client.receive_data(data)
        got.extend(client.events())
    return got


def test_messages_are_read_by_the_handler_itself_and_a_client_close_ends_it() -> None:
    received: list[Any] = []

    def handler(ws: InlineWebSocket) -> list[bytes]:
        received.append(threading.current_thread().name)
        while (message := ws.wait()) is not None:
            received.append(message)
            ws.send("echo:" + message if isinstance(message, str) else message)
        return []

    client, sock, thread, out = _run(handler)
    assert any(isinstance(e, AcceptConnection) for e in _events(client, sock, AcceptConnection))
    sock.sendall(client.send(TextMessage(data="hel", message_finished=False)) +
                 client.send(TextMessage(data="lo", message_finished=True)) +
                 client.send(Ping(payload=b"p")) + client.send(Message(data=b"\x00\x01")))
    events = _events(client, sock, Pong)
    events += _events(client, sock, Message) if not any(getattr(e, "data", None) == b"\x00\x01" for e in events) else []
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert "echo:hello" in texts and any(isinstance(e, Pong) for e in events)
    sock.sendall(client.send(CloseConnection(code=1000)))
    thread.join(5)
    assert not thread.is_alive() and out["result"] == []
    assert received[0] == thread.name and received[1:] == ["hello", b"\x00\x01"]
    assert out["ws"].socket is not None and not out["ws"].connected


def test_a_message_over_the_limit_closes_with_1009_and_a_server_close_wakes_the_reader() -> None:
    client, sock, thread, out = _run(lambda ws: [ws.wait(), ws.wait()] and [])
    _events(client, sock, AcceptConnection)
    sock.sendall(client.send(TextMessage(data="x" * 600, message_finished=False)) +
                 client.send(TextMessage(data="x" * 600, message_finished=True)))
    closes = [e for e in _events(client, sock, CloseConnection) if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1009
    thread.join(5)
    assert not thread.is_alive()

    # the server closes while its handler waits for the phone: the handler is woken at once
    client, sock, thread, out = _run(lambda ws: [ws.wait()] and [])
    _events(client, sock, AcceptConnection)
    while "ws" not in out or not out["ws"].connected:
        thread.join(0.01)
    out["ws"].close()
    thread.join(5)
    assert not thread.is_alive()
    assert any(isinstance(e, CloseConnection) and e.code == 1000 for e in _events(client, sock, CloseConnection))


def test_a_request_that_is_not_a_websocket_handshake_gets_400() -> None:
    server_sock, client_sock = socket.socketpair()
    with server_sock, client_sock:
        environ = _environ(server_sock, WSConnection(ConnectionType.CLIENT).send(Request(host="h", target="/")))
        del environ["HTTP_SEC_WEBSOCKET_KEY"]
        answered: list[str] = []
        body = InlineWebSocket(lambda ws: [], Server())(environ, lambda status, headers: answered.append(status))
        environ["wsgi.input"].close()
    assert answered == ["400 Bad Request"] and b"websocket" in b"".join(body)


def test_send_nowait_writes_what_the_socket_takes_and_the_rest_goes_out_first_and_whole() -> None:
    """A phone that reads slowly: the socket fills up. send_nowait never waits: it writes whole frames while
    there is room, then the beginning of one (keeping its end) or nothing; the next send writes that end
    first, so the phone reads every message whole and in order."""
    from cafe.web import transport

    outcomes: list[str] = []
    sent: list[str] = []
    go_on = threading.Event()

    def handler(ws: InlineWebSocket) -> list[bytes]:
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        n = 0
        while not outcomes or outcomes[-1] == transport.SENT:
            text = f"{n}:" + "x" * 3000
            outcome = ws.send_nowait(text)
            outcomes.append(outcome)
            if outcome != transport.NOT_SENT:
                sent.append(text)
            n += 1
        assert ws.send_nowait("refused while a frame's end waits") == transport.NOT_SENT
        go_on.set()
        for m in range(n, n + 5):           # waits for room as the phone reads: the kept end goes first
            sent.append(f"{m}:" + "y" * 3000)  # before sending: the phone may read it before send returns
            ws.send(f"{m}:" + "y" * 3000)
        ws.wait()
        return []

    client, sock, thread, out = _run(handler)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    early = _events(client, sock, AcceptConnection)       # may hold the first messages too
    assert go_on.wait(5)
    assert outcomes[-1] == transport.PARTLY_SENT and outcomes[0] == transport.SENT
    expected = sum(o != transport.NOT_SENT for o in outcomes) + 5
    texts: list[str] = []
    part = ""
    sock.settimeout(5)
    while len(texts) < expected:
        if early:
            events, early = early, []
        else:
            data = sock.recv(65536)
            assert data, "the connection ended early"
            client.receive_data(data)
            events = list(client.events())
        for event in events:
            if isinstance(event, TextMessage):
                part += event.data
                if event.message_finished:
                    texts.append(part)
                    part = ""
    assert texts == sent and len(sent) == expected
    sock.sendall(client.send(CloseConnection(code=1000)))
    thread.join(5)
    assert not thread.is_alive()
