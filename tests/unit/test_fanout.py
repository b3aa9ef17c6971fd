"""Packing a batch's emits for the message between workers: shared values written once, nothing changed."""
from __future__ import annotations

import json

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
