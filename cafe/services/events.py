"""Publishing events to clients, behind one small interface.

Services hand a :class:`Publisher` the facts to send *after* their transaction commits. In the app it
is :class:`SocketIOPublisher` (which also works across worker processes through the message queue);
tests hand in a :class:`RecordingPublisher`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


def cafe_room(cafe_id: int) -> str:
    return f"cafe:{cafe_id}"


def facilitators_room(cafe_id: int) -> str:
    return f"cafe:{cafe_id}:facilitators"


def table_room(cafe_id: int, round_no: int, table: int) -> str:
    return f"cafe:{cafe_id}:r{round_no}:t{table}"


def participant_room(participant_id: int) -> str:
    return f"participant:{participant_id}"


class Publisher(Protocol):
    def emit(self, event: str, data: dict[str, Any], to: str | list[str]) -> None: ...

    def move(self, sid: str, leave: list[str], enter: list[str]) -> None: ...

    def disconnect(self, sid: str) -> None: ...

    def publish_many(self, moves: list[tuple[str, list[str], list[str]]],
                     emits: list[tuple[str, dict[str, Any], str | list[str]]], disconnects: list[str]) -> None: ...


@dataclass
class Outbox:
    """Events gathered during a use case, published in order once the transaction has committed.

    ``coalesce(key, builder)`` asks for a derived event (a tally, say) that the group committer builds
    once per batch, however many operations in the batch asked for the same key. ``read_after_commit(reader)``
    asks for events that must be read after the batch has committed (the room's counts: see
    :func:`cafe.services.cafes.participant_counts`); the committer calls each reader once, however many
    operations of the batch name it.
    """

    emits: list[tuple[str, dict[str, Any], str | list[str]]] = field(default_factory=list)
    moves: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    coalesced: dict[Any, Any] = field(default_factory=dict)
    disconnects: list[str] = field(default_factory=list)
    readers: list[Any] = field(default_factory=list)

    def coalesce(self, key: Any, builder: Any) -> None:
        self.coalesced[key] = builder

    def read_after_commit(self, reader: Any) -> None:
        self.readers.append(reader)

    def emit(self, event: str, data: dict[str, Any], to: str | list[str]) -> None:
        self.emits.append((event, data, to))

    def move(self, sid: str, leave: list[str], enter: list[str]) -> None:
        self.moves.append((sid, leave, enter))

    def disconnect(self, sid: str) -> None:
        self.disconnects.append(sid)

    def extend(self, other: "Outbox") -> None:
        """Append another outbox's events (to publish several use cases' events as one batch)."""
        self.moves.extend(other.moves)
        self.emits.extend(other.emits)
        self.disconnects.extend(other.disconnects)

    def publish(self, publisher: Publisher) -> None:
        if self.moves or self.emits or self.disconnects:
            publisher.publish_many(self.moves, self.emits, self.disconnects)

    def prepared(self, publisher: Publisher) -> Callable[[], None]:
        """These events made ready to go, and published when the returned function is called (after the
        commit: nothing is sent before). A publisher that can prepare a batch (``prepare_many``: the app's,
        which encodes it for the other workers) does that work now, so a service can have it done while the
        database is busy with its transaction."""
        prepare = getattr(publisher, "prepare_many", None)
        if prepare is None or not (self.moves or self.emits or self.disconnects):
            return lambda: self.publish(publisher)
        ready: Callable[[], None] = prepare(self.moves, self.emits, self.disconnects)
        return ready


def publish_one_by_one(publisher: Publisher, moves: list[tuple[str, list[str], list[str]]],
                       emits: list[tuple[str, dict[str, Any], str | list[str]]], disconnects: list[str]) -> None:
    # Rooms first, so the people who just moved receive what follows.
    for sid, leave, enter in moves:
        publisher.move(sid, leave, enter)
    for event, data, to in emits:
        publisher.emit(event, data, to)
    for sid in disconnects:
        publisher.disconnect(sid)


class SocketIOPublisher:
    def __init__(self, socketio: Any) -> None:
        self.socketio = socketio

    def emit(self, event: str, data: dict[str, Any], to: str | list[str]) -> None:
        self.socketio.emit(event, data, to=to)

    def move(self, sid: str, leave: list[str], enter: list[str]) -> None:
        server = self.socketio.server
        for room in leave:
            server.leave_room(sid, room)
        for room in enter:
            server.enter_room(sid, room)

    def disconnect(self, sid: str) -> None:
        self.socketio.server.disconnect(sid)

    def publish_many(self, moves: list[tuple[str, list[str], list[str]]],
                     emits: list[tuple[str, dict[str, Any], str | list[str]]], disconnects: list[str]) -> None:
        self.prepare_many(moves, emits, disconnects)()

    def prepare_many(self, moves: list[tuple[str, list[str], list[str]]],
                     emits: list[tuple[str, dict[str, Any], str | list[str]]],
                     disconnects: list[str]) -> Callable[[], None]:
        # The app's managers apply a batch in one pass, and across workers send it as one message, encoded
        # before it is sent (see cafe.web.fanout); any other manager gets the events one by one.
        prepare = getattr(self.socketio.server.manager, "prepare_fanout", None)
        if prepare is not None:
            ready: Callable[[], None] = prepare(moves, emits, disconnects)
            return ready
        return lambda: publish_one_by_one(self, moves, emits, disconnects)


class RecordingPublisher:
    """For tests: remembers everything published."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any], str | list[str]]] = []
        self.moved: list[tuple[str, list[str], list[str]]] = []
        self.disconnected: list[str] = []

    def emit(self, event: str, data: dict[str, Any], to: str | list[str]) -> None:
        self.emitted.append((event, data, to))

    def move(self, sid: str, leave: list[str], enter: list[str]) -> None:
        self.moved.append((sid, leave, enter))

    def disconnect(self, sid: str) -> None:
        self.disconnected.append(sid)

    def publish_many(self, moves: list[tuple[str, list[str], list[str]]],
                     emits: list[tuple[str, dict[str, Any], str | list[str]]], disconnects: list[str]) -> None:
        publish_one_by_one(self, moves, emits, disconnects)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data, _ in self.emitted if event == name]
