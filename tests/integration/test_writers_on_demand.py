"""Writers on demand (cafe.web.transport.write_on_demand): python-engineio's real socket and server, in
threading mode, with a stand-in websocket. A connection has a writer task only while it has packets to
send; every packet still goes out once, in order, by one writer at a time; the end of a connection, a
failed send and a server-side close behave as python-engineio's own writer does."""
from __future__ import annotations

import queue
import threading
import time
from typing import Any

import engineio
import pytest
from engineio import packet as eio_packet
from engineio import socket as eio_socket

from cafe.web import transport


class StandInWebSocket:
    """What python-engineio's handler uses of a websocket: wait(), send(), close()."""

    def __init__(self, send_delay: float = 0.0, fail_after: int | None = None) -> None:
        self.incoming: queue.Queue[str | None] = queue.Queue()
        self.sent: list[str] = []
        self.closed = threading.Event()
        self.writing = 0
        self.overlaps = 0
        self.send_delay = send_delay
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def wait(self) -> str | None:
        return self.incoming.get()

    def send(self, data: str) -> None:
        with self.lock:
            self.writing += 1
            self.overlaps += self.writing > 1
        try:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                raise OSError("connection reset by peer")
            time.sleep(self.send_delay)
            self.sent.append(data)
        finally:
            with self.lock:
                self.writing -= 1

    def close(self) -> None:
        self.closed.set()


@pytest.fixture()
def on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eio_socket.Socket, "send", transport._send)
    monkeypatch.setattr(eio_socket.Socket, "close", transport._close)
    monkeypatch.setattr(eio_socket.Socket, "_websocket_handler", transport._websocket_handler)


def connect(ws: StandInWebSocket) -> tuple[Any, threading.Thread]:
    server = engineio.Server(async_mode="threading")
    sock = eio_socket.Socket(server, "sid-1")
    server.sockets["sid-1"] = sock
    handler = threading.Thread(target=sock._websocket_handler, args=(ws,), daemon=True)
    return sock, handler


def message(text: str) -> Any:
    return eio_packet.Packet(eio_packet.MESSAGE, data=text)


def until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


SENDERS, EACH = 6, 50


def send_from_threads(sock: Any) -> None:
    """SENDERS threads send EACH packets each, all at once."""
    def sender(n: int) -> None:
        for i in range(EACH):
            sock.send(message(f"{n}:{i}"))

    senders = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()


def assert_once_each_in_senders_order(sent: list[str]) -> None:
    assert sorted(sent) == sorted(f"4{n}:{i}" for n in range(SENDERS) for i in range(EACH))
    for n in range(SENDERS):   # each sender's packets in the order it sent them
        assert [int(s.split(":")[1]) for s in sent if s.startswith(f"4{n}:")] == list(range(EACH))


def test_a_writer_runs_only_while_there_is_something_to_send(on_demand: None) -> None:
    ws = StandInWebSocket()
    sock, handler = connect(ws)
    sock.send(message("queued before the websocket was ready"))
    handler.start()
    state = transport._state(sock)
    assert until(lambda: len(ws.sent) == 1)
    assert until(lambda: not state.running)          # the queue is empty: no writer waits on it
    first = state.task
    first.join(timeout=2)
    for i in range(3):
        sock.send(message(f"later {i}"))
    assert until(lambda: len(ws.sent) == 4) and until(lambda: not state.running)
    assert state.task is not first                   # a new writer for the new packets, then gone too
    assert ws.sent == ["4queued before the websocket was ready", "4later 0", "4later 1", "4later 2"]
    ws.incoming.put(None)                            # the phone goes away
    handler.join(timeout=5)
    assert not handler.is_alive() and ws.closed.is_set() and sock.closed


def test_packets_from_many_senders_go_out_once_and_one_at_a_time(on_demand: None) -> None:
    ws = StandInWebSocket(send_delay=0.0005)
    sock, handler = connect(ws)
    handler.start()
    assert until(lambda: transport._state(sock).ws is not None)
    send_from_threads(sock)
    assert until(lambda: len(ws.sent) == 300)
    assert ws.overlaps == 0
    assert_once_each_in_senders_order(ws.sent)
    ws.incoming.put(None)
    handler.join(timeout=5)
    assert not handler.is_alive()


def test_the_end_of_a_connection_sends_what_was_queued_then_closes(on_demand: None) -> None:
    ws = StandInWebSocket(send_delay=0.01)
    sock, handler = connect(ws)
    handler.start()
    assert until(lambda: transport._state(sock).ws is not None)
    for i in range(5):
        sock.send(message(f"m{i}"))
    ws.incoming.put(None)
    handler.join(timeout=5)
    assert not handler.is_alive()
    assert ws.sent == [f"4m{i}" for i in range(5)] and ws.closed.is_set() and sock.closed


@pytest.mark.parametrize("make", [lambda: StandInWebSocket(fail_after=1),
                                  # an inline write that fails: the writer's send then fails too, and closes
                                  lambda: NoWaitWebSocket([transport.SENT, OSError("reset")], fail_after=1)],
                         ids=["writer", "inline"])
def test_a_failed_send_closes_the_websocket_and_a_server_close_does_not_hang(on_demand: None, make: Any) -> None:
    ws = make()
    sock, handler = connect(ws)
    handler.start()
    assert until(lambda: transport._state(sock).ws is not None)
    sock.send(message("delivered"))
    sock.send(message("the phone is gone"))
    assert until(ws.closed.is_set)
    # python-engineio's own close(wait=True) waits for the queue to be written; nothing can write it now
    closer = threading.Thread(target=sock.close, kwargs={"wait": True}, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive(), "close(wait=True) hung on packets no writer can send"
    assert ws.sent == ["4delivered"]
    ws.incoming.put(None)
    handler.join(timeout=5)
    assert not handler.is_alive()


def test_a_server_side_close_sends_the_close_packet(on_demand: None) -> None:
    ws = StandInWebSocket()
    sock, handler = connect(ws)
    handler.start()
    assert until(lambda: transport._state(sock).ws is not None)
    closer = threading.Thread(target=sock.close, kwargs={"wait": True}, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive()
    assert ws.sent == [eio_packet.Packet(eio_packet.CLOSE).encode()] and until(ws.closed.is_set)
    ws.incoming.put(None)
    handler.join(timeout=5)
    assert not handler.is_alive()


def test_only_the_python_engineio_series_it_follows_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport.metadata, "version", lambda name: "5.0.0")
    before = eio_socket.Socket.send
    assert transport.write_on_demand() is False
    assert eio_socket.Socket.send is before


class NoWaitWebSocket(StandInWebSocket):
    """A stand-in that can also write without waiting (``send_nowait``), as eventlet's websocket (with
    cafe.web.eventlet_websocket) and cafe.web.inline_websocket can: each call answers with the next of
    ``outcomes`` (then SENT); a part-written frame is finished by ``flush`` or the next ``send``."""

    def __init__(self, outcomes: list[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.outcomes = list(outcomes)
        self.inline_threads: list[str] = []
        self.tail: str | None = None
        self.flushes = 0

    def send_nowait(self, data: str) -> str:
        outcome = self.outcomes.pop(0) if self.outcomes else transport.SENT
        if isinstance(outcome, Exception):
            raise outcome
        if self.tail is not None or outcome == transport.NOT_SENT:
            return transport.NOT_SENT
        if outcome == transport.PARTLY_SENT:
            self.tail = data
            return outcome
        self.inline_threads.append(threading.current_thread().name)
        self.sent.append(data)
        return outcome

    def flush(self) -> None:
        self.flushes += 1
        self._finish_tail()

    def _finish_tail(self) -> None:
        if self.tail is not None:
            tail, self.tail = self.tail, None
            self.sent.append(tail)

    def send(self, data: str) -> None:
        self._finish_tail()
        super().send(data)


def started(ws: StandInWebSocket) -> Any:
    sock, handler = connect(ws)
    handler.start()
    assert until(lambda: transport._state(sock).ws is not None)
    return sock, handler


def stop(ws: StandInWebSocket, handler: threading.Thread) -> None:
    ws.incoming.put(None)
    handler.join(timeout=5)
    assert not handler.is_alive()


def test_a_socket_with_room_is_written_by_the_sender_itself_with_no_writer_task(on_demand: None) -> None:
    ws = NoWaitWebSocket([])
    sock, handler = started(ws)
    state = transport._state(sock)
    task_before = state.task
    for i in range(3):
        sock.send(message(f"m{i}"))
    assert ws.sent == ["4m0", "4m1", "4m2"]              # written before send() returned
    assert set(ws.inline_threads) == {threading.current_thread().name}
    assert state.task is task_before and not state.running
    stop(ws, handler)


def test_a_frame_the_socket_will_not_take_goes_to_a_writer_in_order(on_demand: None) -> None:
    ws = NoWaitWebSocket([transport.SENT, transport.NOT_SENT], send_delay=0.001)
    sock, handler = started(ws)
    state = transport._state(sock)
    sock.send(message("a"))
    sock.send(message("b"))                              # not taken: a writer task sends it
    sock.send(message("c"))                              # a writer is running: it sends this one too
    assert until(lambda: len(ws.sent) == 3) and until(lambda: not state.running)
    assert ws.sent == ["4a", "4b", "4c"] and ws.overlaps == 0
    sock.send(message("d"))                              # room again: inline
    assert ws.sent[-1] == "4d" and not state.running
    stop(ws, handler)


def test_the_end_of_a_part_written_frame_goes_out_before_anything_else(on_demand: None) -> None:
    ws = NoWaitWebSocket([transport.PARTLY_SENT])
    sock, handler = started(ws)
    state = transport._state(sock)
    sock.send(message("long"))
    sock.send(message("next"))
    assert until(lambda: len(ws.sent) == 2) and until(lambda: not state.running)
    assert ws.sent == ["4long", "4next"] and ws.flushes == 1
    stop(ws, handler)


def test_many_senders_with_inline_writes_and_a_busy_socket_keep_each_senders_order(on_demand: None) -> None:
    outcomes = [transport.NOT_SENT if i % 7 == 3 else transport.PARTLY_SENT if i % 11 == 5 else transport.SENT
                for i in range(300)]
    ws = NoWaitWebSocket(outcomes, send_delay=0.0002)
    sock, handler = started(ws)
    send_from_threads(sock)
    assert until(lambda: len(ws.sent) == 300) and until(lambda: not transport._state(sock).running)
    assert_once_each_in_senders_order(ws.sent)
    stop(ws, handler)
