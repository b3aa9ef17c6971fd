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
        assert len(publisher.events("seat_assigned")) == 4
        publisher.emitted.clear()
        paused = rounds.pause(fac, cafe["id"], NOW + 100, publisher)
        assert paused["state"]["paused"] and paused["state"]["remaining"] == 500
        resumed = rounds.resume(fac, cafe["id"], NOW + 400, publisher)
        assert resumed["state"]["ends_at"] == NOW + 900            # 300 s paused are added back
        extended = rounds.extend(fac, cafe["id"], 60, NOW + 400, publisher)
        assert extended["state"]["ends_at"] == NOW + 960
        # while paused, ends_at reads "as if resumed now" (docs/protocol.md)
        assert [s["ends_at"] for s in publisher.events("cafe_state")] == [NOW + 600, NOW + 900, NOW + 960]


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
