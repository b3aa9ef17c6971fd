"""Transport limits against the real server (``python wsgi.py``, eventlet and gevent) over real websockets.

- A Socket.IO message over the 64 KB ``MAX_HTTP_BUFFER_SIZE`` (a 1 MB ``note_add``, in one frame or in
  fragments of 32 KB each, and a 1 MB long-polling POST) is refused at the transport: that connection is
  dropped (or the request refused) and nothing is stored, while another phone's ``note_add`` is
  acknowledged right after.
- Deeply nested JSON (5,000 levels, in the payload and as the whole packet) and invalid UTF-8 in a
  websocket text frame (raw bytes, written under the websocket library) do not crash the server.
- A burst of 100 notes in about a second from one participant gets exactly 30 accepted and the rest
  ``rate_limited``, while another participant behind the same address (127.0.0.1) writes unaffected.
- The server keeps serving throughout, and its log has no Traceback.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from wsproto.events import CloseConnection, TextMessage

from cafe.bench.load import SioClient, SocketError
from tests import fault_phones
from tests.fault_phones import KillableServer

HOST = "127.0.0.1"
LIMIT = 64 * 1024
ACK_TIMEOUT = 30.0            # generous: another helper runs load benchmarks on this machine
POST_TIMEOUT = 15.0


def set_up_cafe(url: str, **settings: Any) -> dict[str, Any]:
    """A facilitator, an API token and a café of three 20-minute rounds at tables of five, without hosts."""
    return fault_phones.set_up_cafe(url, **({"rounds": 3, "round_minutes": 20, "seats_per_table": 5,
                                             "hosts": False} | settings))


def count_notes(url: str, cafe_id: int, participant_id: int | None = None) -> int:
    con = sqlite3.connect(url[len("sqlite:///"):], timeout=30)
    try:
        if participant_id is None:
            return con.execute("SELECT count(*) FROM note WHERE cafe_id = ?", (cafe_id,)).fetchone()[0]
        return con.execute("SELECT count(*) FROM note WHERE cafe_id = ? AND participant_id = ?",
                           (cafe_id, participant_id)).fetchone()[0]
    finally:
        con.close()


class Client(SioClient):
    """The benchmark's asyncio Socket.IO client, also remembering how the server closed the websocket
    and able to write raw frames (which the websocket library would refuse to make)."""

    def __init__(self, port: int) -> None:
        super().__init__(HOST, port, self._on_event)
        self.events: list[tuple[str, Any]] = []
        self.close_code: int | None = None
        self.ended = asyncio.Event()
        read = self.ws.events

        def events() -> Any:               # the websocket's events, remembering the server's close code
            for event in read():
                if isinstance(event, CloseConnection):
                    self.close_code = event.code
                yield event
        self.ws.events = events  # type: ignore[method-assign]

    def _on_event(self, name: str, data: Any, _at: float) -> None:
        self.events.append((name, data))

    def _fail(self, exc: Exception) -> None:
        super()._fail(exc)
        self.ended.set()

    def emit_raw(self, body: str) -> asyncio.Future[Any]:
        """Send ``42<id><body>`` (``body`` as is, not JSON-encoded here) asking for an acknowledgement."""
        self._ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[self._ids] = future
        self._send_text(f"42{self._ids}{body}")
        return future

    def raw_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """Write one masked client frame straight to the socket."""
        assert self.writer is not None
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, mask)
        self.writer.write(head + mask + masked)

    def send_text(self, text: str) -> None:
        assert self.writer is not None
        self.writer.write(self.ws.send(TextMessage(data=text)))

    async def hard_close(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.transport.abort()
        self._fail(SocketError("closed"))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):   # cancelled or failed: over
                await self._task


def _mask(payload: bytes, mask: bytes) -> bytes:
    whole = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(len(payload), "big")


async def wait_ended(client: Client, timeout: float = 20.0) -> bool:
    try:
        await asyncio.wait_for(client.ended.wait(), timeout)
        return True
    except TimeoutError:
        return False


def note(text: str) -> dict[str, Any]:
    return {"client_id": str(uuid.uuid4()), "text": text}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["eventlet", "gevent"])
def test_oversized_nested_and_invalid_frames_are_refused_and_the_rate_limit_is_per_participant(
        sqlite_url: str, tmp_path: Path, kind: str) -> None:
    cafe = set_up_cafe(sqlite_url)
    server = KillableServer(tmp_path, sqlite_url, {"CAFE_SERVER": kind})
    figures: dict[str, Any] = {}
    try:
        server.start()
        figures = asyncio.run(_scenario(server, sqlite_url, cafe))
        assert server.proc is not None and server.proc.poll() is None, "the server died"
        assert requests.get(f"{server.url}/healthz", timeout=10).ok
    finally:
        server.stop()
    log = server.tail(500_000)
    print("transport limits:", json.dumps(figures, default=str))
    problems = list(figures.get("problems", []))
    if "Traceback" in log:
        first = log.index("Traceback")
        problems.append(f"the server log has {log.count('Traceback')} Traceback(s), the first:\n"
                        + log[max(0, first - 200):first + 2500])
    assert not problems, "\n".join(problems)


async def _scenario(server: KillableServer, url: str, cafe: dict[str, Any]) -> dict[str, Any]:
    port = server.port
    clients: list[Client] = []
    figures: dict[str, Any] = {}
    problems: list[str] = figures.setdefault("problems", [])

    async def phone(name: str) -> tuple[Client, int]:
        client = Client(port)
        clients.append(client)
        await client.connect(timeout=ACK_TIMEOUT)
        answer = await client.call("participant_join", {"join_code": cafe["join_code"], "name": name}, ACK_TIMEOUT)
        assert answer["ok"], answer
        return client, answer["participant"]["id"]

    async def bystander_writes(label: str) -> None:
        """The other phone is unaffected: its note is acknowledged right after the bad message."""
        answer = await bystander.call("note_add", note(f"bystander after {label}"), ACK_TIMEOUT)
        assert answer["ok"] and not answer["duplicate"], (label, answer)
        assert not bystander.closed, label

    try:
        fac = Client(port)
        clients.append(fac)
        await fac.connect(auth={"token": cafe["token"]}, timeout=ACK_TIMEOUT)
        assert (await fac.call("facilitator_join", {"cafe_id": cafe["id"]}, ACK_TIMEOUT))["ok"]
        bystander, bystander_id = await phone("Bystander")
        big, big_id = await phone("Big")
        fragmented, fragmented_id = await phone("Fragmented")
        nested, nested_id = await phone("Nested")
        bad_utf8, _ = await phone("BadUTF8")
        burst, burst_id = await phone("Burst")
        neighbour, neighbour_id = await phone("Neighbour")
        started = await fac.call("round_start", {"cafe_id": cafe["id"]}, 60)
        assert started["ok"], started

        # 1. A 1 MB note_add in one websocket frame: eventlet refuses the frame (close 1009).
        text = "x" * (1024 * 1024)
        big.send_text("421" + json.dumps(["note_add", {"client_id": str(uuid.uuid4()), "text": text}]))
        assert await wait_ended(big), "a 1 MB frame did not end the connection"
        figures["ws_one_frame_1mb"] = f"connection closed ({big.close_code})"
        await bystander_writes("a 1 MB frame")
        assert count_notes(url, cafe["id"], big_id) == 0

        # 2. The same 1 MB in 32 KB fragments (each frame under the limit): engine.io refuses the message
        #    once eventlet has put it together.
        payload = ("421" + json.dumps(["note_add", {"client_id": str(uuid.uuid4()), "text": text}])).encode()
        chunk = 32 * 1024
        pieces = [payload[i:i + chunk] for i in range(0, len(payload), chunk)]
        for n, piece in enumerate(pieces):
            fragmented.raw_frame(0x1 if n == 0 else 0x0, piece, fin=n == len(pieces) - 1)
        assert await wait_ended(fragmented), "a fragmented 1 MB message did not end the connection"
        figures["ws_fragmented_1mb"] = f"connection closed ({fragmented.close_code})"
        await bystander_writes("a fragmented 1 MB message")
        assert count_notes(url, cafe["id"], fragmented_id) == 0

        # 3. 5,000 levels of nesting, as the payload and as the whole packet, and malformed JSON: an error
        #    answer or a dropped connection, never a crash; if the phone is still connected, its next note
        #    goes through.
        deep_list = "[" * 5000 + "]" * 5000
        deep_dict = '{"a":' * 5000 + "1" + "}" * 5000
        answers = [nested.emit_raw('["note_add",' + deep_list + "]"),
                   nested.emit_raw('["note_add",' + deep_dict + "]"),
                   nested.emit_raw(deep_list),
                   nested.emit_raw('["note_add",{"client_id":')]          # and plainly malformed JSON
        done, _ = await asyncio.wait(answers, timeout=5)
        figures["ws_nested_answers"] = [f.result() if f in done and not f.exception() else "no answer"
                                        for f in answers]
        if not nested.closed and "no answer" in figures["ws_nested_answers"]:
            problems.append("deeply nested / malformed JSON got no answer (protocol.md: an invalid payload "
                            f"gets the error answer): {figures['ws_nested_answers']}")
        await bystander_writes("deeply nested JSON")
        if not nested.closed:
            answer = await nested.call("note_add", note("nested phone still here"), ACK_TIMEOUT)
            assert answer["ok"], answer
            figures["ws_nested"] = "connection kept"
        else:
            figures["ws_nested"] = f"connection dropped ({nested.close_code})"
        assert count_notes(url, cafe["id"], nested_id) <= 1

        # 4. Invalid UTF-8 in a text frame (the websocket library cannot make one: raw bytes).
        bad_utf8.raw_frame(0x1, b'421["note_add",{"client_id":"' + str(uuid.uuid4()).encode()
                           + b'","text":"caf\xc3\x28 \xff\xfe"}]')
        assert await wait_ended(bad_utf8), "invalid UTF-8 did not end the connection"
        figures["ws_invalid_utf8"] = f"connection closed ({bad_utf8.close_code})"
        await bystander_writes("invalid UTF-8")

        # 5. The same over HTTP long-polling: 1 MB is refused before the body is read; nested JSON and
        #    invalid UTF-8 in a POST body get an answer, not a crash.
        figures["polling"] = polling = await asyncio.to_thread(_polling_checks, port)
        if polling["1mb"] not in (400, 413):
            problems.append(f"a 1 MB long-polling POST got {polling['1mb']!r}, not 400/413")
        for name in ("nested", "invalid_utf8"):
            if not isinstance(polling[name], int):
                problems.append(f"a long-polling POST with {name} got {polling[name]!r}")
        await bystander_writes("long-polling POSTs")

        # 6. 100 notes in about a second from one participant, and the neighbour on the same address.
        burst_futures = []
        neighbour_futures = []
        began = time.monotonic()
        for n in range(100):
            burst_futures.append(burst.emit("note_add", note(f"burst note {n}")))
            if n % 20 == 0:
                neighbour_futures.append(neighbour.emit("note_add", note(f"neighbour note {n}")))
            await asyncio.sleep(0.01)
        sent_in = time.monotonic() - began
        burst_answers = await asyncio.wait_for(asyncio.gather(*burst_futures), 60)
        neighbour_answers = await asyncio.wait_for(asyncio.gather(*neighbour_futures), 60)
        codes: dict[str, int] = {}
        for answer in burst_answers:
            key = "ok" if answer["ok"] else answer["error"]["code"]
            codes[key] = codes.get(key, 0) + 1
        figures["burst"] = {"sent_in_s": round(sent_in, 2), "answers": codes,
                            "neighbour_ok": sum(a["ok"] for a in neighbour_answers)}
        assert codes == {"ok": 30, "rate_limited": 70}, codes
        assert all(a["ok"] for a in neighbour_answers), neighbour_answers
        assert count_notes(url, cafe["id"], burst_id) == 30
        assert count_notes(url, cafe["id"], neighbour_id) == len(neighbour_answers)
        await bystander_writes("the burst")
        assert not burst.closed and not neighbour.closed
        assert count_notes(url, cafe["id"], bystander_id) == 6
    finally:
        for client in clients:
            await client.hard_close()
        await asyncio.sleep(0.1)        # let the transports finish closing
    return figures


def _polling_checks(port: int) -> dict[str, Any]:
    """Open long-polling sessions (connected to the default namespace) and POST bad bodies to them."""
    base = f"http://{HOST}:{port}/socket.io/?EIO=4&transport=polling"
    out: dict[str, Any] = {}
    bodies = {"1mb": ("42" + json.dumps(["note_add", note("x" * (1024 * 1024))])).encode(),
              "nested": ('421["note_add",' + "[" * 5000 + "]" * 5000 + "]").encode(),
              "invalid_utf8": b'421["note_add",{"text":"caf\xc3\x28 \xff\xfe"}]'}
    for name, body in bodies.items():
        with requests.Session() as s:
            opened = s.get(base, timeout=ACK_TIMEOUT)
            opened.raise_for_status()
            sid = json.loads(opened.text[1:])["sid"]
            assert s.post(f"{base}&sid={sid}", data=b"40", timeout=ACK_TIMEOUT).ok
            s.get(f"{base}&sid={sid}", timeout=ACK_TIMEOUT)          # the namespace's connect answer
            # As a real client does, keep a GET waiting while posting (the server may close the session).
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(_get_quietly, f"{base}&sid={sid}")
                try:
                    answer = requests.post(f"{base}&sid={sid}", data=body, timeout=POST_TIMEOUT,
                                           headers={"Content-Type": "text/plain;charset=UTF-8"})
                    out[name] = answer.status_code
                except requests.Timeout:
                    out[name] = f"no answer in {POST_TIMEOUT:.0f} s"
                if out[name] == 200:              # still open: close it (Engine.IO "1"), which ends the GET
                    requests.post(f"{base}&sid={sid}", data=b"1", timeout=ACK_TIMEOUT)
                waiting.result(ACK_TIMEOUT + 5)
    return out


def _get_quietly(url: str) -> int | str:
    try:
        return requests.get(url, timeout=ACK_TIMEOUT).status_code
    except requests.RequestException as exc:
        return type(exc).__name__
