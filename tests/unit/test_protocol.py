"""Payload models: valid input parses, anything else is a ProtocolError with a stable code."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cafe.domain import protocol as p
from cafe.domain.codes import JOIN_CODE_ALPHABET, format_join_code, new_join_code, normalise_join_code


def test_note_add_cleans_text() -> None:
    cmd = p.NoteAdd.parse({"client_id": str(uuid.UUID(int=7)).upper(), "text": "  More\u0000 buses \u202e "})
    assert cmd.client_id == str(uuid.UUID(int=7)) and cmd.text == "More buses \u202e"


def test_note_length_is_counted_in_characters() -> None:
    assert p.NoteAdd.parse({"client_id": str(uuid.uuid4()), "text": "é" * 280}).text == "é" * 280
    with pytest.raises(p.ProtocolError) as err:
        p.NoteAdd.parse({"client_id": str(uuid.uuid4()), "text": "ü" * 281})
    assert err.value.code == "too_long"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                                     max_size=4), max_leaves=20))
def test_every_model_answers_any_json_with_a_value_or_protocol_error(payload: Any) -> None:
    for model in (p.ParticipantJoin, p.ParticipantLeave, p.NoteAdd, p.NoteEdit, p.NoteDelete, p.CafeCommand,
                  p.FacilitatorJoin, p.RoundExtend, p.ParticipantRemove):
        try:
            model.parse(payload)
        except p.ProtocolError as exc:
            assert exc.code and exc.message


def test_join_codes_are_readable() -> None:
    for _ in range(200):
        code = new_join_code()
        assert len(code) == 6 and set(code) <= set(JOIN_CODE_ALPHABET)
        assert not set(code) & set("0O1IL")
    assert normalise_join_code(" abc-234 ") == "ABC234"
    assert format_join_code("ABC234") == "ABC 234"
