"""Packing a batch's emits for the message between workers: shared values written once, nothing changed."""
from __future__ import annotations

import json
from typing import Callable

import socketio
from socketio.manager import Manager

from cafe.web.fanout import FanoutManager, emit_locally, pack_emits, unpack_emits


def test_a_value_shared_by_many_emits_is_written_once_and_every_emit_comes_back_whole() -> None:
    state = {"phase": "round", "round": 2, "question_i18n": {"es": "¿Qué?"}, "version": 21}
    emits = [("seat_assigned", {"table": t, "state": state, "version": 21}, f"participant:{t}") for t in range(50)]
    emits.append(("cafe_state", state, ["cafe:3:facilitators"]))
    emits.append(("note_added", {"note": {"id": 1, "text": "more buses"}, "version": 22}, ["cafe:3:r2:t1"]))
    shared, packed = pack_emits(emits)
    assert shared == [state]
    wire = json.loads(json.dumps({"shared": shared, "emits": packed}))   # as it crosses Redis
    # once shared, once as the cafe_state's own data (a whole payload is not shared): not 51 times
    assert json.dumps(wire).count('"question_i18n"') == 2
    back = unpack_emits(wire["shared"], wire["emits"])
    assert [(e, d, t if isinstance(t, str) else list(t)) for e, d, t in back] == \
        [(e, d, t if isinstance(t, str) else list(t)) for e, d, t in emits]
    seats = [d for e, d, _ in back if e == "seat_assigned"]
    assert all(d["state"] is seats[0]["state"] for d in seats)           # one object again, not 50 copies


def test_values_equal_but_not_shared_stay_where_they_are() -> None:
    emits = [("note_added", {"note": {"id": 1}}, "a"), ("note_added", {"note": {"id": 1}}, "b"),
             ("x", ["not", "a", "dict"], "c"), ("y", None, "d")]
    shared, packed = pack_emits(emits)
    assert shared == [] and all(len(p) == 3 for p in packed)
    assert unpack_emits(shared, packed) == emits


def _as_lists(emits: list) -> list:
    return [(e, d, t if isinstance(t, str) or t is None else list(t)) for e, d, t in emits]


def test_a_round_of_seats_crosses_as_columns_and_comes_back_whole() -> None:
    """A round's seats (the same event, keys and shared state; one room each) cross between workers as
    columns: each seat's room and table, the values all seats share written once."""
    state = {"phase": "round", "round": 2, "question": "¿Qué?", "version": 40}
    seats = [("seat_assigned", {"cafe_id": 3, "round": 2, "table": t % 7 + 1, "is_host": t % 7 == 0, "tables": 7,
                                "state": state, "version": 40}, f"participant:{t}") for t in range(200)]
    emits = seats + [("cafe_state", state, ["cafe:3:facilitators"]),
                     ("seat_assigned", {"cafe_id": 3, "round": 2, "table": 1, "is_host": 1, "tables": 7,
                                        "state": state, "version": 40}, "participant:900"),
                     ("note_added", {"note": {"id": 1}}, "cafe:3:r2:t1"), ("note_added", {"note": {"id": 2}}, "x")]
    shared, packed = pack_emits(emits)
    wire = json.loads(json.dumps({"shared": shared, "emits": packed}))
    run = wire["emits"][0]
    assert run["e"] == "seat_assigned" and len(run["t"]) == 200 and run["r"] == {"state": 0}
    columns = dict(zip(run["k"], run["v"]))
    assert columns["cafe_id"] == {"=": 3} and columns["version"] == {"=": 40}
    assert columns["table"] == [t % 7 + 1 for t in range(200)] and len(columns["is_host"]) == 200
    assert len(json.dumps(wire)) < 200 * 40                       # rooms, tables and hosts: not 200 copies
    back = unpack_emits(wire["shared"], wire["emits"])
    assert _as_lists(back) == _as_lists(emits)
    assert type(back[201][1]["is_host"]) is int                    # 1 is not True: a run of its own
    assert all(d["state"] is back[0][1]["state"] for _e, d, _t in back[:200])


def test_the_message_between_workers_leaves_out_this_workers_own_connections(monkeypatch) -> None:
    """Moves and disconnects of connections this worker holds are applied here and not sent to the others."""
    from cafe.web.fanout import FanoutRedisManager

    manager = FanoutRedisManager("redis://127.0.0.1:6379/9", write_only=True)
    server = socketio.Server(async_mode="threading", client_manager=manager)
    server._send_eio_packet = lambda eio_sid, pkt: None  # type: ignore[method-assign]
    manager.set_server(server)
    here = manager.connect("eio-here", "/")
    published: list = []

    def publish(data: str, meanwhile: Callable[[], None]) -> None:
        published.append(json.loads(data))            # written out before it is sent
        meanwhile()

    monkeypatch.setattr(manager, "_publish", publish)
    manager.fanout([(here, [], ["t1"]), ("elsewhere", [], ["t1"])], [("seat_assigned", {"table": 1}, "t1")],
                   ["gone-elsewhere"])
    assert published[0]["moves"] == [["elsewhere", [], ["t1"]]]
    assert published[0]["disconnects"] == ["gone-elsewhere"]
    assert here in dict(manager.get_participants("/", "t1"))      # this worker's own move was applied here


def _server_with(rooms: dict[str, list[str]]) -> tuple[socketio.Server, dict[str, str], list[tuple[str, str]]]:
    """A real python-socketio server on the in-process manager, with connections in ``rooms`` (room ->
    connection names); what it would write to each Engine.IO connection is recorded."""
    server = socketio.Server(async_mode="threading", client_manager=FanoutManager())
    sent: list[tuple[str, str]] = []
    server._send_eio_packet = lambda eio_sid, pkt: sent.append((eio_sid, pkt.encode()))  # type: ignore[method-assign]
    manager = server.manager
    manager.set_server(server)
    sids: dict[str, str] = {}
    for room, names in rooms.items():
        for name in names:
            if name not in sids:
                sids[name] = manager.connect(name, "/")
            manager.enter_room(sids[name], "/", room)
    return server, sids, sent


def _decoded(sent: list[tuple[str, str]]) -> list[tuple[str, list]]:
    out = []
    for eio_sid, text in sent:
        assert text.startswith("42")           # an Engine.IO message carrying a Socket.IO event
        out.append((eio_sid, socketio.packet.Packet(encoded_packet=text[1:]).data))
    return out


def test_emitting_locally_sends_what_the_library_would_with_a_shared_value_encoded_once() -> None:
    state = {"phase": "round", "round": 2, "question": "Qu'est-ce qui compte ? <b>\u2028", "tables": [1, 2]}
    emits = [("seat_assigned", {"table": t, "state": state, "is_host": t == 1, "name": None}, f"participant:{t}")
             for t in range(1, 4)]
    emits += [("note_added", {"note": {"id": 9, "text": "more buses"}, "version": 22}, ["t1", "facilitators"]),
              ("cafe_state", state, "facilitators"), ("ping_all", None, "t1"), ("nobody_here", {"x": 1}, "empty"),
              ("everyone", {"y": [2]}, None)]
    rooms = {"participant:1": ["a"], "participant:2": ["b"], "participant:3": ["c"], "t1": ["a", "f"],
             "facilitators": ["f"]}
    server, _sids, sent = _server_with(rooms)
    calls = []
    encode = json.dumps
    counting = type("J", (), {"dumps": staticmethod(lambda v, **kw: calls.append(v) or encode(v, **kw)),
                              "loads": staticmethod(json.loads)})
    server.packet_class.json, saved = counting, server.packet_class.json
    try:
        emit_locally(server.manager, emits)
    finally:
        server.packet_class.json = saved
    mine = _decoded(sent)

    reference, _, sent_by_library = _server_with(rooms)
    for event, data, to in emits:
        Manager.emit(reference.manager, event, data, "/", room=to)
    assert sorted(mine, key=repr) == sorted(_decoded(sent_by_library), key=repr)
    assert ("f", ["note_added", emits[3][1]]) in mine and [s for s, d in mine if d[0] == "note_added"].count("f") == 1
    assert sum(1 for v in calls if v is state) == 1         # three seats and the state itself: encoded once


def test_data_json_cannot_carry_goes_through_the_library() -> None:
    server, _sids, sent = _server_with({"r": ["a"]})
    emit_locally(server.manager, [("blob", {"file": b"\x00\x01", "n": 1}, "r"), ("args", (1, 2), "r"),
                                  ("ints", {1: "one"}, "r")])
    by_event = {}
    for _eio_sid, text in sent:
        by_event.setdefault(text[1:2], []).append(text)
    assert any(t.startswith("45") for t in by_event.get("5", []))    # a binary event and its attachment
    texts = [t for _e, t in sent if isinstance(t, str) and t.startswith("42")]
    assert '42["args",1,2]' in texts and '42["ints",{"1":"one"}]' in texts
