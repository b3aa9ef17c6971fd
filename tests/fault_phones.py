"""Simulated phones, a facilitator and a killable server for the SIGKILL fault test.

A :class:`Phone` behaves like ``static/js/phone.js``: every note first goes into an outbox keyed by a
``client_id`` it made; ``note_add`` is sent with an acknowledgement; only an ``ok`` answer takes the note
out of the outbox. A dropped connection, a timeout or a retryable error keeps the note waiting; after
the socket reconnects by itself the phone rejoins with its ``rejoin_token`` and ``since_version`` and
sends everything still waiting again. Each phone is driven by one thread (the only one that emits on its
socket); answers arrive on the client's own threads and are applied under a lock.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from random import Random
from typing import Any

import socketio

from tests.conftest import ROOT

# The web phone keeps a note waiting on these answers; any other error refuses it for good.
RETRYABLE = {"timeout", "storage_unavailable", "no_answer", "internal", "rate_limited", "not_joined"}
ANSWER_TIMEOUT = 8.0          # seconds a phone waits for an acknowledgement on one connection


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KillableServer:
    """``python wsgi.py`` (eventlet by default, as in production) on a fixed port and database; SIGKILL and restart."""

    def __init__(self, tmp: Path, database_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # eventlet as in production; CAFE_FAULT_SERVER=gevent|threading tries the other servers.
        self.env = os.environ | {"CAFE_SERVER": os.environ.get("CAFE_FAULT_SERVER", "eventlet"), "DATABASE_URL": database_url, "PORT": str(self.port),
                                 "HOST": "127.0.0.1", "CAFE_INSTANCE_DIR": str(tmp), "SECRET_KEY": "fault-test",
                                 "PYTHONWARNINGS": "ignore"} | (extra_env or {})
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait until the port accepts connections; the seconds that took."""
        began = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "wsgi.py")], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - began
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.tail())

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever the writer task was doing is cut off."""
        assert self.proc is not None and self.proc.poll() is None, "the server died before it was killed"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def close_dead_websocket(sio: socketio.Client, reason: Any) -> None:
    """python-engineio's client drops a websocket that failed (server killed) without closing it, which
    leaks the socket (a ResourceWarning, an error under this suite's warning filter). Close it here, in
    the ``disconnect`` handler (run by the read loop itself), before the client reconnects with a new one.
    Only after a transport error: on our own disconnect the client closes it, and closing it here would
    leave its read loop blocked on a closed descriptor."""
    if reason != socketio.Client.reason.TRANSPORT_ERROR:
        return
    ws = getattr(sio.eio, "ws", None)
    if ws is not None:
        try:
            ws.shutdown()
        except Exception:  # noqa: BLE001 - it is dead already
            pass


class _Item:
    __slots__ = ("client_id", "text", "retry_at", "sends")

    def __init__(self, client_id: str, text: str) -> None:
        self.client_id = client_id
        self.text = text
        self.retry_at = 0.0
        self.sends = 0


class Phone:
    """One resident's phone: joins, writes notes at a seeded random pace, survives server restarts."""

    def __init__(self, index: int, url: str, join_code: str, seed: int,
                 interval: tuple[float, float] = (1.5, 3.5), drop_acks: float = 0.0) -> None:
        self.index = index
        self.url = url
        self.join_code = join_code
        self.rng = Random(seed)
        self.interval = interval
        self.drop_acks = drop_acks                  # share of first acknowledgements "lost on the way"
        self.ack_rng = Random(seed + 1)
        self.dropped_acks = 0
        self.lock = threading.Lock()
        self.outbox: dict[str, _Item] = {}          # insertion order = writing order
        self.acked: dict[str, dict[str, Any]] = {}  # client_id -> {"id", "text", "duplicate"}
        self.refused: dict[str, Any] = {}           # client_id -> error (must stay empty)
        self.written: dict[str, str] = {}           # every note ever written: client_id -> text
        self.errors: list[str] = []                 # anything unexpected (the test asserts none)
        self.epoch = 0                              # bumps on every connect and disconnect
        self.joined_epoch = -1
        self.token: str | None = None
        self.participant_id: int | None = None
        self.version: int | None = None
        self.joins = 0
        self.snapshots = 0                          # rejoins answered with a snapshot (caught up)
        self.up_to_date = 0                         # rejoins answered "up_to_date"
        self.resends = 0
        self.duplicate_acks = 0
        self.no_answer = 0
        self.retryable_errors: dict[str, int] = {}
        self.ends_at_seen: list[tuple[float, bool]] = []   # (ends_at, paused) of each snapshot on a rejoin
        self.writing = threading.Event()
        self.stopping = threading.Event()
        self.sio = socketio.Client(reconnection=True, reconnection_attempts=0, reconnection_delay=0.5,
                                   reconnection_delay_max=2, randomization_factor=0.5, request_timeout=5)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("cafe_state", self._on_state)
        self.sio.on("note_added", self._on_note_added)
        self.sio.on("seat_assigned", self._on_seat)     # at a round start it carries the state (phone.js)
        self.thread = threading.Thread(target=self._run, name=f"phone-{index}", daemon=True)

    # -- socket callbacks (client threads) --------------------------------------------------------
    def _on_connect(self, *_a: Any) -> None:
        with self.lock:
            self.epoch += 1

    def _on_disconnect(self, reason: Any = None) -> None:
        with self.lock:
            self.epoch += 1
        close_dead_websocket(self.sio, reason)

    def _on_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("version"), int):
            with self.lock:
                self.version = max(self.version or 0, state["version"])

    def _on_seat(self, seat: Any) -> None:
        if isinstance(seat, dict):
            self._on_state(seat.get("state"))

    def _on_note_added(self, message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("version"), int):
            with self.lock:
                self.version = max(self.version or 0, message["version"])

    def _answer(self, item: _Item, answer: Any) -> None:
        with self.lock:
            if not isinstance(answer, dict):
                self.errors.append(f"phone {self.index}: odd answer {answer!r}")
                return
            if answer.get("ok"):
                if not answer.get("duplicate") and self.ack_rng.random() < self.drop_acks:
                    # As if the connection died just after the commit: the note is stored, the phone
                    # never heard so. It stays in the outbox and is sent again (answer: duplicate).
                    self.dropped_acks += 1
                    item.retry_at = time.monotonic() + 1.0
                    return
                note = answer.get("note") or {}
                if note.get("client_id") != item.client_id or note.get("text") != item.text:
                    self.errors.append(f"phone {self.index}: ack for the wrong note {note!r}")
                if answer.get("duplicate"):
                    self.duplicate_acks += 1
                if item.client_id in self.acked:
                    if self.acked[item.client_id]["id"] != note.get("id"):
                        self.errors.append(f"phone {self.index}: {item.client_id} acknowledged as two notes")
                else:
                    self.acked[item.client_id] = {"id": note.get("id"), "text": item.text,
                                                  "duplicate": bool(answer.get("duplicate"))}
                self.outbox.pop(item.client_id, None)
                return
            code = (answer.get("error") or {}).get("code")
            if code in RETRYABLE:
                self.retryable_errors[code] = self.retryable_errors.get(code, 0) + 1
                if code == "not_joined":
                    self.joined_epoch = -1
                item.retry_at = time.monotonic() + (2.0 if code == "rate_limited" else 0.5)
            else:
                self.refused[item.client_id] = answer.get("error")
                self.outbox.pop(item.client_id, None)

    # -- the phone's own thread -------------------------------------------------------------------
    def connect(self) -> None:
        self.sio.connect(self.url, transports=["websocket"], wait_timeout=10)

    def start(self) -> None:
        self.thread.start()

    def _emit_and_wait(self, event: str, payload: dict[str, Any], epoch: int, on_answer: Any) -> bool:
        """Emit with an ack; wait until answered, the connection changes, or ANSWER_TIMEOUT. Answered?"""
        done = threading.Event()

        def callback(*args: Any) -> None:
            try:
                on_answer(args[0] if args else None)
            finally:
                done.set()

        try:
            self.sio.emit(event, payload, callback=callback)
        except socketio.exceptions.SocketIOError:
            return False
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while time.monotonic() < deadline and not self.stopping.is_set():
            if done.wait(0.05):
                return True
            if self.epoch != epoch:
                return False
        return done.is_set()

    def _join(self, epoch: int) -> None:
        payload: dict[str, Any] = {"join_code": self.join_code, "name": f"Phone {self.index}"}
        with self.lock:
            if self.token:
                payload["rejoin_token"] = self.token
                if self.version is not None:
                    payload["since_version"] = self.version
        result: list[Any] = []
        if not self._emit_and_wait("participant_join", payload, epoch, result.append):
            time.sleep(0.1)
            return
        answer = result[0]
        if not isinstance(answer, dict) or not answer.get("ok"):
            code = ((answer or {}).get("error") or {}).get("code") if isinstance(answer, dict) else None
            if code in RETRYABLE:
                time.sleep(0.3)
                return
            with self.lock:
                self.errors.append(f"phone {self.index}: join refused {answer!r}")
            self.stopping.set()
            return
        with self.lock:
            if answer.get("rejoin_token"):
                if self.token is not None:
                    self.errors.append(f"phone {self.index}: joined as a new participant again")
                self.token = answer["rejoin_token"]
            pid = answer["participant"]["id"]
            if self.participant_id is not None and pid != self.participant_id:
                self.errors.append(f"phone {self.index}: came back as participant {pid}")
            self.participant_id = pid
            self.joins += 1
            snapshot = answer.get("snapshot")
            if answer.get("rejoined"):
                if snapshot is None:
                    self.up_to_date += 1
                else:
                    self.snapshots += 1
            if snapshot is not None:
                state = snapshot["state"]
                self.version = state["version"]
                if self.joins > 1 and state.get("phase") == "round":
                    self.ends_at_seen.append((state["ends_at"], bool(state.get("paused"))))
            for item in self.outbox.values():    # flush everything waiting, like phone.js
                item.retry_at = 0.0
            self.joined_epoch = epoch

    def _write_note(self) -> None:
        client_id = str(uuid.uuid4())
        text = f"phone {self.index} note {len(self.written) + 1} {client_id[:8]}"
        with self.lock:
            self.written[client_id] = text
            self.outbox[client_id] = _Item(client_id, text)

    def _due(self) -> _Item | None:
        now = time.monotonic()
        with self.lock:
            for item in self.outbox.values():
                if item.retry_at <= now:
                    return item
        return None

    def _run(self) -> None:
        try:
            next_note = time.monotonic() + self.rng.uniform(0, self.interval[1])
            while not self.stopping.is_set():
                if not self.sio.connected:
                    time.sleep(0.05)
                    continue
                epoch = self.epoch
                if self.joined_epoch != epoch:
                    self._join(epoch)
                    continue
                now = time.monotonic()
                if self.writing.is_set() and now >= next_note:
                    self._write_note()
                    next_note = now + self.rng.uniform(*self.interval)
                item = self._due()
                if item is None:
                    time.sleep(0.05)
                    continue
                item.sends += 1
                if item.sends > 1:
                    self.resends += 1
                item.retry_at = time.monotonic() + ANSWER_TIMEOUT   # not again on this try
                if not self._emit_and_wait("note_add", {"client_id": item.client_id, "text": item.text},
                                           epoch, lambda answer, item=item: self._answer(item, answer)):
                    with self.lock:
                        self.no_answer += 1
                        if item.client_id in self.outbox:
                            item.retry_at = time.monotonic() + 0.5
        except Exception as exc:  # never let a phone thread die silently (pytest turns it into an error)
            with self.lock:
                self.errors.append(f"phone {self.index}: {type(exc).__name__}: {exc}")

    # -- the test's side --------------------------------------------------------------------------
    def waiting(self) -> dict[str, str]:
        with self.lock:
            return {cid: item.text for cid, item in self.outbox.items()}

    def acknowledged(self) -> dict[str, str]:
        with self.lock:
            return {cid: a["text"] for cid, a in self.acked.items()}

    def joined(self) -> bool:
        return self.sio.connected and self.joined_epoch == self.epoch

    def close(self) -> None:
        self.stopping.set()
        self.writing.clear()
        if self.thread.is_alive():
            self.thread.join(ANSWER_TIMEOUT + 2)
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


class Facilitator:
    """The facilitator's control view over Socket.IO with an API token: starts the round, reads the clock."""

    def __init__(self, url: str, token: str, cafe_id: int) -> None:
        self.url = url
        self.cafe_id = cafe_id
        self.token = token
        self.epoch = 0
        self.sio = socketio.Client(reconnection=True, reconnection_attempts=0, reconnection_delay=0.5,
                                   reconnection_delay_max=2, randomization_factor=0.5, request_timeout=5)
        self.sio.on("connect", self._bump)
        self.sio.on("disconnect", self._dropped)

    def _bump(self, *_a: Any) -> None:
        self.epoch += 1

    def _dropped(self, reason: Any = None) -> None:
        self.epoch += 1
        close_dead_websocket(self.sio, reason)

    def connect(self) -> None:
        self.sio.connect(self.url, transports=["websocket"], auth={"token": self.token}, wait_timeout=10)

    def command(self, event: str, **extra: Any) -> dict[str, Any]:
        return self.sio.call(event, {"cafe_id": self.cafe_id} | extra, timeout=10)

    def state_after_reconnect(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the socket is back, join the café again, and return the snapshot's cafe_state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sio.connected:
                try:
                    answer = self.command("facilitator_join")
                except (socketio.exceptions.SocketIOError, TimeoutError):
                    time.sleep(0.2)
                    continue
                if answer.get("ok"):
                    return answer["snapshot"]["state"]
            time.sleep(0.1)
        raise AssertionError("the facilitator did not get back in")

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


def set_up_cafe(url: str, **settings: Any) -> dict[str, Any]:
    """A facilitator, an API token and a café, made in-process with the app's services against ``url``."""
    from cafe.extensions import db
    from tests.conftest import Actions, _make_app

    app = _make_app(url)
    try:
        actions = Actions(app)
        fac = actions.facilitator()
        cafe = actions.cafe(fac, **settings)
        return {"token": actions.token(fac), **cafe}
    finally:
        app.extensions["cafe.committer"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
