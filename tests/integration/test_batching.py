"""The group committer: operations that fail together in bulk are run again one by one, nothing of the
failed bulk attempt stays in the database, and every operation's events are published once, in order."""
from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy.orm import Session

from cafe.services.batching import GroupCommitter
from cafe.services.events import Outbox, RecordingPublisher
from tests.conftest import Actions, both_databases, statements_run


class _Bump:
    """Adds one to the café's version; in bulk, adds to it and then fails (a bug in a bulk path)."""

    bulk_calls = 0

    def __init__(self, cafe_id: int, n: int) -> None:
        self.cafe_id, self.n = cafe_id, n

    def __call__(self, session: Session, outbox: Outbox) -> int:
        from cafe.services.cafes import bump_version

        version = bump_version(session, self.cafe_id)
        outbox.emit("bumped", {"n": self.n, "version": version}, "room")
        return version

    @staticmethod
    def bulk(session: Session, ops: list["_Bump"], outboxes: list[Outbox]) -> list[Any]:
        from cafe.services.cafes import bump_version

        _Bump.bulk_calls += 1
        bump_version(session, ops[0].cafe_id, by=1000)      # must not survive the failure
        raise RuntimeError("bulk path broken")


@both_databases
def test_a_failed_bulk_is_rolled_back_and_run_one_by_one(actions: Actions) -> None:
    from cafe.extensions import db
    from cafe.models import Cafe

    fac = actions.facilitator()
    cafe_id = actions.cafe(fac)["id"]
    with actions.app.app_context():
        before = db.session.get(Cafe, cafe_id).version
        db.session.remove()
    publisher = RecordingPublisher()
    committer = GroupCommitter(actions.app, actions.app.extensions["socketio"], publisher, window=0.5, max_batch=50)
    _Bump.bulk_calls = 0
    results: dict[int, Any] = {}
    gate = threading.Barrier(6)

    def submit(n: int) -> None:
        gate.wait()
        results[n] = committer.submit(_Bump(cafe_id, n))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    committer.stop()
    assert _Bump.bulk_calls >= 1                       # the batch did try the bulk path
    assert sorted(results) == list(range(6))
    with actions.app.app_context():
        after = db.session.get(Cafe, cafe_id).version
    assert after == before + 6                         # the failed bulk's +1000 is gone
    assert sorted(results.values()) == list(range(before + 1, before + 7))
    events = publisher.events("bumped")
    assert sorted(e["n"] for e in events) == list(range(6))
    assert [e["version"] for e in events] == sorted(e["version"] for e in events)


def _seated(actions: Actions) -> tuple[Any, int, int]:
    """A phone seated in a running round; with its café's id and its participant id."""
    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, answer = actions.phone(cafe["join_code"])
    assert answer["ok"], answer
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    return phone, cafe["id"], answer["participant"]["id"]


def _seated_phone(actions: Actions) -> Any:
    return _seated(actions)[0]


def _note(phone: Any, client_id: str | None = None) -> dict[str, Any]:
    return phone.emit("note_add", {"client_id": client_id or str(uuid.uuid4()), "text": "More buses at night"},
                      callback=True)


@both_databases
def test_a_note_alone_in_its_batch_takes_the_few_statements_of_the_bulk_path(actions: Actions) -> None:
    """Most batches hold a single note when the room is quiet: it must not pay for a savepoint and the
    one-by-one path's ten queries."""
    from cafe.extensions import db

    phone = _seated_phone(actions)
    with actions.app.app_context():
        engine = db.engine
    with statements_run(engine) as run:
        answer = _note(phone)
    statements = [statement.split()[0].upper() for statement, _parameters in run]
    assert answer["ok"], answer
    assert "SAVEPOINT" not in statements, statements
    assert len(statements) <= 4, statements


@both_databases
def test_the_writer_keeps_one_connection_between_batches_and_gives_it_back_when_quiet(
        actions: Actions, monkeypatch: Any) -> None:
    """Taking a connection from the pool for every batch cost a ping and a rollback, two round trips the
    whole batch waited for: the writer keeps its own while notes keep coming, and hands it back after a
    quiet spell (so a connection the database dropped meanwhile is never used) and when stopped."""
    import time

    from sqlalchemy import event

    from cafe.extensions import db
    from cafe.services import batching

    monkeypatch.setattr(batching, "IDLE_RECONNECT", 0.3)
    phone = _seated_phone(actions)
    with actions.app.app_context():
        engine = db.engine
    inserts: list[tuple[int, int]] = []           # (thread, DB-API connection) of each note's INSERT
    pool_events: list[tuple[str, int, float]] = []

    def on_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO NOTE " in statement.upper():
            inserts.append((threading.get_ident(), id(conn.connection.dbapi_connection)))

    def on_checkout(*args: Any) -> None:
        pool_events.append(("checkout", threading.get_ident(), time.monotonic()))

    def on_checkin(*args: Any) -> None:
        pool_events.append(("checkin", threading.get_ident(), time.monotonic()))

    event.listen(engine, "before_cursor_execute", on_insert)
    event.listen(engine.pool, "checkout", on_checkout)
    event.listen(engine.pool, "checkin", on_checkin)
    try:
        first = _note(phone)
        started = time.monotonic()
        for _ in range(9):
            assert _note(phone)["ok"]
        finished = time.monotonic()
        assert first["ok"], first
        writer = inserts[0][0]
        assert len(inserts) == 10 and len(set(inserts)) == 1, inserts      # one thread, one connection
        assert not [e for e in pool_events if e[1] == writer and started <= e[2] <= finished], pool_events
        deadline = time.monotonic() + 5
        while not [e for e in pool_events if e[:2] == ("checkin", writer)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e for e in pool_events if e[:2] == ("checkin", writer)], "the writer kept its connection"
        assert _note(phone)["ok"]                                        # and takes one again when needed
        assert len({c for _, c in inserts}) <= 2
    finally:
        event.remove(engine, "before_cursor_execute", on_insert)
        event.remove(engine.pool, "checkout", on_checkout)
        event.remove(engine.pool, "checkin", on_checkin)
    actions.app.extensions["cafe.committer"].stop()
    assert engine.pool.checkedout() == 0


def test_a_writer_connection_the_database_dropped_costs_one_retry_and_loses_nothing(
        postgres_url: str) -> None:
    """PostgreSQL ends the writer's connection between two batches (a restart, an administrator): the next
    batch fails and is answered "try again" (never "saved"), the one after runs on a fresh connection, and
    every note the phone was told was saved is in the database exactly once."""
    import psycopg
    from sqlalchemy import event, func, select

    from cafe.extensions import db
    from cafe.models import Note
    from tests.conftest import _app_for

    for app in _app_for(postgres_url):
        actions = Actions(app)
        phone = _seated_phone(actions)
        with app.app_context():
            engine = db.engine
        pids: list[int] = []

        def on_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "INSERT INTO NOTE " in statement.upper():
                pids.append(conn.connection.dbapi_connection.info.backend_pid)

        event.listen(engine, "before_cursor_execute", on_insert)
        try:
            assert _note(phone)["ok"]
            with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as admin:
                assert admin.execute("SELECT pg_terminate_backend(%s)", (pids[-1],)).fetchone()[0]
            client_id = str(uuid.uuid4())
            answers = [_note(phone, client_id) for _ in range(2)]     # the phone resends the same note
        finally:
            event.remove(engine, "before_cursor_execute", on_insert)
        assert answers[-1]["ok"], answers
        if not answers[0]["ok"]:
            assert answers[0]["error"]["code"] == "storage_unavailable", answers[0]
        with app.app_context():
            count = db.session.scalar(select(func.count()).select_from(Note).where(Note.client_id == client_id))
        assert count == 1


def test_on_postgresql_a_batch_of_notes_is_checked_and_written_in_one_statement_outside_a_transaction(
        pg_app: Any) -> None:
    """PostgreSQL: a batch of notes makes one round trip (a statement that checks, numbers and inserts them
    and commits itself) where a transaction made five, and the café's row is locked only while that
    statement runs, never across a round trip that another worker's batch would wait for."""
    from sqlalchemy import event

    from cafe.extensions import db
    from cafe.services.batching import _PLAN_ONCE

    actions = Actions(pg_app)
    phone = _seated_phone(actions)
    with pg_app.app_context():
        engine = db.engine
    statements: list[tuple[str, bool]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement != _PLAN_ONCE:          # the writer's settings, once when it takes its connection
            statements.append((statement.split()[0].upper(), conn.connection.dbapi_connection.autocommit))

    event.listen(engine, "before_cursor_execute", record)
    try:
        answer = _note(phone)
        again = _note(phone)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert answer["ok"] and again["ok"], (answer, again)
    assert again["note"]["version"] == answer["note"]["version"] + 1
    assert statements == [("WITH", True)] * 2, statements


def _while_a_transaction_holds(postgres_url: str, change: str, phone: Any, client_id: str,
                               **params: Any) -> dict[str, Any]:
    """Send a note while another connection's transaction has made ``change`` and not yet committed (as
    another worker, or the facilitator ending the round, might): the note's statement reads a snapshot
    without the change and waits for that transaction's lock; the transaction then commits."""
    import time

    import psycopg

    answers: list[dict[str, Any]] = []
    with psycopg.connect(postgres_url) as other:
        other.execute(change, params)
        sender = threading.Thread(target=lambda: answers.append(_note(phone, client_id)))
        sender.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not other.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
            time.sleep(0.02)
        waited = other.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
        other.commit()
    sender.join(10)
    assert waited, "the note's statement did not wait for the other transaction"
    return answers[0]


def _version(app: Any, cafe_id: int) -> int:
    from cafe.extensions import db
    from cafe.models import Cafe

    with app.app_context():
        version = db.session.get(Cafe, cafe_id).version
        db.session.remove()
    return version


def test_on_postgresql_a_note_sent_as_its_round_ends_is_refused_not_stored(pg_app: Any, postgres_url: str) -> None:
    from sqlalchemy import func, select

    from cafe.extensions import db
    from cafe.models import Note

    phone, cafe_id, _ = _seated(Actions(pg_app))
    before = _version(pg_app, cafe_id)
    client_id = str(uuid.uuid4())
    answer = _while_a_transaction_holds(postgres_url, "UPDATE cafe SET phase = 'break' WHERE id = %(id)s", phone,
                                        client_id, id=cafe_id)
    assert not answer["ok"] and answer["error"]["code"] == "wrong_phase", answer
    assert _version(pg_app, cafe_id) == before
    with pg_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note).where(Note.client_id == client_id)) == 0


def test_on_postgresql_a_note_another_worker_is_storing_at_the_same_moment_is_stored_and_answered_once(
        pg_app: Any, postgres_url: str) -> None:
    """The same note from a second tab, handled by another worker at the same moment: the statement that
    would store it again fails on the unique client id and writes nothing (not even the version); the note
    goes through the transaction, which answers with the stored note."""
    from sqlalchemy import select

    from cafe.extensions import db
    from cafe.models import Note

    phone, cafe_id, person_id = _seated(Actions(pg_app))
    before = _version(pg_app, cafe_id)
    client_id = str(uuid.uuid4())
    answer = _while_a_transaction_holds(
        postgres_url, "INSERT INTO note (cafe_id, participant_id, client_id, round, \"table\", text, created_at, "
        "updated_at, version, hidden, scribed) VALUES (%(cafe)s, %(person)s, %(client)s, 1, 1, "
        "'More buses at night', 0, 0, %(version)s, false, false)", phone, client_id, cafe=cafe_id,
        person=person_id, client=client_id, version=before)
    assert answer["ok"] and answer["duplicate"], answer
    assert _version(pg_app, cafe_id) == before
    with pg_app.app_context():
        stored = db.session.scalars(select(Note).where(Note.client_id == client_id)).all()
    assert [n.id for n in stored] == [answer["note"]["id"]]


@both_databases
def test_one_batch_of_notes_answers_each_writer_by_the_rules(actions: Actions) -> None:
    """Many notes in one batch (on PostgreSQL: the single statement; on SQLite: the transaction): new ones are
    numbered in order, a note sent twice in the batch or sent again later is stored once, and a writer who
    has not joined, or has no table yet, is told so; nothing else is written."""
    from sqlalchemy import event, func, select

    from cafe.domain.protocol import NoteAdd
    from cafe.extensions import db
    from cafe.models import Note
    from cafe.services import notes

    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    dash = actions.facilitator_socket(fac, cafe["id"])
    people = [actions.phone(cafe["join_code"])[1]["participant"]["id"] for _ in range(2)]
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    late = actions.phone(cafe["join_code"])[1]["participant"]["id"]      # joined during the round: no table
    committer = GroupCommitter(actions.app, actions.app.extensions["socketio"], RecordingPublisher(), window=0.5,
                               max_batch=50)
    again = str(uuid.uuid4())
    assert notes.add(committer, people[0], NoteAdd(client_id=again, text="sent before"), 1.0)["duplicate"] is False
    before = _version(actions.app, cafe["id"])
    twice = str(uuid.uuid4())
    batch = [(people[0], str(uuid.uuid4())), (people[1], twice), (people[1], twice), (people[0], again),
             (10**6, str(uuid.uuid4())), (late, str(uuid.uuid4())), (people[1], str(uuid.uuid4()))]
    answers: dict[int, Any] = {}
    gate = threading.Barrier(len(batch))

    def submit(n: int, person: int, client_id: str) -> None:
        gate.wait()
        try:
            answers[n] = notes.add(committer, person, NoteAdd(client_id=client_id, text=f"note {n}"), 2.0)
        except Exception as exc:  # noqa: BLE001 - the service's refusals are what is checked
            answers[n] = exc

    with actions.app.app_context():
        engine = db.engine
    inserts: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO note" in statement:
            inserts.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    threads = [threading.Thread(target=submit, args=(n, p, c)) for n, (p, c) in enumerate(batch)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    committer.stop()
    assert committer.batches == 2, committer.batches                 # the note sent before, then the rest
    if engine.dialect.name == "postgresql":
        # the new notes were written by the single statement, not by the transaction after it failed (the
        # transaction's insert is a plain INSERT)
        assert inserts == ["WITH"], inserts
    assert answers[1]["note"]["id"] == answers[2]["note"]["id"]             # the same note sent twice at once
    assert sorted([answers[1]["duplicate"], answers[2]["duplicate"]]) == [False, True]
    new = [answers[0], answers[6], answers[1] if not answers[1]["duplicate"] else answers[2]]
    assert sorted(a["note"]["version"] for a in new) == [before + 1, before + 2, before + 3]
    assert answers[3]["duplicate"] and answers[3]["note"]["text"] == "sent before"
    assert getattr(answers[4], "code", None) == "not_joined", answers[4]
    assert getattr(answers[5], "code", None) == "no_seat", answers[5]
    assert _version(actions.app, cafe["id"]) == before + 3
    with actions.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Note).where(Note.cafe_id == cafe["id"])) == 4


def test_on_postgresql_the_writer_plans_each_statement_once_using_the_indexes(pg_app: Any) -> None:
    """Planning the note statement each time cost three times running it; a plan kept by PostgreSQL's own
    choice, made while the café's tables were empty, read the whole note table at every later note. The
    writer's connection keeps one plan per statement, made with sequential reads ruled out, and gives the
    connection back to the pool as it found it."""
    actions = Actions(pg_app)
    phone = _seated_phone(actions)
    for _ in range(12):                      # from an empty note table; psycopg prepares from the 6th use
        assert _note(phone)["ok"]
    committer = pg_app.extensions["cafe.committer"]
    writer = committer._connection.connection.dbapi_connection

    def ask(sql: str) -> list[Any]:
        rows = writer.execute(sql).fetchall()
        writer.commit()                      # (a rollback would make psycopg forget its prepared statements)
        return rows

    assert ask("SHOW plan_cache_mode") == [("force_generic_plan",)]
    assert ask("SHOW enable_seqscan") == [("off",)]
    prepared = ask("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements "
                   "WHERE statement LIKE '%WITH req AS%'")
    assert len(prepared) == 1 and prepared[0][1] >= 1 and prepared[0][2] == 0, prepared
    plan = "\n".join(r[0] for r in ask(
        f"EXPLAIN EXECUTE {prepared[0][0]}(ARRAY[1], ARRAY['x']::varchar[], ARRAY['t'], "
        "ARRAY[NULL]::varchar[], ARRAY[1.0]::float8[])"))
    assert "Seq Scan on note" not in plan and "note_participant_id_client_id" in plan, plan

    committer._release()                     # as after a quiet spell: back to the pool, as it was
    assert ask("SHOW plan_cache_mode") == [("auto",)]
    assert ask("SHOW enable_seqscan") == [("on",)]
    assert ask("SELECT count(*) FROM pg_prepared_statements") == [(0,)]
    assert _note(phone)["ok"]                # and the next note takes a connection again
