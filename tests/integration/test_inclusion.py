"""People without a phone (scribes, paper notes, paper votes) and questions in several languages."""
from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Actions, both_databases
from tests.integration.conftest import events, of


def _add(sock: Any, text: str, **extra: Any) -> dict[str, Any]:
    return sock.emit("note_add", {"client_id": str(uuid.uuid4()), "text": text} | extra, callback=True)


def test_hosts_and_allowed_scribes_write_for_others(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=True)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = [actions.phone(cafe["join_code"]) for _ in range(3)]
    assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    seats = [(sock, joined, of(events(sock), "seat_assigned")[-1]) for sock, joined in phones]
    host = next(s for s in seats if s[2]["is_host"])
    other = next(s for s in seats if not s[2]["is_host"])
    written = _add(host[0], "Said by an elder at our table", scribed=True)
    assert written["ok"] and written["note"]["scribed"]
    assert of(events(dash), "note_added")[-1]["note"]["scribed"] is True
    assert _add(other[0], "for someone", scribed=True)["error"]["code"] == "forbidden"
    assert _add(other[0], "bad flag", scribed="yes")["error"]["code"] == "invalid_payload"
    allowed = dash.emit("scribe_allow", {"cafe_id": cafe["id"], "participant_id": other[1]["participant"]["id"]},
                        callback=True)
    assert allowed["ok"] and of(events(other[0]), "scribe_changed")[-1] == {"can_scribe": True}
    assert _add(other[0], "for my neighbour", scribed=True)["ok"]
    snap = actions.phone(cafe["join_code"], rejoin_token=other[1]["rejoin_token"])[1]["snapshot"]
    assert snap["can_scribe"] is True


def test_facilitator_enters_notes_from_paper(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=2, hosts=False, tables=4)
    dash = actions.facilitator_socket(fac, cafe["id"])
    cid = cafe["id"]
    refused = dash.emit("notes_enter", {"cafe_id": cid, "round": 1, "table": 4, "texts": ["x"]}, callback=True)
    assert refused["error"]["code"] == "wrong_phase"                          # no round yet
    actions.phone(cafe["join_code"])
    assert dash.emit("round_start", {"cafe_id": cid}, callback=True)["ok"]
    entered = dash.emit("notes_enter", {"cafe_id": cid, "round": 1, "table": 4,
                                        "texts": ["Water point broken", "  ", "School fees too high"], "lang": "ny"},
                        callback=True)
    assert entered["ok"] and [n["text"] for n in entered["notes"]] == ["Water point broken", "School fees too high"]
    assert all(n["scribed"] and n["table"] == 4 and n["lang"] == "ny" for n in entered["notes"])
    assert dash.emit("notes_enter", {"cafe_id": cid, "round": 2, "table": 1, "texts": ["x"]},
                     callback=True)["error"]["code"] == "out_of_range"
    for bad in ({"texts": []}, {"texts": "one"}, {"texts": ["x" * 281]}, {"texts": ["x"], "table": 0}):
        payload = {"cafe_id": cid, "round": 1, "table": 4, **bad}
        assert dash.emit("notes_enter", payload, callback=True)["ok"] is False
    client = actions.logged_in(fac)
    csv_text = client.get(f"/cafes/{cid}/notes.csv").get_data(as_text=True)
    assert "Water point broken" in csv_text and ",yes" in csv_text


def test_paper_votes_count_in_the_tally_and_ranking(harvested: dict[str, Any]) -> None:
    dash, cid = harvested["dash"], harvested["cafe"]["id"]
    ids = [t["id"] for t in harvested["themes"]]
    assert dash.emit("votes_enter", {"cafe_id": cid, "counts": {str(ids[0]): 5}}, callback=True
                     )["error"]["code"] == "wrong_phase"
    assert dash.emit("voting_open", {"cafe_id": cid}, callback=True)["ok"]
    phone = harvested["phones"][0][0]
    assert phone.emit("vote_set", {"votes": {str(ids[0]): 1}}, callback=True)["ok"]
    entered = dash.emit("votes_enter", {"cafe_id": cid, "counts": {str(ids[-1]): 7}}, callback=True)
    assert entered["ok"]
    tally = {t["theme_id"]: t for t in entered["tally"]["tally"]}
    assert tally[ids[-1]]["dots"] == 7 and tally[ids[-1]]["paper"] == 7 and tally[ids[-1]]["voters"] == 0
    # entering again replaces the paper count, it does not add to it
    again = dash.emit("votes_enter", {"cafe_id": cid, "counts": {str(ids[-1]): 4}}, callback=True)
    assert {t["theme_id"]: t["dots"] for t in again["tally"]["tally"]}[ids[-1]] == 4
    assert dash.emit("votes_enter", {"cafe_id": cid, "counts": {"999999": 1}}, callback=True
                     )["error"]["code"] == "not_found"
    assert dash.emit("votes_enter", {"cafe_id": cid, "counts": {str(ids[0]): -1}}, callback=True
                     )["error"]["code"] == "out_of_range"
    assert phone.emit("votes_enter", {"cafe_id": cid, "counts": {str(ids[0]): 9}}, callback=True
                      )["error"]["code"] == "unauthorized"
    closed = dash.emit("voting_close", {"cafe_id": cid}, callback=True)
    assert closed["priorities"][0]["theme_id"] == ids[-1] and closed["priorities"][0]["dots"] == 4


def test_questions_in_several_languages(actions: Actions, client: Any) -> None:
    token = actions.token(actions.facilitator())
    created = client.post("/api/cafes", json={
        "title": "Maseru", "questions": ["What matters most?"],
        "question_translations": {"st": ["Ke eng se bohlokwa ka ho fetisisa?"], "fr": ["Qu'est-ce qui compte le plus ?"]}},
        headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201
    _phone, joined = actions.phone(created.json["join_code"], language="st")
    state = joined["snapshot"]["state"]
    assert state["question"] == "What matters most?"
    assert state["question_i18n"] == {"st": "Ke eng se bohlokwa ka ho fetisisa?", "fr": "Qu'est-ce qui compte le plus ?"}
    bad = client.post("/api/cafes", json={"title": "x", "question_translations": {"not a lang!": ["q"]}},
                      headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 400


def test_error_answers_speak_the_phones_language(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac)
    spanish, joined = actions.phone(cafe["join_code"], language="es")
    english, _ = actions.phone(cafe["join_code"], language="en")
    bad = {"client_id": str(uuid.uuid4()), "text": "x" * 281}
    in_english = english.emit("note_add", bad, callback=True)["error"]
    in_spanish = spanish.emit("note_add", bad, callback=True)["error"]
    assert in_english["code"] == in_spanish["code"] == "too_long"
    assert "280" in in_spanish["message"] and in_spanish["message"] != in_english["message"]
    from cafe.extensions import socketio
    stranger = socketio.test_client(actions.app)
    refused = stranger.emit("participant_join", {"join_code": "QQQQQQ", "language": "fr"}, callback=True)["error"]
    assert refused["code"] == "unknown_code" and "No café" not in refused["message"]


@both_databases
def test_seating_needs_languages_and_staying_at_one_table(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=False, rounds=3)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = []
    for i in range(6):
        extra: dict[str, Any] = {"languages": ["rw"]} if i < 2 else {"languages": ["en", "fr"]}
        if i == 5:
            extra["stay_put"] = True
        phones.append(actions.phone(cafe["join_code"], **extra))
    assert all(answer["ok"] for _, answer in phones)
    tables: list[dict[int, int]] = []
    for _round in range(3):
        assert dash.emit("round_start", {"cafe_id": cafe["id"]}, callback=True)["ok"]
        seats = {j["participant"]["id"]: of(events(s), "seat_assigned")[-1]["table"] for s, j in phones}
        tables.append(seats)
        assert dash.emit("round_end", {"cafe_id": cafe["id"]}, callback=True)["ok"]
    rw = [phones[0][1]["participant"]["id"], phones[1][1]["participant"]["id"]]
    fixed = phones[5][1]["participant"]["id"]
    for seats in tables:
        assert seats[rw[0]] == seats[rw[1]]            # nobody alone in the only language they speak
    assert len({seats[fixed] for seats in tables}) == 1   # stays at the table of their first round
    bad = actions.phone(cafe["join_code"], languages="rw")[1]
    assert bad["error"]["code"] == "invalid_payload"
    toggled = dash.emit("participant_fixed", {"cafe_id": cafe["id"], "participant_id": fixed, "fixed": False},
                        callback=True)
    assert toggled == {"ok": True, "participant_id": fixed, "fixed": False}
    snap = dash.emit("facilitator_join", {"cafe_id": cafe["id"]}, callback=True)["snapshot"]
    assert {p["id"]: p["fixed"] for p in snap["participants"]}[fixed] is False
