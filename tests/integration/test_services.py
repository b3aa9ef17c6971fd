"""Services with a fixed clock and a recording publisher: events go out after the commit, never before,
and nothing is published for a change that did not happen."""
from __future__ import annotations

from typing import Any

import pytest

from cafe.services.errors import ServiceError
from cafe.services.events import RecordingPublisher
from tests.conftest import Actions

NOW = 1_800_000_000.0


def test_clock_changes_publish_exact_state_after_commit(actions: Actions) -> None:
    from cafe.domain.protocol import ParticipantJoin
    from cafe.extensions import db
    from cafe.models import Cafe
    from cafe.services import participants, rounds

    fac = actions.facilitator()
    cafe = actions.cafe(fac, round_minutes=10, seats_per_table=2, hosts=False)
    publisher = RecordingPublisher()
    with actions.app.app_context():
        for _ in range(4):
            participants.join(ParticipantJoin(join_code=cafe["join_code"]), None, NOW, publisher)
        publisher.emitted.clear()
        started = rounds.start_round(fac, cafe["id"], NOW, publisher, grace=600, time_limit=0.05)
        assert started["state"]["ends_at"] == NOW + 600
        # what was published is what was committed: reread from a fresh session
        db.session.remove()
        stored = db.session.get(Cafe, cafe["id"])
        assert stored.phase == "round" and stored.round_started_at == NOW
        states = publisher.events("cafe_state")
        assert len(states) == 1 and states[0]["version"] == stored.version
        seats = publisher.events("seat_assigned")
        assert len(seats) == 4 and all(s["state"] == states[0] and s["version"] == stored.version for s in seats)
        publisher.emitted.clear()
        paused = rounds.pause(fac, cafe["id"], NOW + 100, publisher)
        assert paused["state"]["paused"] and paused["state"]["remaining"] == 500
        resumed = rounds.resume(fac, cafe["id"], NOW + 400, publisher)
        assert resumed["state"]["ends_at"] == NOW + 900            # 300 s paused are added back
        extended = rounds.extend(fac, cafe["id"], 60, NOW + 400, publisher)
        assert extended["state"]["ends_at"] == NOW + 960
        # while paused, ends_at reads "as if resumed now" (docs/protocol.md)
        assert [s["ends_at"] for s in publisher.events("cafe_state")] == [NOW + 600, NOW + 900, NOW + 960]


def test_a_round_start_tells_each_seated_phone_its_seat_and_the_state_in_one_message(actions: Actions) -> None:
    """Seated phones get ``seat_assigned`` carrying the state; the state alone goes to the facilitators
    and to everyone not seated (here one who left the room longer ago than the grace period)."""
    from sqlalchemy import update

    from cafe.domain.protocol import ParticipantJoin
    from cafe.extensions import db
    from cafe.models import Participant
    from cafe.services import participants, rounds
    from cafe.services.events import facilitators_room, participant_room

    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
    publisher = RecordingPublisher()
    with actions.app.app_context():
        away = participants.join(ParticipantJoin(join_code=cafe["join_code"]), None, NOW - 1000, publisher)
        db.session.execute(update(Participant).where(Participant.id == away.participant.id)
                           .values(connected=False))       # gone since NOW - 1000, beyond the grace period
        db.session.commit()
        here = [participants.join(ParticipantJoin(join_code=cafe["join_code"]), None, NOW, publisher)
                for _ in range(3)]
        publisher.emitted.clear()
        rounds.start_round(fac, cafe["id"], NOW, publisher, grace=600, time_limit=0.05)
    seats = [(data, to) for event, data, to in publisher.emitted if event == "seat_assigned"]
    assert sorted(to for _, to in seats) == sorted(participant_room(j.participant.id) for j in here)
    states = [(data, to) for event, data, to in publisher.emitted if event == "cafe_state"]
    assert len(states) == 1
    state, rooms = states[0]
    assert sorted(rooms) == sorted([facilitators_room(cafe["id"]), participant_room(away.participant.id)])
    assert state["phase"] == "round" and state["round"] == 1
    assert all(data["state"] == state and data["version"] == state["version"] and data["round"] == 1
               for data, _ in seats)


def test_a_refused_change_publishes_nothing(actions: Actions) -> None:
    from cafe.services import rounds

    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    publisher = RecordingPublisher()
    with actions.app.app_context():
        with pytest.raises(ServiceError) as err:
            rounds.start_round(fac, cafe["id"], NOW, publisher, grace=600, time_limit=0.05)
        assert err.value.code == "nobody_here"
        with pytest.raises(ServiceError):
            rounds.pause(fac, cafe["id"], NOW, publisher)
    assert publisher.emitted == [] and publisher.moved == []


def test_a_failed_commit_publishes_nothing(actions: Actions, monkeypatch: Any) -> None:
    from cafe.domain.protocol import ParticipantJoin
    from cafe.extensions import db
    from cafe.services import participants, rounds

    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
    publisher = RecordingPublisher()
    with actions.app.app_context():
        participants.join(ParticipantJoin(join_code=cafe["join_code"]), None, NOW, publisher)
        publisher.emitted.clear()

        def broken_commit() -> None:
            raise RuntimeError("the database went away")
        monkeypatch.setattr(db.session, "commit", broken_commit)
        with pytest.raises(RuntimeError):
            rounds.start_round(fac, cafe["id"], NOW, publisher, grace=600, time_limit=0.05)
    assert publisher.emitted == []


def test_a_phone_back_while_a_round_starts_enters_the_new_table_room(postgres_url: str, monkeypatch: Any) -> None:
    """A phone reconnects (a new connection id) at the moment the next round's seats are being written.
    The round start read everyone's connection before the phone came back, so only the phone's own join
    can put the new connection in the new table's room: it must wait for the round start to commit and
    not stay in last round's room (PostgreSQL: the join's one statement takes the café's row ``FOR KEY
    SHARE``, and its answer, read after, moves the connection to the seat the round start wrote)."""
    import contextlib
    import threading

    from sqlalchemy import select

    from cafe.domain.protocol import ParticipantJoin
    from cafe.extensions import db
    from cafe.models import Seat
    from cafe.services import participants, rounds
    from cafe.services.events import table_room
    from tests.conftest import _app_for

    for app in _app_for(postgres_url):
        actions = Actions(app)
        fac = actions.facilitator()
        cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
        publisher = RecordingPublisher()
        with app.app_context():
            joined = [participants.join(ParticipantJoin(join_code=cafe["join_code"]), f"old-{i}", NOW, publisher)
                      for i in range(6)]
            rounds.start_round(fac, cafe["id"], NOW, publisher, grace=600, time_limit=0.05)
            rounds.end_round(fac, cafe["id"], NOW + 60, publisher)
            person_id, token = joined[0].participant.id, joined[0].rejoin_token
        seats_written, go = threading.Event(), threading.Event()
        real_seats_written = rounds._seats_written

        @contextlib.contextmanager
        def slow_seats_written(rows: Any, spawn: Any) -> Any:
            with real_seats_written(rows, spawn):
                yield
            seats_written.set()                 # the café is locked for update until the commit
            go.wait(10)

        monkeypatch.setattr(rounds, "_seats_written", slow_seats_written)
        errors: list[BaseException] = []

        def in_app(fn: Any) -> Any:
            def run() -> None:
                with app.app_context():
                    try:
                        fn()
                    except BaseException as exc:  # noqa: BLE001 - reported by the test
                        errors.append(exc)
                    finally:
                        db.session.remove()
            return threading.Thread(target=run)

        start = in_app(lambda: rounds.start_round(fac, cafe["id"], NOW + 90, publisher, grace=600,
                                                  time_limit=0.05))
        back = in_app(lambda: participants.join(ParticipantJoin(join_code=cafe["join_code"], rejoin_token=token),
                                                "new-0", NOW + 90, publisher))
        start.start()
        assert seats_written.wait(10)
        back.start()
        back.join(0.5)
        waited = back.is_alive()                # still waiting for the round start's commit
        go.set()
        start.join(10)
        back.join(10)
        assert not errors, errors
        with app.app_context():
            table = db.session.scalar(select(Seat.table).where(Seat.cafe_id == cafe["id"], Seat.round == 2,
                                                               Seat.participant_id == person_id))
        rooms: set[str] = set()
        for sid, leave, enter in publisher.moved:
            if sid == "new-0":
                rooms = (rooms - set(leave)) | set(enter)
        assert table_room(cafe["id"], 2, table) in rooms, (rooms, table)
        last_round = table_room(cafe["id"], 1, 0).rsplit(":t", 1)[0] + ":t"
        assert not [r for r in rooms if r.startswith(last_round)], rooms
        assert waited
