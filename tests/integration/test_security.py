"""Rows of docs/security.md not covered elsewhere: snapshots per phase, limits, deletion, cookies."""
from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Actions
from tests.integration.conftest import events, of


def _note(sock: Any, text: str) -> dict[str, Any]:
    answer = sock.emit("note_add", {"client_id": str(uuid.uuid4()), "text": text}, callback=True)
    assert answer["ok"], answer
    return answer["note"]


def test_non_host_sees_only_this_rounds_table_notes_and_their_own(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False, rounds=3)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = [actions.phone(cafe["join_code"]) for _ in range(4)]
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    written = {}
    for index, (sock, joined) in enumerate(phones):
        written[joined["participant"]["id"]] = _note(sock, f"round one by {index}")
    assert dash.emit("round_end", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    sock, joined = phones[0]
    again = actions.phone(cafe["join_code"], rejoin_token=joined["rejoin_token"])[1]
    texts = {n["text"] for n in again["snapshot"]["notes"]}
    assert texts == {"round one by 0"}                       # own note only: no one else's round-1 note
    assert all(n["mine"] for n in again["snapshot"]["notes"])


def test_hidden_notes_never_reach_participants(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=4, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    writer, _ = actions.phone(cafe["join_code"])
    reader, reader_join = actions.phone(cafe["join_code"])
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    note = _note(writer, "something abusive")
    reader.get_received()
    assert dash.emit("note_hide", {"cafe_id": cafe["id"], "note_id": note["id"]}, callback=True)["ok"]
    assert of(events(reader), "note_deleted")[-1]["note_id"] == note["id"]
    snap = actions.phone(cafe["join_code"], rejoin_token=reader_join["rejoin_token"])[1]["snapshot"]
    assert snap["notes"] == []
    facilitator_view = dash.emit("facilitator_join", {"cafe_id": cafe["id"]}, callback=True)["snapshot"]
    assert [n["hidden"] for n in facilitator_view["notes"]] == [True]


def test_failed_joins_are_limited_per_address_but_successful_ones_never(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    from cafe.extensions import socketio
    sock = socketio.test_client(actions.app)
    first = sock.emit("participant_join", {"join_code": cafe["join_code"]}, callback=True)
    assert first["ok"]
    codes = [sock.emit("participant_join", {"join_code": "QQQQQQ"}, callback=True)["error"]["code"]
             for _ in range(22)]
    assert codes[:20] == ["unknown_code"] * 20 and codes[20:] == ["rate_limited"] * 2
    # a phone coming back with its token still gets in from the same address
    back = sock.emit("participant_join", {"join_code": cafe["join_code"], "rejoin_token": first["rejoin_token"]},
                     callback=True)
    assert back["ok"]


def test_a_whole_room_joins_and_rejoins_through_one_address(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    from cafe.extensions import socketio
    sock = socketio.test_client(actions.app)
    tokens = []
    for _ in range(150):
        answer = sock.emit("participant_join", {"join_code": cafe["join_code"]}, callback=True)
        assert answer["ok"]
        tokens.append(answer["rejoin_token"])
    for token in tokens:
        assert sock.emit("participant_join", {"join_code": cafe["join_code"], "rejoin_token": token},
                         callback=True)["ok"]


def test_deleting_a_cafe_removes_everything(actions: Actions) -> None:
    import re
    fac = actions.facilitator()
    cafe = actions.cafe(fac, title="Delete me")
    dash = actions.facilitator_socket(fac, cafe["id"])
    phone, joined = actions.phone(cafe["join_code"], name="Rosa")
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    _note(phone, "a note")
    client = actions.logged_in(fac)
    page = client.get(f"/cafes/{cafe['id']}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    wrong = client.post(f"/cafes/{cafe['id']}/delete", data={"csrf_token": token, "confirm_title": "nope"})
    assert wrong.status_code == 400
    done = client.post(f"/cafes/{cafe['id']}/delete", data={"csrf_token": token, "confirm_title": "Delete me"})
    assert done.status_code == 302
    from cafe.extensions import db
    from cafe.models import Cafe, Note, Participant, Seat
    with actions.app.app_context():
        for model in (Cafe, Participant, Seat, Note):
            assert db.session.query(model).count() == 0, model
    _again, answer = actions.phone(cafe["join_code"], rejoin_token=joined["rejoin_token"])
    assert answer["error"]["code"] == "unknown_code"


def test_session_cookie_flags_and_headers(actions: Actions) -> None:
    client = actions.app.test_client()
    actions.facilitator("c@example.org", "a long password")
    import re
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/login", data={"email": "c@example.org", "password": "a long password", "csrf_token": token})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    headers = client.get("/j/ABC234").headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_no_address_is_stored(actions: Actions) -> None:
    from sqlalchemy import inspect
    from cafe.extensions import db
    with actions.app.app_context():
        columns = {c["name"] for t in inspect(db.engine).get_table_names() for c in inspect(db.engine).get_columns(t)}
    assert not {c for c in columns if "ip" == c or "addr" in c or "user_agent" in c}
