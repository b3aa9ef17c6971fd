"""The live café through Flask-SocketIO's test client: every event, its errors, and who may do what."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Actions, both_databases, statements_run


def names(sock: Any) -> list[tuple[str, Any]]:
    return [(pkt["name"], pkt["args"][0] if pkt["args"] else None) for pkt in sock.get_received()]


def of(events: list[tuple[str, Any]], name: str) -> list[Any]:
    return [payload for event, payload in events if event == name]


@pytest.fixture
def cafe_ready(actions: Actions) -> dict[str, Any]:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, rounds=3, seats_per_table=2, hosts=False)
    dash = actions.facilitator_socket(fac, cafe["id"])
    dash.get_received()
    return {"fac": fac, "cafe": cafe, "dash": dash}


def start(dash: Any, cafe_id: int, event: str = "round_start", **extra: Any) -> dict[str, Any]:
    return dash.emit(event, {"cafe_id": cafe_id} | extra, callback=True)


@both_databases
def test_join_gives_token_snapshot_and_guest_name(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    phone, answer = actions.phone(cafe_ready["cafe"]["join_code"])
    assert answer["ok"], answer
    assert answer["participant"]["name"] == "Guest 1"
    assert len(answer["rejoin_token"]) >= 40
    snap = answer["snapshot"]
    assert snap["state"]["phase"] == "lobby"
    assert snap["state"]["question"] == "What would make this place healthier?"
    assert snap["seat"] is None and snap["notes"] == []
    events = names(cafe_ready["dash"])
    changed = of(events, "participants_changed")
    assert changed and changed[-1]["count"] == 1 and changed[-1]["participant"]["name"] == "Guest 1"


@both_databases
def test_join_code_is_forgiving_and_unknown_codes_are_refused(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    code = cafe_ready["cafe"]["join_code"]
    spaced = f"{code[:3].lower()} {code[3:].lower()}"
    _phone, answer = actions.phone(spaced, name="Amina")
    assert answer["ok"] and answer["participant"]["name"] == "Amina"
    _phone2, bad = actions.phone("ZZZZZZ")
    assert bad == {"ok": False, "error": {"code": "unknown_code", "message": bad["error"]["message"]}}


@both_databases
def test_rejoin_keeps_identity_and_since_version_skips_snapshot(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    code = cafe_ready["cafe"]["join_code"]
    phone, first = actions.phone(code, name="Joao")
    phone.disconnect()
    again, second = actions.phone(code, rejoin_token=first["rejoin_token"])
    assert second["ok"] and second["participant"]["id"] == first["participant"]["id"]
    assert "rejoin_token" not in second and second["rejoined"]
    version = second["snapshot"]["state"]["version"]
    _third, third = actions.phone(code, rejoin_token=first["rejoin_token"], since_version=version)
    assert third["ok"] and third["up_to_date"] and third["snapshot"] is None


def test_rejoin_token_works_only_for_its_cafe(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    other = actions.cafe(cafe_ready["fac"], title="Another café")
    _p, first = actions.phone(cafe_ready["cafe"]["join_code"])
    _q, answer = actions.phone(other["join_code"], rejoin_token=first["rejoin_token"])
    assert not answer["ok"] and answer["error"]["code"] == "bad_token"


@pytest.mark.parametrize("payload, code", [
    (None, "invalid_payload"),
    ("ABCDEF", "invalid_payload"),
    ([1, 2], "invalid_payload"),
    ({"join_code": 12}, "invalid_payload"),
    ({"join_code": "x" * 5000}, "too_long"),
    ({"join_code": "ABCDEF", "name": "n" * 41}, "too_long"),
    ({"join_code": "ABCDEF", "language": "english!"}, "invalid_payload"),
    ({"join_code": "ABCDEF", "rejoin_token": 5}, "invalid_payload"),
    ({"join_code": "ABCDEF", "since_version": -1}, "out_of_range"),
])
def test_participant_join_rejects_bad_payloads(actions: Actions, cafe_ready: dict[str, Any], payload: Any,
                                               code: str) -> None:
    from cafe.extensions import socketio
    sock = socketio.test_client(actions.app)
    answer = sock.emit("participant_join", payload, callback=True)
    assert answer["ok"] is False and answer["error"]["code"] == code
    assert answer["error"]["message"]


@both_databases
def test_full_round_cycle_with_notes(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    cafe_id, dash = cafe_ready["cafe"]["id"], cafe_ready["dash"]
    phones = [actions.phone(cafe_ready["cafe"]["join_code"], name=f"P{i}") for i in range(4)]
    for sock, answer in phones:
        assert answer["ok"]
        sock.get_received()
    dash.get_received()

    answer = start(dash, cafe_id)
    assert answer["ok"], answer
    assert answer["state"]["phase"] == "round" and answer["state"]["round"] == 1
    assert answer["state"]["tables"] == 2
    seats = {}
    for sock, joined in phones:
        events = names(sock)
        seat = of(events, "seat_assigned")
        assert len(seat) == 1 and seat[0]["round"] == 1 and 1 <= seat[0]["table"] <= 2
        state = seat[0]["state"]                 # the seat and the state come in one message
        assert state["phase"] == "round" and state["ends_at"] > state["server_time"]
        assert seat[0]["version"] == state["version"] == answer["state"]["version"]
        assert not [s for s in of(events, "cafe_state") if s["phase"] == "round"]
        seats[joined["participant"]["id"]] = seat[0]["table"]
    dash_events = names(dash)
    assert of(dash_events, "seating_changed")[-1]["round"] == 1

    # A note reaches the dashboard and the writer's table, not the other table.
    writer, writer_join = phones[0]
    table = seats[writer_join["participant"]["id"]]
    client_id = str(uuid.uuid4())
    added = writer.emit("note_add", {"client_id": client_id, "text": "More buses on Sunday"}, callback=True)
    assert added["ok"] and added["note"]["text"] == "More buses on Sunday" and added["note"]["table"] == table
    assert of(names(dash), "note_added")[-1]["note"]["text"] == "More buses on Sunday"
    for sock, joined in phones[1:]:
        got = of(names(sock), "note_added")
        if seats[joined["participant"]["id"]] == table:
            assert [n["note"]["id"] for n in got] == [added["note"]["id"]]
        else:
            assert got == []

    # Resending the same client_id never makes a second note.
    again = writer.emit("note_add", {"client_id": client_id, "text": "More buses on Sunday"}, callback=True)
    assert again["ok"] and again["duplicate"] and again["note"]["id"] == added["note"]["id"]

    # Edit and delete, own notes only.
    other = next(s for s, j in phones[1:] if seats[j["participant"]["id"]] == table)
    denied = other.emit("note_edit", {"note_id": added["note"]["id"], "text": "hijack"}, callback=True)
    assert denied["error"]["code"] == "forbidden"
    edited = writer.emit("note_edit", {"note_id": added["note"]["id"], "text": "More buses, also on Sunday"},
                         callback=True)
    assert edited["ok"] and edited["note"]["text"] == "More buses, also on Sunday"
    assert of(names(dash), "note_updated")[-1]["note"]["text"] == "More buses, also on Sunday"

    # Pause, resume, extend.
    paused = start(dash, cafe_id, "round_pause")
    assert paused["ok"] and paused["state"]["paused"]
    resumed = start(dash, cafe_id, "round_resume")
    assert resumed["ok"] and not resumed["state"]["paused"]
    extended = start(dash, cafe_id, "round_extend", seconds=120)
    assert extended["ok"] and extended["state"]["ends_at"] == pytest.approx(resumed["state"]["ends_at"] + 120, abs=1)
    for sock, _ in phones:
        assert of(names(sock), "cafe_state")[-1]["ends_at"] == pytest.approx(extended["state"]["ends_at"], abs=0.01)

    ended = start(dash, cafe_id, "round_end")
    assert ended["ok"] and ended["state"]["phase"] == "break"
    late = writer.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "too late"}, callback=True)
    assert late["error"]["code"] == "wrong_phase"
    gone = writer.emit("note_delete", {"note_id": added["note"]["id"]}, callback=True)
    assert gone["error"]["code"] == "wrong_phase"

    # Round 2 moves people: nobody sits with the person they sat with in round 1 (2 tables of 2).
    second = start(dash, cafe_id)
    assert second["ok"] and second["state"]["round"] == 2
    assert second["repeats"] == 0
    new_seats = {}
    for sock, joined in phones:
        seat = of(names(sock), "seat_assigned")[-1]
        new_seats[joined["participant"]["id"]] = seat["table"]
    pairs_before = {frozenset((a, b)) for a in seats for b in seats if a < b and seats[a] == seats[b]}
    pairs_after = {frozenset((a, b)) for a in new_seats for b in new_seats if a < b and new_seats[a] == new_seats[b]}
    assert not pairs_before & pairs_after

    # A note in round 2 goes to the new table's room.
    note2 = writer.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "Safer crossings"}, callback=True)
    assert note2["ok"] and note2["note"]["round"] == 2
    deleted = writer.emit("note_delete", {"note_id": note2["note"]["id"]}, callback=True)
    assert deleted["ok"]
    assert of(names(dash), "note_deleted")[-1]["note_id"] == note2["note"]["id"]

    done = start(dash, cafe_id, "cafe_end")
    assert done["ok"] and done["state"]["phase"] == "ended"
    _late_phone, refused = actions.phone(cafe_ready["cafe"]["join_code"])
    assert refused["error"]["code"] == "cafe_ended"


def test_participant_cannot_use_facilitator_commands(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    phone, answer = actions.phone(cafe_ready["cafe"]["join_code"])
    assert answer["ok"]
    for event in ("facilitator_join", "round_start", "round_pause", "round_resume", "round_end", "cafe_end",
                  "seating_preview", "joins_close"):
        refused = phone.emit(event, {"cafe_id": cafe_ready["cafe"]["id"]}, callback=True)
        assert refused["ok"] is False and refused["error"]["code"] == "unauthorized", event
    refused = phone.emit("round_extend", {"cafe_id": cafe_ready["cafe"]["id"], "seconds": 60}, callback=True)
    assert refused["error"]["code"] == "unauthorized"


def test_facilitator_cannot_run_another_facilitators_cafe(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    intruder = actions.facilitator()
    sock = actions.facilitator_socket(intruder)
    for event in ("facilitator_join", "round_start", "cafe_end"):
        refused = sock.emit(event, {"cafe_id": cafe_ready["cafe"]["id"]}, callback=True)
        assert refused["error"]["code"] == "forbidden", event


@both_databases
def test_phone_of_cafe_a_never_touches_cafe_b(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    fac_b = actions.facilitator()
    cafe_b = actions.cafe(fac_b, seats_per_table=2, hosts=False)
    dash_b = actions.facilitator_socket(fac_b, cafe_b["id"])
    phone_a, _ = actions.phone(cafe_ready["cafe"]["join_code"])
    phone_b, _ = actions.phone(cafe_b["join_code"])
    phone_b2, _ = actions.phone(cafe_b["join_code"])
    assert start(dash_b, cafe_b["id"])["ok"]
    assert start(cafe_ready["dash"], cafe_ready["cafe"]["id"])["ok"]
    phone_a.get_received()
    phone_b.get_received()
    # Notes from café B never reach café A's phone.
    assert phone_b.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "B only"}, callback=True)["ok"]
    assert of(names(phone_a), "note_added") == []
    # A phone of café A cannot edit B's note by id, nor run B's rounds.
    b_note = phone_b2.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "mine"}, callback=True)["note"]
    answer = phone_a.emit("note_edit", {"note_id": b_note["id"], "text": "x"}, callback=True)
    assert answer["error"]["code"] == "not_found"
    assert phone_a.emit("round_end", {"cafe_id": cafe_b["id"]}, callback=True)["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("event, payload, code", [
    ("note_add", {"client_id": "not-a-uuid", "text": "x"}, "invalid_payload"),
    ("note_add", {"client_id": str(uuid.UUID(int=1)), "text": ""}, "empty"),
    ("note_add", {"client_id": str(uuid.UUID(int=1)), "text": "   "}, "empty"),
    ("note_add", {"client_id": str(uuid.UUID(int=1)), "text": "x" * 281}, "too_long"),
    ("note_add", {"client_id": str(uuid.UUID(int=1)), "text": ["x"]}, "invalid_payload"),
    ("note_add", {"text": "x"}, "invalid_payload"),
    ("note_add", "just text", "invalid_payload"),
    ("note_edit", {"note_id": "1", "text": "x"}, "invalid_payload"),
    ("note_edit", {"note_id": True, "text": "x"}, "invalid_payload"),
    ("note_delete", {"note_id": 0}, "out_of_range"),
    ("note_delete", {}, "invalid_payload"),
])
def test_note_commands_reject_bad_payloads(actions: Actions, cafe_ready: dict[str, Any], event: str,
                                           payload: Any, code: str) -> None:
    phone, _ = actions.phone(cafe_ready["cafe"]["join_code"])
    answer = phone.emit(event, payload, callback=True)
    assert answer["ok"] is False and answer["error"]["code"] == code


@pytest.mark.parametrize("payload, code", [
    ({}, "invalid_payload"),
    ({"cafe_id": "1"}, "invalid_payload"),
    ({"cafe_id": 1.5}, "invalid_payload"),
    ({"cafe_id": 99999}, "not_found"),
])
def test_facilitator_commands_reject_bad_payloads(actions: Actions, cafe_ready: dict[str, Any], payload: Any,
                                                  code: str) -> None:
    answer = cafe_ready["dash"].emit("round_start", payload, callback=True)
    assert answer["ok"] is False and answer["error"]["code"] == code


def test_round_extend_validates_seconds(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    dash, cafe_id = cafe_ready["dash"], cafe_ready["cafe"]["id"]
    for seconds in ("60", 0, 99999, None):
        answer = dash.emit("round_extend", {"cafe_id": cafe_id, "seconds": seconds}, callback=True)
        assert answer["ok"] is False
    answer = dash.emit("round_extend", {"cafe_id": cafe_id, "seconds": 60}, callback=True)
    assert answer["error"]["code"] == "wrong_phase"


def test_notes_before_a_seat_and_out_of_phase_are_refused(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    phone, _ = actions.phone(cafe_ready["cafe"]["join_code"])
    answer = phone.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "hello"}, callback=True)
    assert answer["error"]["code"] == "wrong_phase"
    assert start(cafe_ready["dash"], cafe_ready["cafe"]["id"])["ok"]
    late, joined = actions.phone(cafe_ready["cafe"]["join_code"], name="Late")
    assert joined["ok"] and joined["snapshot"]["seat"] is None
    answer = late.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "hello"}, callback=True)
    assert answer["error"]["code"] == "no_seat"


def test_unknown_events_and_commands_before_joining(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    from cafe.extensions import socketio
    sock = socketio.test_client(actions.app)
    assert sock.emit("no_such_event", {"x": 1}, callback=True)["error"]["code"] == "unknown_event"
    answer = sock.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "x"}, callback=True)
    assert answer["error"]["code"] == "not_joined"


def test_start_with_nobody_and_round_limits(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    dash, cafe_id = cafe_ready["dash"], cafe_ready["cafe"]["id"]
    assert start(dash, cafe_id)["error"]["code"] == "nobody_here"
    actions.phone(cafe_ready["cafe"]["join_code"])
    assert start(dash, cafe_id)["ok"]
    assert start(dash, cafe_id)["error"]["code"] == "wrong_phase"


@both_databases
def test_late_joiner_is_seated_next_round_and_leaver_is_not(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    dash, cafe_id, code = cafe_ready["dash"], cafe_ready["cafe"]["id"], cafe_ready["cafe"]["join_code"]
    phones = [actions.phone(code)[0] for _ in range(4)]
    assert start(dash, cafe_id)["ok"]
    late, late_join = actions.phone(code, name="Late")
    assert phones[0].emit("participant_leave", {}, callback=True)["ok"]
    assert start(dash, cafe_id, "round_end")["ok"]
    second = start(dash, cafe_id)
    assert second["ok"]
    assert of(names(late), "seat_assigned")[-1]["round"] == 2
    assert [e for e in of(names(phones[0]), "seat_assigned") if e["round"] == 2] == []
    seating = of(names(dash), "seating_changed")[-1]
    sizes = sorted(len(t["members"]) for t in seating["tables"])
    assert sum(sizes) == 4 and sizes[-1] - sizes[0] <= 1


@both_databases
def test_hosts_stay_at_their_table_and_see_earlier_notes(actions: Actions) -> None:
    fac = actions.facilitator()
    cafe = actions.cafe(fac, seats_per_table=3, hosts=True, rounds=3)
    dash = actions.facilitator_socket(fac, cafe["id"])
    phones = [actions.phone(cafe["join_code"]) for _ in range(6)]
    assert start(dash, cafe["id"])["ok"]
    first = {}
    host_sock = None
    for sock, joined in phones:
        seat = of(names(sock), "seat_assigned")[-1]
        first[joined["participant"]["id"]] = seat
        if seat["is_host"]:
            host_sock = host_sock or (sock, joined, seat)
    hosts = [pid for pid, seat in first.items() if seat["is_host"]]
    assert len(hosts) == 2
    # someone at the host's table writes a note in round 1
    sock, joined, seat = host_sock
    assert sock.emit("note_add", {"client_id": str(uuid.uuid4()), "text": "Round one idea"}, callback=True)["ok"]
    assert start(dash, cafe["id"], "round_end")["ok"]
    assert start(dash, cafe["id"])["ok"]
    for s, j in phones:
        new = of(names(s), "seat_assigned")[-1]
        if j["participant"]["id"] in hosts:
            assert new["is_host"] and new["table"] == first[j["participant"]["id"]]["table"]
    # the host's snapshot (after a reload) holds the round-1 note of their table, and says they may write
    # for others; it is read after the write (SQLite: in a transaction after the write's) in three
    # statements: the counts with the person and the café, their seats (this round's, and whether they
    # host), their notes
    sock.disconnect()
    from cafe.extensions import db
    with actions.app.app_context():
        engine = db.engine
    with statements_run(engine) as run:
        _again, answer = actions.phone(cafe["join_code"], rejoin_token=joined["rejoin_token"])
    assert [n["text"] for n in answer["snapshot"]["notes"]] == ["Round one idea"]
    assert answer["snapshot"]["can_scribe"] is True and answer["snapshot"]["seat"]["is_host"] is True
    heads = [" ".join(statement.split()[:2]).upper() for statement, _params in run]
    written = max(i for i, h in enumerate(heads) if h == "BEGIN" or h.startswith(("UPDATE", "WITH C")))
    assert [h.split(".")[0] for h in heads[written + 1:]] == ["SELECT CAFE", "SELECT SEAT", "SELECT NOTE"], heads
    # a guest who is not a host may not, wherever they sit
    guest_sock, guest = next((s, j) for s, j in phones if j["participant"]["id"] not in hosts)
    guest_sock.disconnect()
    _again, answer = actions.phone(cafe["join_code"], rejoin_token=guest["rejoin_token"])
    assert answer["snapshot"]["can_scribe"] is False and answer["snapshot"]["seat"]["is_host"] is False


def test_seating_preview_reports_repeats_and_bound(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    dash, cafe_id = cafe_ready["dash"], cafe_ready["cafe"]["id"]
    for _ in range(4):
        actions.phone(cafe_ready["cafe"]["join_code"])
    preview = start(dash, cafe_id, "seating_preview")
    assert preview["ok"] and preview["round"] == 1 and preview["repeats"] == 0 and preview["lower_bound"] == 0


@both_databases
def test_the_next_round_is_planned_ahead_and_planned_again_when_the_room_changed(
        actions: Actions, cafe_ready: dict[str, Any], monkeypatch: Any) -> None:
    """A preview's plan is the one a start uses; a round's end plans the next round in the background; a
    phone that joins in between makes the start plan again, and seats it."""
    import time

    from cafe.services import rounds

    calls: list[int] = []
    real = rounds.plan_round

    def counted(problem: Any, **kwargs: Any) -> Any:
        calls.append(len(problem.participants))
        return real(problem, **kwargs)

    monkeypatch.setattr(rounds, "plan_round", counted)
    rounds.plans.clear()             # another test's café of the same id and people left its plan
    dash, cafe_id, code = cafe_ready["dash"], cafe_ready["cafe"]["id"], cafe_ready["cafe"]["join_code"]
    phones = [actions.phone(code)[0] for _ in range(4)]
    preview = start(dash, cafe_id, "seating_preview")
    assert preview["ok"] and calls == [4]
    first = start(dash, cafe_id)
    assert first["ok"] and calls == [4], "the start used the previewed plan"
    assert (first["repeats"], first["lower_bound"]) == (preview["repeats"], preview["lower_bound"])
    assert cafe_id not in rounds.plans
    assert start(dash, cafe_id, "round_end")["ok"]
    deadline = time.monotonic() + 10
    while cafe_id not in rounds.plans and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cafe_id in rounds.plans and calls == [4, 4], "round 2 was planned when round 1 ended"
    assert start(dash, cafe_id)["ok"] and calls == [4, 4]
    for sock in phones:
        assert of(names(sock), "seat_assigned")[-1]["round"] == 2
    assert start(dash, cafe_id, "round_end")["ok"]
    while cafe_id not in rounds.plans and time.monotonic() < deadline:
        time.sleep(0.02)
    late, _joined = actions.phone(code, name="Late")
    assert start(dash, cafe_id)["ok"]
    assert calls == [4, 4, 4, 5], "the room changed after round 3 was planned: planned again"
    assert of(names(late), "seat_assigned")[-1]["round"] == 3


@both_databases
def test_joins_can_be_closed_and_rejoin_still_works(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    dash, cafe_id, code = cafe_ready["dash"], cafe_ready["cafe"]["id"], cafe_ready["cafe"]["join_code"]
    _p, first = actions.phone(code)
    assert start(dash, cafe_id, "joins_close")["ok"]
    _q, refused = actions.phone(code)
    assert refused["error"]["code"] == "joins_closed"
    _r, back = actions.phone(code, rejoin_token=first["rejoin_token"])
    assert back["ok"]
    assert start(dash, cafe_id, "joins_open")["ok"]
    assert actions.phone(code)[1]["ok"]


def test_joins_run_a_few_at_a_time_and_one_kept_waiting_too_long_is_told_to_ask_again(
        actions: Actions, cafe_ready: dict[str, Any], monkeypatch: Any) -> None:
    """A crowd joining at once: at most JOIN_CONCURRENCY joins run in a process, the others wait their turn,
    and one still waiting after JOIN_WAIT_SECONDS gets ``busy`` with nothing done (the phone asks again)."""
    import threading

    from cafe.services import participants

    app, dash, code = actions.app, cafe_ready["dash"], cafe_ready["cafe"]["join_code"]
    app.config.update(JOIN_CONCURRENCY=2, JOIN_WAIT_SECONDS=10)
    app.extensions.pop("cafe.join_gate", None)          # made again from the settings on first use
    real_join, release, inside_now = participants.join, threading.Event(), threading.Semaphore(0)
    counts = {"inside": 0, "most": 0}
    lock, one_writer = threading.Lock(), threading.Lock()   # SQLite under real threads: one write at a time

    def held_join(*args: Any, **kwargs: Any) -> Any:
        with lock:
            counts["inside"] += 1
            counts["most"] = max(counts["most"], counts["inside"])
        inside_now.release()
        try:
            release.wait(10)
            with one_writer:
                return real_join(*args, **kwargs)
        finally:
            with lock:
                counts["inside"] -= 1

    monkeypatch.setattr(participants, "join", held_join)
    answers: list[dict[str, Any]] = []
    crowd = [threading.Thread(target=lambda: answers.append(actions.phone(code)[1])) for _ in range(3)]
    for thread in crowd:
        thread.start()
    assert inside_now.acquire(timeout=10) and inside_now.acquire(timeout=10)
    assert not inside_now.acquire(timeout=0.5)           # the third waits at the gate, not in the service
    app.config["JOIN_WAIT_SECONDS"] = 0.3
    _sock, late = actions.phone(code)                    # waits 0.3 s, and is told to ask again
    assert late["ok"] is False and late["error"]["code"] == "busy", late
    release.set()
    for thread in crowd:
        thread.join(10)
    assert [a["ok"] for a in answers] == [True, True, True], answers
    assert counts["most"] == 2
    joined = [event for event, _ in names(dash) if event == "participants_changed"]
    assert len(joined) == 3                              # the refused join left no one behind
    assert actions.phone(code)[1]["ok"]                  # and asking again gets in


@both_databases
def test_a_new_phone_is_written_once_and_its_answer_is_read_after_the_commit(
        actions: Actions, cafe_ready: dict[str, Any]) -> None:
    """A crowd joins at once, so each join's round trips count: a new participant is inserted with its
    connection (no second write of the row), the café's row is written once (its number and version), and
    a newcomer's table and notes are not looked for (there are none until a round seats them). The answer
    is read after the commit (the room's counts must count this join, and any other committed beside it),
    in one statement: the counts with the participant and the café, and nothing else; on PostgreSQL
    without a transaction around it (no BEGIN, no ROLLBACK: the write commits itself, and reads after it
    need none)."""
    from sqlalchemy import event, select

    from cafe.extensions import db
    from cafe.models import Participant

    with actions.app.app_context():
        engine = db.engine
    seen: list[str] = []

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        seen.append(" ".join(text.split()[:2]).upper())

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", lambda conn: seen.append("COMMIT"))
    try:
        _sock, answer = actions.phone(cafe_ready["cafe"]["join_code"], name="Amina")
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert answer["ok"] and answer["participant"]["name"] == "Amina", answer
    assert "UPDATE PARTICIPANT" not in seen, seen
    assert seen.count("UPDATE CAFE") + seen.count("WITH C") == 1, seen      # the café's row written once
    assert not [s for s in seen if s.startswith(("SELECT SEAT", "SELECT NOTE"))], seen   # no table, no notes yet
    written = max(i for i, s in enumerate(seen) if s in ("INSERT INTO", "WITH C"))
    after = [s for s in seen[written + 1:] if s not in ("BEGIN", "COMMIT")]
    assert after == ["SELECT CAFE.ID,"], seen
    assert seen.count("COMMIT") <= 1, seen                # the write's; the reads after it commit nothing
    if actions.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        assert seen == ["WITH C", "SELECT CAFE.ID,"], seen
    with actions.app.app_context():
        row = db.session.execute(select(Participant.connected, Participant.sid)
                                 .where(Participant.id == answer["participant"]["id"])).one()
    assert row.connected and row.sid



def _cafe_row_at_first_move(actions: Actions, monkeypatch: pytest.MonkeyPatch, database_url: str,
                            cafe_id: int) -> list[str]:
    """PostgreSQL: when the next connection enters its rooms, is the café's row free ("free") or still
    locked by the join ("locked")? Asked once, from another connection (``FOR UPDATE NOWAIT``)."""
    import psycopg

    publisher = actions.app.extensions["cafe.publisher"]
    real_move = publisher.move
    found: list[str] = []

    def move(sid: str, leave: list[str], enter: list[str]) -> None:
        if not found:
            with psycopg.connect(database_url) as other:
                try:
                    other.execute("SELECT id FROM cafe WHERE id = %s FOR UPDATE NOWAIT", (cafe_id,))
                    found.append("free")
                except psycopg.errors.LockNotAvailable:
                    found.append("locked")
        real_move(sid, leave, enter)

    monkeypatch.setattr(publisher, "move", move)
    return found


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_new_phone_holds_the_cafes_row_only_while_its_one_statement_runs(
        actions: Actions, cafe_ready: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every join writes the café's row (the newcomer's number, the version), so joins take turns on its
    lock. On PostgreSQL a new phone is written in one statement that commits itself: by the time its
    connection enters the café's rooms (before its snapshot is read) the row is free again. In a transaction
    it stayed locked until the commit, and a crowd joined one phone at a time."""
    code, cafe_id = cafe_ready["cafe"]["join_code"], cafe_ready["cafe"]["id"]
    found = _cafe_row_at_first_move(actions, monkeypatch, database_url, cafe_id)
    _sock, answer = actions.phone(code, name="Amina", languages=["rw", "en"], stay_put=True)
    assert answer["ok"], answer
    assert found == ["free"]
    snap = answer["snapshot"]
    assert snap["seat"] is None and snap["notes"] == [] and snap["can_scribe"] is False
    assert snap["state"]["participants"]["count"] == 1
    monkeypatch.undo()
    second = actions.phone(code)[1]
    assert second["participant"]["number"] == answer["participant"]["number"] + 1 == 2
    from cafe.extensions import db
    from cafe.models import Cafe, Participant
    with actions.app.app_context():
        person = db.session.get(Participant, answer["participant"]["id"])
        assert (person.name, person.languages, person.fixed, person.connected) == ("Amina", ["rw", "en"], True, True)
        assert person.left_at is None and person.sid and not person.removed and not person.can_scribe
        assert db.session.get(Participant, second["participant"]["id"]).languages is None
        assert db.session.get(Cafe, cafe_id).version == snap["state"]["version"] + 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_new_phone_whose_answer_fails_after_its_write_is_not_left_behind(
        actions: Actions, cafe_ready: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL writes a new phone before reading its snapshot: if the reading fails, the phone gets an
    error (and no token, so it will join anew), and the row written for it is marked gone, so that the
    room's count and seating do not keep a ghost."""
    from sqlalchemy import select

    from cafe.extensions import db
    from cafe.models import Participant
    from cafe.services import participants

    code, dash = cafe_ready["cafe"]["join_code"], cafe_ready["dash"]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(participants, "harvest_for_participant", broken)
    _sock, failed = actions.phone(code)
    assert failed["ok"] is False and failed["error"]["code"] == "internal", failed
    monkeypatch.undo()
    _sock2, answer = actions.phone(code)
    assert answer["ok"] and answer["snapshot"]["state"]["participants"]["count"] == 1, answer
    assert of(names(dash), "participants_changed")[-1]["count"] == 1
    with actions.app.app_context():
        ghost = db.session.scalars(select(Participant).where(Participant.id != answer["participant"]["id"])).one()
        assert not ghost.connected and ghost.sid is None and ghost.left_at is not None

def test_disconnect_marks_participant_away(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    phone, _ = actions.phone(cafe_ready["cafe"]["join_code"])
    cafe_ready["dash"].get_received()
    phone.disconnect()
    changed = of(names(cafe_ready["dash"]), "participants_changed")
    assert changed[-1]["connected"] == 0 and changed[-1]["count"] == 1


@both_databases
def test_phones_dropping_together_are_written_together_and_counted_once_after_the_commit(
        actions: Actions, cafe_ready: dict[str, Any]) -> None:
    """The venue's Wi-Fi goes: the drops that reach the writer together are one statement, the room's
    counts are read once after it commits, and the facilitators hear of each person with those counts. A
    drop of a connection that is no longer the phone's (it came back meanwhile) changes nothing."""
    import threading

    from sqlalchemy import select

    from cafe.extensions import db, socketio
    from cafe.models import Participant
    from cafe.services import participants
    from cafe.services.batching import GroupCommitter
    from cafe.services.events import RecordingPublisher

    code = cafe_ready["cafe"]["join_code"]
    joined = [actions.phone(code)[1]["participant"]["id"] for _ in range(6)]
    with actions.app.app_context():
        sids = dict(db.session.execute(select(Participant.id, Participant.sid)).all())
        engine = db.engine
    publisher = RecordingPublisher()
    writer = GroupCommitter(actions.app, socketio, publisher, window=1.0, max_batch=5)    # one batch of five
    dropping, back = joined[:4], joined[4]
    results: dict[int, Any] = {}

    def drop(pid: int, sid: str) -> None:
        results[pid] = writer.submit(participants._Drop(pid, sid, 1e9))

    with statements_run(engine) as run:
        threads = [threading.Thread(target=drop, args=(pid, sids[pid])) for pid in dropping]
        threads.append(threading.Thread(target=drop, args=(back, "an-old-connection")))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    writer.stop()
    assert writer.batches == 1 and results == {**{pid: True for pid in dropping}, back: False}
    heads = [" ".join(statement.split()[:2]).upper() for statement, _params in run]
    assert heads.count("UPDATE PARTICIPANT") == 1 and heads.count("SELECT PARTICIPANT.ID,") == 1, heads
    told = publisher.events("participants_changed")
    assert sorted(m["participant"]["id"] for m in told) == dropping
    assert all(not m["participant"]["connected"] and (m["count"], m["connected"]) == (6, 2) for m in told), told
    with actions.app.app_context():
        connected = dict(db.session.execute(select(Participant.id, Participant.connected)).all())
    assert connected == {pid: pid not in dropping for pid in joined}


def test_facilitator_token_auth_at_connect(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    from cafe.extensions import socketio
    token = actions.token(cafe_ready["fac"])
    sock = socketio.test_client(actions.app, auth={"token": token})
    answer = sock.emit("facilitator_join", {"cafe_id": cafe_ready["cafe"]["id"]}, callback=True)
    assert answer["ok"] and answer["snapshot"]["state"]["phase"] == "lobby"
    bad = socketio.test_client(actions.app, auth={"token": "cafe_wrong-token-of-some-length"})
    assert not bad.is_connected()


def test_note_rate_limit_per_participant(actions: Actions, cafe_ready: dict[str, Any]) -> None:
    phone, _ = actions.phone(cafe_ready["cafe"]["join_code"])
    assert start(cafe_ready["dash"], cafe_ready["cafe"]["id"])["ok"]
    codes = [phone.emit("note_add", {"client_id": str(uuid.uuid4()), "text": f"n{i}"}, callback=True)
             for i in range(32)]
    assert sum(1 for a in codes if a["ok"]) == 30
    assert codes[-1]["error"]["code"] == "rate_limited"


@both_databases
def test_a_phone_coming_back_is_told_why_it_cannot_and_otherwise_gets_its_place_and_what_it_says(
        actions: Actions, cafe_ready: dict[str, Any]) -> None:
    """Coming back (on PostgreSQL one statement, which finds nothing in each refused case and lets the
    transaction say why): a token of another café, a removed person's, an unknown code; and someone who
    had left is counted again (the café's version moves on, so screens that were up to date read it),
    with what they now say of themselves."""
    from cafe.extensions import db
    from cafe.models import Participant

    dash, cafe_id, code = cafe_ready["dash"], cafe_ready["cafe"]["id"], cafe_ready["cafe"]["join_code"]
    other = actions.cafe(cafe_ready["fac"], title="Another café")
    phone, first = actions.phone(code, name="Joao", language="pt")
    _gone, removed = actions.phone(code)
    assert start(dash, cafe_id, "participant_remove", participant_id=removed["participant"]["id"])["ok"]
    assert actions.phone(other["join_code"], rejoin_token=first["rejoin_token"])[1]["error"]["code"] == "bad_token"
    assert actions.phone(code, rejoin_token=removed["rejoin_token"])[1]["error"]["code"] == "removed"
    assert actions.phone("ZZZZZZ", rejoin_token=first["rejoin_token"])[1]["error"]["code"] == "unknown_code"
    assert phone.emit("participant_leave", {}, callback=True)["ok"]
    phone.disconnect()
    before = start(dash, cafe_id, "facilitator_join")["snapshot"]["state"]
    assert before["participants"]["count"] == 0
    dash.get_received()
    _back, back = actions.phone(code, rejoin_token=first["rejoin_token"], name="João", language="fr",
                                languages=["fr", "pt"], stay_put=True, since_version=before["version"])
    assert back["ok"] and back["rejoined"] and not back["up_to_date"], back
    assert back["participant"] == {"id": first["participant"]["id"], "name": "João", "number": 1,
                                   "language": "fr", "cafe_id": cafe_id}
    state = back["snapshot"]["state"]
    assert state["version"] > before["version"] and state["participants"]["count"] == 1
    assert state["participants"]["counted_at"] > before["participants"]["counted_at"]
    told = of(names(dash), "participants_changed")[-1]
    assert (told["count"], told["connected"]) == (1, 1)
    assert told["participant"] == {"id": first["participant"]["id"], "name": "João", "connected": True,
                                   "fixed": True, "can_scribe": False, "left": False}
    with actions.app.app_context():
        person = db.session.get(Participant, first["participant"]["id"])
        assert (person.languages, person.fixed, person.left_at, person.connected) == (["fr", "pt"], True, None, True)
    # saying nothing of itself keeps what it said before
    _again, again = actions.phone(code, rejoin_token=first["rejoin_token"])
    assert again["participant"]["name"] == "João" and again["participant"]["language"] == "fr"
    with actions.app.app_context():
        person = db.session.get(Participant, first["participant"]["id"])
        assert (person.languages, person.fixed) == (["fr", "pt"], True)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_phones_coming_back_hold_the_cafes_row_only_while_their_one_statement_runs(
        actions: Actions, cafe_ready: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the venue's Wi-Fi comes back, the whole room rejoins at once. A transaction that locked the
    café's row until its commit let them back one at a time (2 workers, 2,000 phones: 90 a second, rejoin
    p50 11 s). On PostgreSQL a phone coming back is written in one statement that commits itself: by the
    time its connection enters its rooms the row is free again, and its answer is read after."""
    code, cafe_id = cafe_ready["cafe"]["join_code"], cafe_ready["cafe"]["id"]
    phones = [actions.phone(code) for _ in range(4)]
    assert start(cafe_ready["dash"], cafe_id)["ok"]
    sock, joined = phones[0]
    seat = of(names(sock), "seat_assigned")[-1]
    sock.disconnect()
    found = _cafe_row_at_first_move(actions, monkeypatch, database_url, cafe_id)
    _back, back = actions.phone(code, rejoin_token=joined["rejoin_token"])
    assert back["ok"] and back["rejoined"], back
    assert found == ["free"]
    assert back["snapshot"]["seat"] == {k: seat[k] for k in ("round", "table", "is_host", "tables")}


@both_databases
def test_a_phone_whose_answer_fails_after_it_came_back_is_not_counted_as_here(
        actions: Actions, cafe_ready: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone's return is committed before its answer is read: if the reading fails, the phone gets an
    error (and asks again), and its connection is marked gone again, so that the room's count does not
    keep someone the server never told they were back (their connection would never be marked gone)."""
    from cafe.extensions import db
    from cafe.models import Participant
    from cafe.services import participants

    code = cafe_ready["cafe"]["join_code"]
    phone, joined = actions.phone(code)
    phone.disconnect()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(participants, "harvest_for_participant", broken)
    _sock, failed = actions.phone(code, rejoin_token=joined["rejoin_token"])
    assert failed["ok"] is False and failed["error"]["code"] == "internal", failed
    with actions.app.app_context():
        person = db.session.get(Participant, joined["participant"]["id"])
        assert not person.connected and person.sid is None and person.left_at is None
    monkeypatch.undo()
    _sock2, back = actions.phone(code, rejoin_token=joined["rejoin_token"])
    assert back["ok"] and back["snapshot"]["state"]["participants"]["connected"] == 1, back


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_phones_dropping_side_by_side_leave_the_dashboard_with_the_right_count(
        actions: Actions, cafe_ready: dict[str, Any]) -> None:
    """Two connections drop at the same moment on two workers. Each change read the room's counts before
    its commit, so each counted the other as still here, and the dashboard, keeping the latest read, was
    left showing one connected too many (2,000 phones dropping at once: 4-9 shown, none there). Counts
    are read after the commit, stamped with when the read began: the latest read counts both."""
    import threading

    from sqlalchemy import event, select

    from cafe.extensions import db, socketio
    from cafe.models import Participant
    from cafe.services import participants
    from cafe.services.batching import GroupCommitter
    from cafe.services.events import RecordingPublisher

    code = cafe_ready["cafe"]["join_code"]
    joined = [actions.phone(code)[1]["participant"]["id"] for _ in range(3)]
    with actions.app.app_context():
        sids = dict(db.session.execute(select(Participant.id, Participant.sid)
                                       .where(Participant.id.in_(joined[:2]))).all())
        engine = db.engine
    publisher = RecordingPublisher()
    # each worker's group committer (its writer task writes the drops it is given)
    workers = [GroupCommitter(actions.app, socketio, publisher, window=0.0, max_batch=10) for _ in range(2)]
    both_written = threading.Barrier(2, timeout=10)

    def after(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        if text.lstrip().upper().startswith("UPDATE PARTICIPANT"):
            both_written.wait()             # both connections written before either goes on

    errors: list[BaseException] = []

    def drop(worker: GroupCommitter, pid: int) -> None:
        try:
            worker.submit(participants._Drop(pid, sids[pid], 1e9))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    event.listen(engine, "after_cursor_execute", after)
    try:
        threads = [threading.Thread(target=drop, args=(worker, pid)) for worker, pid in zip(workers, joined[:2])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    finally:
        event.remove(engine, "after_cursor_execute", after)
        for worker in workers:
            worker.stop()
    assert not errors, errors
    told = publisher.events("participants_changed")
    assert len(told) == 2
    shown = None
    for counts in told:                     # as static/js/live.js keeps them
        if shown is None or counts["counted_at"] >= shown["counted_at"]:
            shown = counts
    assert (shown["count"], shown["connected"]) == (3, 1), told
    assert {c["participant"]["id"]: c["participant"]["connected"] for c in told} == {joined[0]: False,
                                                                                      joined[1]: False}
