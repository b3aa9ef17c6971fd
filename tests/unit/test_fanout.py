"""Packing a batch's emits for the message between workers: shared values written once, nothing changed."""
from __future__ import annotations

import json

from cafe.web.fanout import pack_emits, unpack_emits


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
