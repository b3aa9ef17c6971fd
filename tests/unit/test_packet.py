"""The Socket.IO packet class the server uses: its faster binary check gives python-socketio's answers."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from cafe.web.transport import SafePacket

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                   st.binary(max_size=3), st.binary(max_size=3).map(bytearray))
payloads = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4),
                            st.tuples(inner, inner)),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_binary_check_agrees_with_python_socketio(data: Any) -> None:
    assert SafePacket.data_is_binary(data) == sio_packet.Packet.data_is_binary(data)


def test_binary_check_finds_bytes_deep_down_and_ignores_them_inside_tuples_as_the_library_does() -> None:
    deep: Any = b"x"
    for _ in range(2000):          # deeper than the library's recursion could go
        deep = [deep]
    assert SafePacket.data_is_binary(deep)
    assert SafePacket.data_is_binary({"a": [1, {"b": bytearray(b"y")}]})
    assert not SafePacket.data_is_binary({"a": [1, {"b": "text"}], "c": (b"in a tuple",)})
    assert sio_packet.Packet.data_is_binary({"a": [1, {"b": "text"}], "c": (b"in a tuple",)}) is False


def test_packets_with_and_without_binary_encode_as_python_socketio_encodes_them() -> None:
    for data in (["seat_assigned", {"table": 4, "state": {"round": 2, "question_i18n": {"es": "¿Qué?"}}}],
                 ["file", {"blob": b"\x00\x01"}]):
        ours, theirs = SafePacket(sio_packet.EVENT, data=data), sio_packet.Packet(sio_packet.EVENT, data=data)
        assert ours.packet_type == theirs.packet_type and ours.encode() == theirs.encode()
