"""Two workers lose their message queue (Redis) for a while: nothing written meanwhile stays off the wall.

Two ``python wsgi.py`` processes (eventlet, as in production) share a fresh PostgreSQL schema and a Redis
server of this test's own (``redis-server`` on a free port, nothing on disk), so that it can be killed and
started again without touching the machine's Redis. A dashboard is on worker 2, phones on both workers.

- Redis is killed (SIGKILL, as in a crash) and started again: a note written on worker 1 meanwhile is
  stored and acknowledged but cannot reach the dashboard on worker 2; once the workers listen again, every
  page is sent ``resync``, the dashboard's whole snapshot holds the note, and notes cross live again.
- Redis refuses one worker's publishes while everyone stays subscribed (an ACL takes PUBLISH away from
  it for a moment): the note published then reaches no other worker; the worker's next successful publish
  tells the other worker's pages to resync.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
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
        before = room.write("Clean water at the market")
        assert wait_until(lambda: room.on_wall(before)), "a note did not cross while Redis ran"

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

        after = room.write("Longer clinic hours")            # and the queue carries notes again
        assert wait_until(lambda: room.on_wall(after)), "notes do not cross after Redis came back"
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
        assert not room.dashboard.of("resync")

        after = room.write("Street lights on the hill")         # the worker's next publish gets through
        assert wait_until(lambda: room.on_wall(after)), "the next note did not cross"
        assert wait_until(lambda: bool(room.dashboard.of("resync")) and bool(room.phones[1].of("resync")))
        assert lost in room.snapshot_notes()
        assert not room.phones[0].of("resync"), "the worker that lost its publish heard its own events"
    finally:
        room.close()
