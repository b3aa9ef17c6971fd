"""Every socket event, fed random and malformed payloads from every role: each gets a clear answer, the
server stays up, and the database changes only through commands that were accepted."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Actions

EVENTS = ["participant_join", "participant_leave", "note_add", "note_edit", "note_delete", "vote_set",
          "facilitator_join", "round_start", "round_pause", "round_resume", "round_extend", "round_end",
          "cafe_end", "joins_close", "joins_open", "seating_preview", "participant_remove", "harvest_start",
          "themes_propose", "theme_rename", "theme_add", "theme_merge", "note_move", "theme_split", "note_hide",
          "voting_open", "tally_show", "voting_close", "no_such_event", "connect", "disconnect", "message"]

KEYS = ["cafe_id", "note_id", "theme_id", "into_id", "participant_id", "text", "label", "client_id", "join_code",
        "name", "language", "rejoin_token", "since_version", "seconds", "votes", "note_ids", "hidden", "show",
        "budget", "stacking", "show_tally", "confirm", "lang"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
           | st.sampled_from(["", " ", "\u0000", "\ud7ff" * 3, "<img src=x onerror=alert(1)>", str(uuid.uuid4()),
                              "x" * 300, "1", "-1", "true"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
payloads = (json_values
            | st.dictionaries(st.sampled_from(KEYS), json_values | st.integers(1, 5), max_size=6)
            | st.builds(lambda n: {"text": "x" * n, "client_id": str(uuid.uuid4())}, st.integers(0, 200_000))
            | st.builds(lambda d: {"cafe_id": _nest(d)}, st.integers(1, 300))
            | st.builds(lambda n: {"votes": {str(i): 1 for i in range(n)}}, st.integers(0, 500)))


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def arena(actions: Actions) -> dict[str, Any]:
    """A café mid-round, with a phone and the facilitator connected; the fuzzer attacks from both."""
    actions.app.config["THEME_MODEL"] = "tfidf"
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, joined = actions.phone(cafe["join_code"])
    actions.phone(cafe["join_code"])
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    from cafe.extensions import socketio
    stranger = socketio.test_client(actions.app)
    return {"app": actions.app, "cafe": cafe, "clients": {"phone": phone, "facilitator": dash, "stranger": stranger}}


def _fingerprint(app: Any) -> tuple[int, int, int]:
    from cafe.extensions import db
    from cafe.models import Cafe, Note, Participant
    with app.app_context():
        try:
            version = sum(c.version for c in db.session.query(Cafe).all())
            return version, db.session.query(Note).count(), db.session.query(Participant).count()
        finally:
            db.session.remove()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow, HealthCheck.data_too_large])
@given(role=st.sampled_from(["phone", "facilitator", "stranger"]), event=st.sampled_from(EVENTS), payload=payloads)
def test_every_event_answers_and_only_accepted_commands_change_data(arena: dict[str, Any], role: str, event: str,
                                                                      payload: Any) -> None:
    client = arena["clients"][role]
    if not client.is_connected():
        client.connect()
    before = _fingerprint(arena["app"])
    try:
        answer = client.emit(event, payload, callback=True)
    except (TypeError, ValueError, RecursionError):
        return          # the test client itself could not encode this payload: nothing reached the server
    if event in ("connect", "disconnect"):
        return          # reserved by Socket.IO: never dispatched as a command
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), (event, payload, answer)
    if not answer["ok"]:
        error = answer["error"]
        assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)
        assert error["code"] != "internal", (event, payload, answer)
        assert _fingerprint(arena["app"]) == before, (event, payload, answer)


def test_server_still_serves_after_the_storm(arena: dict[str, Any]) -> None:
    phone = arena["clients"]["phone"]
    for junk in (None, [], "x" * 100_000, _nest(200), {"client_id": str(uuid.uuid4()), "text": "\udc80"}):
        phone.emit("note_add", junk, callback=True)
    ok = phone.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "still here"}, callback=True)
    assert ok["ok"]
