"""Two worker processes serve one café, through Redis (Socket.IO message queue) and PostgreSQL.

Two ``python wsgi.py`` processes (eventlet, as in production) share one fresh PostgreSQL schema and one
Redis pub/sub channel (unique to this run, so concurrent runs never see each other's events). Phones,
a dashboard and two facilitator control views are python-socketio clients over websocket, spread over
both workers. Checked:

- ``round_start`` sent to worker 1 seats every phone on both workers exactly once (one ``seat_assigned``
  each, carrying the round's state, one seat row per participant in the database, one ``seating_changed``
  on the dashboard);
- a note written on a phone on worker 1 reaches the dashboard on worker 2 and the phones at the same
  table (on both workers), once each, and no phone at another table;
- ``round_pause`` sent to worker 2 reaches the phones on worker 1 (``cafe_state`` paused);
- two facilitator connections, one per worker, sending ``round_start`` at the same moment: exactly one
  succeeds, the other gets ``wrong_phase``, every phone gets one ``seat_assigned`` and the database
  holds one set of seats for that round (the café's row lock decides, not the worker).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import REDIS_URL, _make_app, require_service
from tests.fault_phones import KillableServer, close_dead_websocket

PHONES = 12                    # six per worker, joined in turn: phone i on worker i % 2
SEATS_PER_TABLE = 3            # four tables
SETTLE = 0.7                   # seconds to wait after the expected events for any duplicate to show up
WAIT = 15.0                    # upper bound on any single wait for an event


class Client:
    """A python-socketio client over websocket that records every event it receives."""

    def __init__(self, name: str, server: KillableServer, worker: int, auth: dict[str, Any] | None = None) -> None:
        self.name, self.server, self.worker, self.auth = name, server, worker, auth
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.participant_id: int | None = None
        self.sio = socketio.Client(reconnection=False, request_timeout=10)
        self.sio.on("*", self._record)
        self.sio.on("disconnect", lambda reason=None: close_dead_websocket(self.sio, reason))

    def _record(self, event: str, *args: Any) -> None:
        with self.lock:
            self.events.append((event, args[0] if args else None))

    def connect(self) -> Client:
        self.sio.connect(self.server.url, transports=["websocket"], auth=self.auth, wait_timeout=10)
        return self

    def call(self, event: str, data: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        answer = self.sio.call(event, data, timeout=timeout)
        assert isinstance(answer, dict), f"{self.name}: odd answer to {event}: {answer!r}"
        return answer

    def of(self, event: str, where: Callable[[Any], bool] = lambda _d: True) -> list[Any]:
        with self.lock:
            return [data for name, data in self.events if name == event and where(data)]

    def close(self) -> None:
        with contextlib.suppress(Exception):    # the server may be gone already
            self.sio.disconnect()

    def __repr__(self) -> str:
        return f"<{self.name} on worker {self.worker + 1}>"


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def close_all(clients: list[Client], timeout: float = 15.0) -> None:
    """Disconnect every client at once: one by one, a websocket close can wait seconds on gevent's server."""
    threads = [threading.Thread(target=c.close, name=f"close-{c.name}", daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def db_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(query, params).fetchall()]


def seat_counts(url: str, cafe_id: int, round_no: int) -> Counter[int]:
    rows = db_rows(url, "SELECT participant_id FROM seat WHERE cafe_id = %s AND round = %s", cafe_id, round_no)
    return Counter(pid for (pid,) in rows)


def facilitator_token(url: str) -> str:
    """A facilitator and an API token, made in-process against the workers' database."""
    from cafe.extensions import db
    from tests.conftest import Actions

    app = _make_app(url)
    try:
        actions = Actions(app)
        return actions.token(actions.facilitator())
    finally:
        app.extensions["cafe.committer"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@contextlib.contextmanager
def two_workers_on(message_queue: str, postgres_url: str, tmp_path: Path) -> Iterator[list[KillableServer]]:
    """Two ``python wsgi.py`` processes on one PostgreSQL database and one Redis channel of their own."""
    env = {"CAFE_SERVER": os.environ.get("CAFE_TWO_WORKERS_SERVER", "eventlet"),
           "MESSAGE_QUEUE": message_queue, "SOCKETIO_CHANNEL": f"cafe-test-{uuid.uuid4().hex}",
           "SECRET_KEY": "two-workers-test", "SEATING_TIME_LIMIT": "0.2"}
    servers = []
    for n in (1, 2):
        tmp = tmp_path / f"worker{n}"
        tmp.mkdir()
        servers.append(KillableServer(tmp, postgres_url, extra_env=env))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[list[KillableServer]]:
    require_service("Redis", "127.0.0.1", 6379)
    with two_workers_on(REDIS_URL, postgres_url, tmp_path) as servers:
        yield servers


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_two_workers_serve_one_cafe(workers: list[KillableServer], postgres_url: str) -> None:
    import requests

    began = time.monotonic()
    w1 = workers[0]
    token = facilitator_token(postgres_url)
    made = requests.post(f"{w1.url}/api/cafes", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                         json={"title": "Two workers", "questions": ["What would make this place healthier?"],
                               "rounds": 3, "round_minutes": 20, "seats_per_table": SEATS_PER_TABLE, "hosts": False})
    assert made.status_code == 201, made.text
    cafe_id, join_code = made.json()["id"], made.json()["join_code"]

    clients: list[Client] = []
    try:
        def facilitator(name: str, worker: int) -> Client:
            client = Client(name, workers[worker], worker, auth={"token": token}).connect()
            clients.append(client)
            joined = client.call("facilitator_join", {"cafe_id": cafe_id})
            assert joined["ok"], joined
            return client

        dashboard = facilitator("dashboard", 1)          # the projector, on worker 2
        control_1 = facilitator("control-1", 0)
        control_2 = facilitator("control-2", 1)
        phones: list[Client] = []
        for i in range(PHONES):
            phone = Client(f"phone-{i}", workers[i % 2], i % 2).connect()
            clients.append(phone)
            phones.append(phone)
            answer = phone.call("participant_join", {"join_code": join_code, "name": f"Phone {i}"})
            assert answer["ok"], answer
            phone.participant_id = answer["participant"]["id"]
        assert len({p.participant_id for p in phones}) == PHONES
        # Joins on either worker reach the dashboard on worker 2.
        assert wait_until(lambda: {d["participant"]["id"] for d in dashboard.of("participants_changed")}
                          >= {p.participant_id for p in phones}), "the dashboard missed a join"

        def check_round_seated(round_no: int, state_version: int) -> dict[int, list[Client]]:
            """Each phone got exactly one seat_assigned for the round; the database has one seat each."""
            assert wait_until(lambda: all(p.of("seat_assigned", lambda d: d["round"] == round_no) for p in phones)), \
                f"round {round_no}: phones without a seat: " \
                f"{[p for p in phones if not p.of('seat_assigned', lambda d: d['round'] == round_no)]}"
            assert wait_until(lambda: bool(dashboard.of("cafe_state", lambda d: d["version"] == state_version)))
            time.sleep(SETTLE)
            seats = {p: p.of("seat_assigned", lambda d: d["round"] == round_no) for p in phones}
            twice = {p: s for p, s in seats.items() if len(s) != 1}
            assert not twice, f"round {round_no}: a phone was seated more than once: {twice}"
            stored = seat_counts(postgres_url, cafe_id, round_no)
            assert stored == Counter({p.participant_id: 1 for p in phones}), \
                f"round {round_no}: seats in the database {stored}"
            table_of = dict(db_rows(postgres_url, "SELECT participant_id, \"table\" FROM seat "
                                                  "WHERE cafe_id = %s AND round = %s", cafe_id, round_no))
            assert all(table_of[p.participant_id] == s[0]["table"] for p, s in seats.items()), \
                "a phone was told another table than the database holds"
            changed = dashboard.of("seating_changed", lambda d: d["round"] == round_no)
            assert len(changed) == 1, f"round {round_no}: the dashboard got {len(changed)} seating_changed"
            # a seated phone has the round's state in its seat, and no second copy of it
            assert all(s[0]["state"]["phase"] == "round" and s[0]["state"]["round"] == round_no
                       and s[0]["version"] == s[0]["state"]["version"] == state_version for s in seats.values())
            extra = [p for p in phones if p.of("cafe_state", lambda d: d["version"] == state_version)]
            assert not extra, f"round {round_no}: seated phones also got the state alone: {extra}"
            tables: dict[int, list[Client]] = {}
            for phone, got in seats.items():
                tables.setdefault(got[0]["table"], []).append(phone)
            return tables

        def check_note(round_no: int, tables: dict[int, list[Client]]) -> None:
            """A note from a phone on worker 1 reaches the dashboard on worker 2 and its table only."""
            mixed = [t for t, members in sorted(tables.items())
                     if any(m.worker == 0 for m in members) and any(m.worker == 1 for m in members)]
            assert mixed, f"round {round_no}: no table has phones on both workers: {tables}"
            table = mixed[0]
            writer = next(m for m in tables[table] if m.worker == 0)
            client_id = str(uuid.uuid4())
            added = writer.call("note_add", {"client_id": client_id, "text": f"More shade in round {round_no}"})
            assert added["ok"] and not added["duplicate"], added
            assert added["note"]["table"] == table and added["note"]["round"] == round_no

            def got(client: Client) -> list[Any]:
                return client.of("note_added", lambda d: d["note"]["client_id"] == client_id)

            same_table = [m for m in tables[table] if m is not writer]
            assert any(m.worker == 1 for m in same_table)
            assert wait_until(lambda: got(dashboard) and all(got(m) for m in same_table)), \
                f"round {round_no}: note not delivered: dashboard {len(got(dashboard))}, " \
                f"table {[(m, len(got(m))) for m in same_table]}"
            time.sleep(SETTLE)
            assert len(got(dashboard)) == 1, f"the dashboard got the note {len(got(dashboard))} times"
            assert all(len(got(m)) == 1 for m in same_table), [(m, len(got(m))) for m in same_table]
            others = [p for t, members in tables.items() if t != table for p in members]
            leaked = [p for p in others if got(p)]
            assert not leaked, f"round {round_no}: phones at other tables got the note: {leaked}"
            stored = db_rows(postgres_url, "SELECT participant_id, round, \"table\" FROM note WHERE client_id = %s",
                             client_id)
            assert stored == [(writer.participant_id, round_no, table)], stored

        # -- round 1, started on worker 1 ----------------------------------------------------------------
        started = control_1.call("round_start", {"cafe_id": cafe_id})
        assert started["ok"], started
        assert started["state"]["round"] == 1 and started["state"]["phase"] == "round"
        tables_1 = check_round_seated(1, started["state"]["version"])
        check_note(1, tables_1)

        # -- pause on worker 2 reaches the phones on worker 1 --------------------------------------------
        paused = control_2.call("round_pause", {"cafe_id": cafe_id})
        assert paused["ok"] and paused["state"]["paused"], paused
        version = paused["state"]["version"]

        def saw_pause(client: Client) -> bool:
            return bool(client.of("cafe_state", lambda d: d["version"] == version and d["paused"]))

        assert wait_until(lambda: all(saw_pause(p) for p in phones if p.worker == 0)), \
            f"phones on worker 1 missed the pause: {[p for p in phones if p.worker == 0 and not saw_pause(p)]}"
        assert wait_until(lambda: all(saw_pause(c) for c in phones + [dashboard, control_1]))
        assert control_1.call("round_resume", {"cafe_id": cafe_id})["ok"]
        ended = control_2.call("round_end", {"cafe_id": cafe_id})
        assert ended["ok"], ended
        assert wait_until(lambda: all(p.of("cafe_state", lambda d: d["phase"] == "break") for p in phones))

        # -- round 2: both workers are told to start it at the same moment --------------------------------
        barrier = threading.Barrier(2, timeout=10)
        answers: dict[str, Any] = {}

        def race(control: Client) -> None:
            try:
                barrier.wait()
                answers[control.name] = control.call("round_start", {"cafe_id": cafe_id}, timeout=30)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                answers[control.name] = exc

        threads = [threading.Thread(target=race, args=(c,), name=f"race-{c.name}") for c in (control_1, control_2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
        assert not any(t.is_alive() for t in threads), "a round_start never came back"
        assert all(isinstance(a, dict) for a in answers.values()), answers
        winners = [a for a in answers.values() if a["ok"]]
        losers = [a for a in answers.values() if not a["ok"]]
        assert len(winners) == 1 and len(losers) == 1, f"both or neither started the round: {answers}"
        assert losers[0]["error"]["code"] == "wrong_phase", losers[0]
        assert winners[0]["state"]["round"] == 2
        tables_2 = check_round_seated(2, winners[0]["state"]["version"])
        assert sum(seat_counts(postgres_url, cafe_id, 2).values()) == PHONES
        assert sum(seat_counts(postgres_url, cafe_id, 3).values()) == 0
        check_note(2, tables_2)

        elapsed = time.monotonic() - began
        print(f"\ntwo workers: {PHONES} phones, rounds 1 and 2 seated once, notes and pause across workers, "
              f"race answers {[a['ok'] for a in answers.values()]}, {elapsed:.1f}s")
    finally:
        close_all(clients)
    for server in workers:
        server.stop()
        log = server.tail(200_000)
        assert "Traceback" not in log, log[-3000:]
