"""The group committer: operations that fail together in bulk are run again one by one, nothing of the
failed bulk attempt stays in the database, and every operation's events are published once, in order."""
from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy.orm import Session

from cafe.services.batching import GroupCommitter
from cafe.services.events import Outbox, RecordingPublisher
from tests.conftest import Actions, both_databases


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


@both_databases
def test_a_note_alone_in_its_batch_takes_the_few_statements_of_the_bulk_path(actions: Actions) -> None:
    """Most batches hold a single note when the room is quiet: it must not pay for a savepoint and the
    one-by-one path's ten queries."""
    from sqlalchemy import event

    from cafe.extensions import db

    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, answer = actions.phone(cafe["join_code"])
    assert answer["ok"], answer
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    with actions.app.app_context():
        engine = db.engine
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        answer = phone.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "More buses at night"}, callback=True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert answer["ok"], answer
    assert "SAVEPOINT" not in statements, statements
    assert len(statements) <= 4, statements
