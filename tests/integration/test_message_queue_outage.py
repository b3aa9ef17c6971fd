"""Two workers lose their message queue (Redis) for a while: nothing written meanwhile stays off the wall.

Two ``python wsgi.py`` processes (eventlet, as in production) share a fresh PostgreSQL schema and a Redis
server of this test's own (``redis-server`` on a free port, nothing on disk), so that it can be killed and
started again without touching the machine's Redis. A dashboard is on worker 2, phones on both workers.

- Redis is killed (SIGKILL, as in a crash) and started again: a note written on worker 1 meanwhile is
  stored and acknowledged but cannot reach the dashboard on worker 2; once the workers listen again, every
  page is sent ``resync``, the dashboard's whole snapshot holds the note, and notes cross live again.
- Redis refuses one worker's publishes while everyone stays subscribed (an ACL takes PUBLISH away from
  it for a moment): the note published then reaches no other worker; once the worker can publish again,
  the other worker's pages are told to resync, and notes cross again.
- Redis goes silent (a relay between the workers and Redis stops passing anything, as a dropped network
  would, with no refusal and no reset): notes are still acknowledged, well within the time a phone waits,
  where each publish used to wait 10 s for redis-py's timeouts and retries while holding every answer;
  once Redis answers again, the other worker's pages resync and notes cross again. And the same on one
  publishing client: it gives up after PUBLISH_TIMEOUT, then publishes nothing until a probe gets through,
  or until its listener is subscribed again, whichever comes first; its own pages get each batch without
  waiting for Redis's answer.
"""
from __future__ import annotations

import json
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES, _port_open, require_service
from tests.fault_phones import KillableServer, free_port
from tests.integration.test_two_workers import Client, close_all, facilitator_token, two_workers_on, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

RESYNC_WAIT = 25.0      # the listener tries again after 1, 2, 4, then every 5 s, and pages wait up to 3 s
QUIET = 1.0             # seconds in which a note that cannot cross must not show up


class PrivateRedis:
    """``redis-server`` on a port of its own, without persistence; killed and started again on that port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: _port_open("127.0.0.1", self.port), 10):
            raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def command(self, *args: str) -> Any:
        import redis
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class SilentRelay:
    """A TCP relay to a Redis server that can go silent: while held it passes nothing either way, refuses
    nothing and keeps every connection open (what a worker sees when the network to Redis drops its
    packets). Released, it passes on what it held, as TCP does once the network is back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.passing = threading.Event()
        self.passing.set()
        self.closed = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                near, _ = self.listener.accept()
                far = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                continue
            self.sockets += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed:
                self.passing.wait()
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready or not self.passing.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):      # closed, here or by the other direction's pump
            pass
        finally:
            for sock in (source, sink):
                sock.close()

    def hold(self) -> None:
        self.passing.clear()

    def release(self) -> None:
        self.passing.set()

    def __enter__(self) -> SilentRelay:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.closed = True
        self.passing.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_service("Redis", "127.0.0.1", 6379)     # where Redis runs, its server program is installed
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}, and CAFE_REQUIRE_SERVICES=1 demands it")
        pytest.skip(message)
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_workers(private_redis: PrivateRedis, postgres_url: str, tmp_path: Path) -> Iterator[list[KillableServer]]:
    with two_workers_on(f"redis://127.0.0.1:{private_redis.port}/0", postgres_url, tmp_path) as servers:
        yield servers


@pytest.fixture
def relay(private_redis: PrivateRedis) -> Iterator[SilentRelay]:
    with SilentRelay(private_redis.port) as silent:
        yield silent


@pytest.fixture
def relayed_workers(relay: SilentRelay, postgres_url: str, tmp_path: Path) -> Iterator[list[KillableServer]]:
    with two_workers_on(f"redis://127.0.0.1:{relay.port}/0", postgres_url, tmp_path) as servers:
        yield servers


class Room:
    """A running round: a dashboard on worker 2, a phone on each worker, both seated."""

    def __init__(self, workers: list[KillableServer], postgres_url: str) -> None:
        import requests

        token = facilitator_token(postgres_url)
        made = requests.post(f"{workers[0].url}/api/cafes", headers={"Authorization": f"Bearer {token}"},
                             timeout=10, json={"title": "Outage", "questions": ["What would help?"], "rounds": 3,
                                               "round_minutes": 20, "seats_per_table": 4, "hosts": False})
        assert made.status_code == 201, made.text
        self.cafe_id, join_code = made.json()["id"], made.json()["join_code"]
        self.clients: list[Client] = []
        self.dashboard = self._client(Client("dashboard", workers[1], 1, auth={"token": token}))
        assert self.dashboard.call("facilitator_join", {"cafe_id": self.cafe_id})["ok"]
        self.phones = [self._client(Client(f"phone-{n}", workers[n], n)) for n in (0, 1)]
        for phone in self.phones:
            answer = phone.call("participant_join", {"join_code": join_code})
            assert answer["ok"], answer
            phone.participant_id = answer["participant"]["id"]
        assert self.dashboard.call("round_start", {"cafe_id": self.cafe_id})["ok"]
        assert wait_until(lambda: all(p.of("seat_assigned") for p in self.phones)), "a phone got no seat"

    def _client(self, client: Client) -> Client:
        self.clients.append(client.connect())
        return client

    def write(self, text: str) -> str:
        """A note from the phone on worker 1; its client id."""
        client_id = str(uuid.uuid4())
        answer = self.phones[0].call("note_add", {"client_id": client_id, "text": text})
        assert answer["ok"] and not answer["duplicate"], answer
        return client_id

    def crossing(self, text: str, failure: str) -> str:
        """A note from the phone on worker 1 that must reach the dashboard on worker 2; its client id."""
        client_id = self.write(text)
        assert wait_until(lambda: self.on_wall(client_id)), failure
        return client_id

    def other_worker_resynced(self) -> bool:
        """Whether the dashboard and the phone on worker 2 were told to resync (waits for it)."""
        return wait_until(lambda: bool(self.dashboard.of("resync")) and bool(self.phones[1].of("resync")),
                          RESYNC_WAIT)

    def on_wall(self, client_id: str) -> bool:
        return bool(self.dashboard.of("note_added", lambda d: d["note"]["client_id"] == client_id))

    def snapshot_notes(self) -> set[str]:
        """The client ids of the notes in the dashboard's whole snapshot (a join without since_version)."""
        answer = self.dashboard.call("facilitator_join", {"cafe_id": self.cafe_id})
        assert answer["ok"] and answer["snapshot"] is not None, answer
        return {note["client_id"] for note in answer["snapshot"]["notes"]}

    def close(self) -> None:
        close_all(self.clients)


def test_after_redis_restarts_every_page_resyncs_and_the_wall_gets_what_was_written_meanwhile(
        two_workers: list[KillableServer], private_redis: PrivateRedis, postgres_url: str) -> None:
    room = Room(two_workers, postgres_url)
    try:
        before = room.crossing("Clean water at the market", "a note did not cross while Redis ran")

        private_redis.kill()
        during = room.write("A bench at the bus stop")        # stored and acknowledged all the same
        time.sleep(QUIET)
        assert not room.on_wall(during), "the note crossed without Redis: this test proves nothing"
        assert not any(c.of("resync") for c in room.clients)

        private_redis.start()
        assert wait_until(lambda: all(c.of("resync") for c in room.clients), RESYNC_WAIT), \
            f"pages not told to resync: {[c for c in room.clients if not c.of('resync')]}"
        assert all(c.of("resync")[0] == {"reason": "message_queue"} for c in room.clients)
        assert {before, during} <= room.snapshot_notes()

        room.crossing("Longer clinic hours", "notes do not cross after Redis came back")
    finally:
        room.close()


def test_a_worker_whose_publish_was_lost_tells_the_other_workers_pages_to_resync(
        two_workers: list[KillableServer], private_redis: PrivateRedis, postgres_url: str) -> None:
    room = Room(two_workers, postgres_url)
    try:
        private_redis.command("ACL", "SETUSER", "default", "-publish")    # subscriptions keep running
        try:
            lost = room.write("Shade at the playground")
            time.sleep(QUIET)
        finally:
            private_redis.command("ACL", "SETUSER", "default", "+publish")
        assert not room.on_wall(lost), "the note crossed although PUBLISH was refused: this test proves nothing"

        assert room.other_worker_resynced(), "the other worker's pages were not told to resync"
        assert lost in room.snapshot_notes()
        room.crossing("Street lights on the hill", "the worker's next note did not cross")
        assert not room.phones[0].of("resync"), "the worker that lost its publish heard its own events"
    finally:
        room.close()


ACK_WITHIN = 5.0        # seconds: half of what a phone waits for an answer before it sends the note again


def test_a_silent_message_queue_holds_up_no_answer_and_the_wall_catches_up_once_it_answers(
        relayed_workers: list[KillableServer], relay: SilentRelay, postgres_url: str) -> None:
    room = Room(relayed_workers, postgres_url)
    try:
        room.crossing("Clean water at the market", "a note did not cross while Redis answered")

        relay.hold()
        during = []
        for text in ("A bench at the bus stop", "Shade at the playground", "Street lights on the hill"):
            client_id = str(uuid.uuid4())
            answer = room.phones[0].call("note_add", {"client_id": client_id, "text": text}, timeout=ACK_WITHIN)
            assert answer["ok"], answer
            during.append(client_id)
        time.sleep(QUIET)
        assert not any(room.on_wall(c) for c in during), "a note crossed a silent queue: this test proves nothing"

        relay.release()
        assert room.other_worker_resynced(), "the other worker's pages were not told to resync"
        assert set(during) <= room.snapshot_notes()
        room.crossing("Longer clinic hours", "notes do not cross after Redis answered again")
    finally:
        room.close()


def _publisher_through(relay: SilentRelay) -> Any:
    """One worker's publishing side (no listener), on a channel of its own, reaching Redis through ``relay``."""
    import socketio

    from cafe.web.fanout import FanoutRedisManager

    manager = FanoutRedisManager(f"redis://127.0.0.1:{relay.port}/0", channel=f"cafe-test-{uuid.uuid4().hex}",
                                 write_only=True)
    socketio.Server(async_mode="threading", client_manager=manager)
    return manager


def test_a_publish_to_a_silent_queue_gives_up_and_the_next_ones_wait_for_a_probe(
        relay: SilentRelay, private_redis: PrivateRedis) -> None:
    import redis

    from cafe.web.fanout import METHOD, PUBLISH_TIMEOUT

    manager = _publisher_through(relay)
    listener = redis.Redis(host="127.0.0.1", port=private_redis.port).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(manager.channel)
    heard: list[dict[str, Any]] = []

    def hear_until(done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            message = listener.get_message(timeout=0.05)
            if message is not None:
                heard.append(json.loads(message["data"]))

    try:
        assert manager._publish({"n": 1}) == 1
        relay.hold()
        began = time.monotonic()
        assert manager._publish({"n": 2}) is None                 # lost, after one timeout
        assert time.monotonic() - began < PUBLISH_TIMEOUT + 1.0
        began = time.monotonic()
        assert manager._publish({"n": 3}) is None                 # not tried: the queue is known to be silent
        assert time.monotonic() - began < PUBLISH_TIMEOUT
        relay.release()
        hear_until(lambda: any(m.get("resync") for m in heard), RESYNC_WAIT)
        resync = [m for m in heard if m.get("resync")]
        assert resync == [{"method": METHOD, "host_id": manager.host_id, "resync": True}]
        assert wait_until(lambda: not manager._paused, 5)          # the probe returns just after Redis took it
        assert manager._publish({"n": 4}) == 1                     # publishing again
        hear_until(lambda: {"n": 4} in heard, 5)
        assert {"n": 1} in heard and {"n": 4} in heard and {"n": 3} not in heard
    finally:
        listener.close()


def test_a_workers_own_pages_get_a_batch_without_waiting_for_the_queues_answer(relay: SilentRelay) -> None:
    """The batch is applied to this worker's own pages while Redis answers the PUBLISH: at once, even when
    the answer never comes (before, they waited for it, PUBLISH_TIMEOUT when Redis was silent)."""
    from cafe.web.fanout import PUBLISH_TIMEOUT

    manager = _publisher_through(relay)
    sent: list[float] = []
    manager.server._send_eio_packet = lambda eio_sid, pkt: sent.append(time.monotonic())
    manager.enter_room(manager.connect("eio-wall", "/"), "/", "wall")
    note = [("note_added", {"note": {"text": "Longer clinic hours"}}, "wall")]

    manager.fanout([], note, [])
    assert len(sent) == 1 and not manager._paused
    relay.hold()
    began = time.monotonic()
    manager.fanout([], note, [])
    ended = time.monotonic()
    assert manager._paused, "the publish to a silent queue did not fail: this test proves nothing"
    assert ended - began >= PUBLISH_TIMEOUT * 0.9
    assert len(sent) == 2 and sent[1] - began < PUBLISH_TIMEOUT / 2, "this worker's page waited for Redis"
    manager.fanout([], note, [])                                 # paused: applied here, not sent
    assert len(sent) == 3
    relay.release()
    assert wait_until(lambda: not manager._paused, 5)             # the probe got through

    def broken() -> None:
        raise RuntimeError("applying the batch here failed")

    relay.hold()                    # a publish whose local part fails is still answered for, or paused
    with pytest.raises(RuntimeError):
        manager._publish({"n": 1}, meanwhile=broken)
    assert manager._paused
    relay.release()
    assert wait_until(lambda: not manager._paused, 5)             # nothing left running


def test_once_the_listener_is_subscribed_again_a_paused_worker_publishes_at_once(
        relay: SilentRelay, private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    from cafe.web import fanout

    monkeypatch.setattr(fanout, "PROBE_FIRST", 60.0)         # the probe would try again only in a minute
    manager = _publisher_through(relay)
    relay.hold()
    assert manager._publish({"n": 1}) is None and manager._paused
    relay.release()
    time.sleep(0.5)                     # what the relay held reaches Redis while nobody listens
    listening = manager._redis_listen_with_retries()         # the listener's loop, driven here
    heard: list[Any] = []
    reader = threading.Thread(target=lambda: heard.append(next(listening)), daemon=True)
    reader.start()
    reader.join(10)
    try:
        assert heard, "the listener subscribed again but the worker still waits for its probe to publish"
        assert json.loads(heard[0]["data"]) == {"method": fanout.METHOD, "host_id": manager.host_id, "resync": True}
        assert not manager._paused
        assert manager._publish({"n": 2}) == 1
    finally:
        manager.pubsub.close()
