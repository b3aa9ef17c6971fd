"""Starting a round on PostgreSQL: the round's messages are made while the database writes the seats, and
nothing of a round whose seats could not be written reaches anyone."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from cafe.services.events import RecordingPublisher
from tests.conftest import Actions
from tests.integration.test_two_workers import wait_until

NOW = 1_800_000_000.0


def _threads(fn: Callable[[], None]) -> threading.Thread:
    """The spawner of the threading server (cafe.web.context.spawner): a task of its own, running at once."""
    task = threading.Thread(target=fn)
    task.start()
    return task


class _PreparingPublisher(RecordingPublisher):
    """A recording publisher that, like the app's, prepares a batch before the commit: calls ``when_preparing``
    then."""

    def __init__(self, when_preparing: Callable[[], None]) -> None:
        super().__init__()
        self.when_preparing = when_preparing

    def prepare_many(self, moves: Any, emits: Any, disconnects: Any) -> Callable[[], None]:
        self.when_preparing()
        return lambda: self.publish_many(moves, emits, disconnects)


def _cafe_with_people(actions: Actions, people: int) -> tuple[int, int, list[int]]:
    from cafe.domain.protocol import ParticipantJoin
    from cafe.services import participants

    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=4, hosts=False)
    with actions.app.app_context():
        ids = [participants.join(ParticipantJoin(join_code=cafe["join_code"]), f"sid-{i}", NOW,
                                 RecordingPublisher()).participant.id for i in range(people)]
    return fac, cafe["id"], ids


def test_the_round_messages_are_made_while_the_database_writes_the_seats(pg_app: Any, postgres_url: str) -> None:
    """Another transaction holds one participant's row, so the seats' statement waits in its key check. The
    messages must be made (the publisher asked to prepare them) while that statement is in flight; the test
    then lets it through, and the round starts with every seat written and announced once. Before, the messages
    were made after the seats were written: the publisher was asked only once the blocker gave up (after 3 s)."""
    import psycopg
    from sqlalchemy import func, select

    from cafe.extensions import db
    from cafe.models import Seat
    from cafe.services import rounds

    actions = Actions(pg_app)
    fac, cafe_id, ids = _cafe_with_people(actions, 12)
    plain_url = postgres_url.split("?")[0]
    blocker = psycopg.connect(postgres_url)          # in the test's schema
    blocker.execute("SELECT id FROM participant WHERE id = %s FOR UPDATE", (ids[0],))
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            blocker.rollback()

    timer = threading.Timer(3.0, release)       # without the overlap nothing else would ever let it through
    timer.start()
    seen: list[Any] = []

    def when_preparing() -> None:
        with psycopg.connect(plain_url, autocommit=True) as observer:
            def waiting() -> list[Any]:
                return observer.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE query LIKE 'INSERT INTO seat%%' "
                    "AND state = 'active'").fetchall()
            # the statement may take a moment to reach the lock
            wait_until(lambda: waiting() == [("Lock",)], timeout=2.0, step=0.01)
            seen.append(waiting())
        release()

    publisher = _PreparingPublisher(when_preparing)
    try:
        with pg_app.app_context():
            started = time.monotonic()
            rounds.start_round(fac, cafe_id, NOW, publisher, grace=600, time_limit=0.05, spawn=_threads)
            took = time.monotonic() - started
            db.session.remove()
            written = db.session.scalar(select(func.count()).select_from(Seat).where(Seat.cafe_id == cafe_id))
    finally:
        timer.cancel()
        release()
        blocker.close()
    assert seen == [[("Lock",)]], seen                 # the seats' statement was waiting on the held row
    assert took < 2.5, took
    assert written == 12
    assert len(publisher.events("seat_assigned")) == 12


def test_a_round_whose_seats_cannot_be_written_starts_for_nobody(pg_app: Any, monkeypatch: Any) -> None:
    """The seats' statement fails in its task: the failure reaches the facilitator, the café is still in the
    lobby, no seat was written and nobody was told anything; the next start works."""
    from sqlalchemy import func, select

    from cafe.extensions import db
    from cafe.models import Cafe, Seat
    from cafe.services import rounds

    actions = Actions(pg_app)
    fac, cafe_id, _ids = _cafe_with_people(actions, 8)
    publisher = RecordingPublisher()
    monkeypatch.setattr(rounds, "_SEATS_FROM_ARRAYS", rounds._SEATS_FROM_ARRAYS.replace("unnest", "no_such_function"))
    with pg_app.app_context():
        try:
            rounds.start_round(fac, cafe_id, NOW, publisher, grace=600, time_limit=0.05, spawn=_threads)
        except Exception as exc:               # noqa: BLE001 - the database's own error
            failure: Exception | None = exc
        else:
            failure = None
        db.session.remove()
        assert failure is not None and "no_such_function" in str(failure)
        assert db.session.get(Cafe, cafe_id).phase == "lobby"
        assert db.session.scalar(select(func.count()).select_from(Seat).where(Seat.cafe_id == cafe_id)) == 0
        db.session.remove()
    assert publisher.emitted == [] and publisher.moved == []
    monkeypatch.undo()
    with pg_app.app_context():
        rounds.start_round(fac, cafe_id, NOW, publisher, grace=600, time_limit=0.05, spawn=_threads)
    assert len(publisher.events("seat_assigned")) == 8
