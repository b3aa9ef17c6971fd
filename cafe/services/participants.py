"""Residents joining, rejoining, leaving and dropping off."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, TextClause, Update, bindparam, select, text, tuple_, update
from sqlalchemy.orm import Session

from ..domain.codes import hash_secret, new_secret, normalise_join_code
from ..domain.protocol import ParticipantJoin
from ..extensions import db
from ..models import Cafe, Participant
from .cafes import bump_version, cafe_for_facilitator, current_seat, facilitator_snapshot, participant_snapshot
from .batching import GroupCommitter
from .cafes import person_payload, presence_after_commit, presence_and_cafe, presence_of_many
from .errors import ServiceError
from .harvest import harvest_for_facilitator, harvest_for_participant
from .events import Outbox, Publisher, cafe_room, facilitators_room, participant_room, table_room

log = logging.getLogger(__name__)

__all__ = ["JoinResult", "JoinedPerson", "join", "leave", "disconnect", "facilitator_join", "remove"]


@dataclass(frozen=True)
class JoinedPerson:
    """Who joined, read before the commit: after it the ORM object would load itself again (on PostgreSQL
    three more round trips for every join: a new transaction, the select, and its rollback)."""
    id: int
    cafe_id: int
    number: int
    name: str                     # as shown ("Guest 7" when no name was given)
    language: str


@dataclass
class JoinResult:
    participant: JoinedPerson
    rejoin_token: str | None      # only for a new participant (the phone keeps it)
    snapshot: dict[str, Any] | None
    rejoined: bool

    def answer(self) -> dict[str, Any]:
        p = self.participant
        data: dict[str, Any] = {
            "participant": {"id": p.id, "name": p.name, "number": p.number, "language": p.language,
                            "cafe_id": p.cafe_id},
            "rejoined": self.rejoined,
            "snapshot": self.snapshot,
            "up_to_date": self.snapshot is None,
        }
        if self.rejoin_token:
            data["rejoin_token"] = self.rejoin_token
        return data


def _autocommit() -> None:
    """On PostgreSQL, from here until the session's transaction ends, each statement commits itself: reads
    after a commit need no transaction of their own (a BEGIN and a ROLLBACK: two round trips each time)."""
    if db.session().get_transaction() is None and db.session.get_bind().dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _presence_message(counts: dict[str, Any], person: Participant) -> dict[str, Any]:
    """``participants_changed``, to facilitators only: phones get the counts with each ``cafe_state`` (a
    join must not message every phone in the room: 2,000 joins would be 4 million messages)."""
    return counts | {"participant": person_payload(person)}


def _presence_after_commit(outbox: Outbox, cafe_id: int, participant_id: int) -> None:
    """Tell the facilitators about a change to someone's presence, read *after* it committed (see
    :func:`cafe.services.cafes.participant_counts`: read before, two changes committed side by side each
    counted without the other, and the dashboard kept one of them: 2,000 phones dropping at once on 2
    workers left it showing 4-9 connected when none were)."""
    try:
        _autocommit()
        counts, person = presence_after_commit(db.session, cafe_id, participant_id)
    finally:
        db.session.rollback()
    outbox.emit("participants_changed", _presence_message(counts, person), facilitators_room(cafe_id))


def _rooms(cafe_id: int, participant_id: int, table: str | None) -> list[str]:
    return [cafe_room(cafe_id), participant_room(participant_id), *([table] if table else [])]


@dataclass(frozen=True)
class _Written:
    """A join's write, committed: who, and the rooms its connection has entered."""
    cafe_id: int
    participant_id: int
    token: str | None             # a newcomer's rejoin token
    rooms: list[str]              # the café's and the participant's, and their table's if they had a seat
    rejoined: bool
    table: str | None = None      # that table's room


def join(cmd: ParticipantJoin, sid: str | None, now: float, publisher: Publisher) -> JoinResult:
    """Join a café by its code, or rejoin with the token the phone kept: the write is committed first
    (with the connection in its rooms), then the answer is read."""
    code = normalise_join_code(cmd.join_code)
    written = None
    if db.session.get_bind().dialect.name == "postgresql":
        at_once = _rejoin_at_once if cmd.rejoin_token else _newcomer_at_once
        written = at_once(cmd, code, sid, now, publisher)
    if written is None:
        written = _join_in_transaction(cmd, code, sid, now, publisher)
    return _answer(written, cmd.since_version, sid, now, publisher)


def _join_in_transaction(cmd: ParticipantJoin, code: str, sid: str | None, now: float,
                         publisher: Publisher) -> _Written:
    """A phone coming back or a newcomer on SQLite, and on PostgreSQL whatever :func:`_newcomer_at_once`
    or :func:`_rejoin_at_once` leaves (a code it did not find, a café that takes no one new, a token of no
    one here: this transaction says why).

    The café's row is locked (PostgreSQL; SQLite has one writer anyway) until the connection has entered
    its rooms and the transaction committed: a round starting meanwhile holds the café ``FOR UPDATE``, so
    a phone that comes back while its seats are written waits until they are committed and then enters
    the new table's room; and a round start that comes after reads the phone's new connection. Without
    it, the round start read the phone's old connection, and the new one stayed in last round's room.
    SQLAlchemy's ``key_share=True`` is ``FOR NO KEY UPDATE``: a newcomer writes the row (its number, the
    version), so joins take their turn on it anyway. ``FOR KEY SHARE`` did not let a crowd of newcomers
    join sooner (2 workers, PostgreSQL, 2,000 phones: 15-21 s against 15-16 s), since each still held the
    row from its first write to its commit, and the row, share-locked by many joins at once, left
    PostgreSQL resolving multixacts at every later write of it: its CPU went from 45% to 84-100% of a core
    while notes came in, note p95 from 13-16 ms to 52-118 ms, and a round change from 0.22 s to 1.7-2.3 s."""
    rejoining = cmd.rejoin_token is not None
    cafe = db.session.scalar(select(Cafe).where(Cafe.join_code == code).with_for_update(key_share=True))
    if cafe is None:
        raise ServiceError("unknown_code", "No café has that code. Please check it with the facilitator.", 404)
    token: str | None = None
    if cmd.rejoin_token:
        person = db.session.scalar(select(Participant).where(Participant.token_hash == hash_secret(cmd.rejoin_token)))
        if person is None or person.cafe_id != cafe.id:
            raise ServiceError("bad_token", "This phone's place in the café was not found; please join again.", 403)
        if person.removed:
            raise ServiceError("removed", "The facilitator has removed you from this café.", 403)
        if cmd.name and cmd.name != person.name:
            person.name = cmd.name
        if cmd.language:
            person.language = cmd.language
        if person.left_at is not None:
            person.left_at = None
            bump_version(db.session, cafe.id)
    else:
        if cafe.phase == "ended":
            raise ServiceError("cafe_ended", "This café has ended. Thank you for taking part!", 403)
        if not cafe.joins_open:
            raise ServiceError("joins_closed", "This café is not taking new people right now.", 403)
        token = new_secret(32)
        number = db.session.execute(_numbered_statement(), {"cafe_id": cafe.id}).scalar_one()
        person = Participant(cafe_id=cafe.id, number=number, name=cmd.name, language=cmd.language or "en",
                             token_hash=hash_secret(token), joined_at=now, last_seen_at=now, connected=True,
                             sid=sid, removed=False, fixed=False)
        db.session.add(person)
    if cmd.languages is not None:
        person.languages = list(cmd.languages) or None
    if cmd.stay_put is not None:
        person.fixed = cmd.stay_put
    db.session.flush()
    if rejoining:
        # Presence is written as one statement, not from what was read: the old connection's disconnect may
        # be running at the same moment (a phone that just came back), and must not undo this. (A new
        # participant was inserted with it: no other connection of theirs exists.)
        db.session.execute(update(Participant).where(Participant.id == person.id)
                           .values(connected=True, sid=sid, last_seen_at=now))
    seat = current_seat(db.session, cafe, person.id)
    table = table_room(cafe.id, cafe.current_round, seat.table) if seat and sid else None
    rooms = _rooms(cafe.id, person.id, table) if sid else []
    written = _Written(cafe.id, person.id, token, rooms, rejoining, table)
    if sid:
        publisher.move(sid, [], rooms)
    try:
        db.session.commit()
    except BaseException:
        if sid:
            publisher.move(sid, rooms, [])
        raise
    return written


@functools.cache
def _numbered_statement() -> Update:
    """A newcomer's number, and the café's version moved on, in one statement built once (the café is
    read again for the answer, after the commit)."""
    cafe = Cafe.__table__
    return (update(cafe).where(cafe.c.id == bindparam("cafe_id"))
            .values(participant_seq=cafe.c.participant_seq + 1, version=cafe.c.version + 1)
            .returning(cafe.c.participant_seq))


@functools.cache
def _newcomer_statement() -> TextClause:
    """PostgreSQL: a newcomer's whole write in one statement that commits itself (autocommit): the café's
    newcomer number and version, and the participant's row. Nothing comes back if the code is unknown or
    the café takes no one new (the transaction then says why)."""
    return text("""
WITH c AS (
    UPDATE cafe SET participant_seq = participant_seq + 1, version = version + 1
    WHERE join_code = :code AND phase <> 'ended' AND joins_open
    RETURNING id, participant_seq)
INSERT INTO participant (cafe_id, number, name, language, token_hash, joined_at, last_seen_at, connected, sid,
                         removed, fixed, languages, can_scribe)
SELECT c.id, c.participant_seq, :name, :language, :token_hash, :now, :now, true, :sid, false, :fixed,
       :languages, false
FROM c
RETURNING id, cafe_id""").bindparams(bindparam("languages", type_=JSON(none_as_null=True)))


def _newcomer_at_once(cmd: ParticipantJoin, code: str, sid: str | None, now: float,
                      publisher: Publisher) -> _Written | None:
    """A newcomer on PostgreSQL: written in one statement (see :func:`_newcomer_statement`), then its
    connection enters the café's rooms; ``None`` if the statement wrote nothing (the transaction then
    answers).

    Every join writes the café's row, so joins take turns on its lock. In a transaction the lock was held
    from its first statement to its COMMIT, across ten round trips, each a wait for the event loop of a
    worker busy with hundreds of other phones: the crowd joined one at a time (2 workers, 2,000 phones:
    30 sessions waiting on the row at any moment). Here it is held only while the statement runs, inside
    PostgreSQL. The round start needs no more: it reads who is connected under its own lock on the row, so
    it either seats this phone through the connection just committed, or does not seat it this round (and
    if it did, :func:`_answer` finds the seat and enters its table's room)."""
    token = new_secret(32)
    db.session.rollback()       # the statement commits itself: no transaction of the session's may be open
    _autocommit()
    row = db.session.execute(_newcomer_statement(), {
        "code": code, "name": cmd.name, "language": cmd.language or "en", "token_hash": hash_secret(token),
        "now": now, "sid": sid, "fixed": bool(cmd.stay_put), "languages": list(cmd.languages or ()) or None}).first()
    if row is None:
        db.session.rollback()
        return None
    return _entered(_Written(row.cafe_id, row.id, token, _rooms(row.cafe_id, row.id, None) if sid else [], False),
                    sid, now, publisher)


@functools.cache
def _rejoin_statement() -> TextClause:
    """PostgreSQL: a phone coming back, in one statement that commits itself (autocommit): its connection
    and what it says of itself (name, language, languages, stay put) written, ``left`` undone (and then the
    café's version moved on), and its seat this round read. ``FOR KEY SHARE`` on the café's row orders it
    with a round start's ``FOR UPDATE`` (which reads connections) as the transaction's lock did, but lets
    other phones come back at the same time; the row is held only while the statement runs. Nothing comes back for an unknown code, a token of no one in this café, or
    someone removed (the transaction then says which)."""
    return text("""
WITH c AS (
    SELECT id, current_round FROM cafe WHERE join_code = :code FOR KEY SHARE),
old AS (
    SELECT p.id, p.left_at FROM participant p JOIN c ON p.cafe_id = c.id
    WHERE p.token_hash = :token_hash AND NOT p.removed),
bumped AS (
    UPDATE cafe SET version = version + 1
    WHERE id = (SELECT c.id FROM c JOIN old ON old.left_at IS NOT NULL))
UPDATE participant SET connected = true, sid = :sid, last_seen_at = :now, left_at = NULL,
    name = COALESCE(:name, participant.name), language = COALESCE(:language, participant.language),
    languages = CASE WHEN :set_languages THEN :languages ELSE participant.languages END,
    fixed = COALESCE(:fixed, participant.fixed)
FROM old, c
WHERE participant.id = old.id
RETURNING participant.id, participant.cafe_id, c.current_round,
    (SELECT s."table" FROM seat s
     WHERE s.cafe_id = c.id AND s.round = c.current_round AND s.participant_id = participant.id) AS seat_table
""").bindparams(bindparam("languages", type_=JSON(none_as_null=True)))


def _rejoin_at_once(cmd: ParticipantJoin, code: str, sid: str | None, now: float,
                    publisher: Publisher) -> _Written | None:
    """A phone coming back on PostgreSQL: written in one statement (see :func:`_rejoin_statement`), then
    its connection enters its rooms; ``None`` if the statement wrote nothing (the transaction then answers).

    When the venue's Wi-Fi comes back the whole room rejoins at once. In the transaction, which held the
    café's row ``FOR NO KEY UPDATE`` until its commit, they came back one at a time (2 workers, 2,000
    phones: 90 a second, 30 waiting on the row at every moment, rejoin p50 11 s, and phones still waiting
    after ``JOIN_WAIT_SECONDS`` told to try again).

    Its seat is read in that statement, before a round start it waited for may have committed: the
    answer's snapshot, read after the rooms were entered, gives the seat as it is, and :func:`_answer`
    moves the connection if the two differ. A round start committed before that read is seen by it; one
    committed after it read this connection (it came after the statement) and moves it itself."""
    assert cmd.rejoin_token is not None
    db.session.rollback()       # the statement commits itself: no transaction of the session's may be open
    _autocommit()
    row = db.session.execute(_rejoin_statement(), {
        "code": code, "token_hash": hash_secret(cmd.rejoin_token), "sid": sid, "now": now,
        "name": cmd.name or None, "language": cmd.language or None, "set_languages": cmd.languages is not None,
        "languages": list(cmd.languages or ()) or None, "fixed": cmd.stay_put}).first()
    if row is None:
        db.session.rollback()
        return None
    table = table_room(row.cafe_id, row.current_round, row.seat_table) if row.seat_table and sid else None
    return _entered(_Written(row.cafe_id, row.id, None, _rooms(row.cafe_id, row.id, table) if sid else [], True,
                             table), sid, now, publisher)


def _entered(written: _Written, sid: str | None, now: float, publisher: Publisher) -> _Written:
    """A write committed by one statement: its connection enters its rooms (or it is marked gone again)."""
    if sid:
        try:
            publisher.move(sid, [], written.rooms)
        except BaseException:
            db.session.rollback()
            _forget(written, sid, now)
            raise
    return written


def _answer(written: _Written, since_version: int | None, sid: str | None, now: float,
            publisher: Publisher) -> JoinResult:
    """The answer to a join whose write has committed, read after its connection entered its rooms (a
    subscription, not an event): a change committed after the read reaches the phone as an event, and none
    can fall between the two. The phone replays events newer than its snapshot."""
    rooms = list(written.rooms)
    try:
        _autocommit()
        counts, person, cafe = presence_and_cafe(db.session, written.cafe_id, written.participant_id)
        up_to_date = written.rejoined and since_version is not None and since_version >= cafe.version
        snapshot = None
        if not up_to_date:
            snapshot = (participant_snapshot(cafe, person, now, counts=counts, newcomer=not written.rejoined)
                        | harvest_for_participant(db.session, cafe, person.id))
            seat = snapshot["seat"]
            table = table_room(cafe.id, seat["round"], seat["table"]) if seat else None
            if sid and table != written.table:      # a round started since the rooms were entered
                stale = [written.table] if written.table else []
                rooms = [r for r in rooms if r not in stale] + ([table] if table else [])
                publisher.move(sid, stale, [table] if table else [])
        joined = JoinedPerson(person.id, person.cafe_id, person.number, person.display_name, person.language)
        db.session.rollback()               # it only read
    except BaseException:
        db.session.rollback()
        if sid:
            publisher.move(sid, rooms, [])
        _forget(written, sid, now)
        raise
    publisher.emit("participants_changed", _presence_message(counts, person), facilitators_room(written.cafe_id))
    return JoinResult(joined, written.token, snapshot, written.rejoined)


def _forget(written: _Written, sid: str | None, now: float) -> None:
    """A join whose answer could not be made, though its write committed: the phone was told to try
    again. Its connection is marked gone (if it is still theirs), so no one counts it as here; and a
    newcomer, who never got a token and will join anew, as left, so no one seats them either. Best effort."""
    values: dict[str, Any] = {"connected": False, "sid": None}
    if not written.rejoined:
        values["left_at"] = now
    try:
        db.session.execute(update(Participant).where(Participant.id == written.participant_id,
                                                     Participant.sid == sid).values(**values))
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning("could not mark participant %s gone after a failed join", written.participant_id,
                    exc_info=True)


def leave(participant_id: int, now: float, publisher: Publisher) -> None:
    """The resident said they are leaving: no seat in the next round; their notes stay."""
    person = db.session.get(Participant, participant_id)
    if person is None:
        raise ServiceError("not_joined", "Join a café first.", 403)
    cafe_id = person.cafe_id
    if person.left_at is None:
        person.left_at = now
        person.last_seen_at = now
        bump_version(db.session, cafe_id)
    db.session.commit()
    outbox = Outbox()
    _presence_after_commit(outbox, cafe_id, participant_id)
    outbox.publish(publisher)


def disconnect(committer: GroupCommitter, participant_id: int, sid: str, now: float) -> None:
    """A phone's connection dropped: soft presence, the seat is kept for the grace period. Through the group
    committer (see :class:`_Drop`): when the venue's Wi-Fi goes, the room's drops are written together."""
    committer.submit(_Drop(participant_id, sid, now))


def _drop_many(executor: Any, ops: list["_Drop"], outboxes: list[Outbox]) -> list[bool]:
    """Mark the connections gone, each only if it is still its participant's current one (the phone may have
    come back meanwhile), in one statement on ``executor`` (a session, or a connection in autocommit); the
    facilitators are told after the commit (see :func:`_presence_reader`). True for each connection marked."""
    person = Participant.__table__
    rows = executor.execute(update(person)
                            .where(tuple_(person.c.id, person.c.sid).in_([(op.participant_id, op.sid) for op in ops]))
                            .values(connected=False, sid=None, last_seen_at=max(op.now for op in ops))
                            .returning(person.c.id, person.c.cafe_id)).all()
    cafe_of = {pid: cafe_id for pid, cafe_id in rows}
    dropped: dict[int, list[int]] = {}         # café -> who dropped
    for pid, cafe_id in cafe_of.items():
        dropped.setdefault(cafe_id, []).append(pid)
    readers = {cafe_id: _presence_reader(cafe_id, pids) for cafe_id, pids in dropped.items()}
    for op, outbox in zip(ops, outboxes):
        if op.participant_id in cafe_of:
            outbox.read_after_commit(readers[cafe_of[op.participant_id]])
    return [op.participant_id in cafe_of for op in ops]


def _presence_reader(cafe_id: int, participant_ids: list[int]) -> Any:
    """What tells the facilitators that these participants' presence changed, read after the commit (see
    :func:`_presence_after_commit`): the room's counts once, and each of them."""
    def read(session: Session, outbox: Outbox) -> None:
        for counts, person in presence_of_many(session, cafe_id, participant_ids):
            outbox.emit("participants_changed", _presence_message(counts, person), facilitators_room(cafe_id))
    return read


class _Drop:
    """One dropped connection for the group committer. The drops of a batch are one statement, and the
    room's counts are read once after it has committed, with everyone dropped in it: each drop was a write,
    a read of the counts and a message of its own. 2,000 phones dropping at once, three pairs side by side:
    on 2 workers the dashboard showed them all gone after 4.34 / 4.78 / 4.72 s, now 0.82 / 0.84 / 0.77 s
    (1 worker, SQLite, one pair: 4.88 -> 1.46 s)."""

    __slots__ = ("participant_id", "sid", "now")

    def __init__(self, participant_id: int, sid: str, now: float) -> None:
        self.participant_id, self.sid, self.now = participant_id, sid, now

    def __call__(self, session: Session, outbox: Outbox) -> bool:
        return _drop_many(session, [self], [outbox])[0]

    # in a transaction (a session), or on PostgreSQL a connection in autocommit: the same statement
    bulk = at_once = staticmethod(_drop_many)


def facilitator_join(cafe: Cafe, sid: str | None, since_version: int | None, now: float,
                     publisher: Publisher) -> dict[str, Any]:
    up_to_date = since_version is not None and since_version >= cafe.version
    snapshot = None if up_to_date else facilitator_snapshot(cafe, now) | harvest_for_facilitator(db.session, cafe)
    if sid:
        publisher.move(sid, [], [facilitators_room(cafe.id)])
    db.session.rollback()
    return {"cafe_id": cafe.id, "snapshot": snapshot, "up_to_date": up_to_date, "version": cafe.version}


def remove(facilitator_id: int, cafe_id: int, participant_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    """Moderation: take a participant out of the café. Their token stops working at once; notes stay."""
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    person = db.session.get(Participant, participant_id)
    if person is None or person.cafe_id != cafe.id:
        raise ServiceError("not_found", "No such participant in this café.", 404)
    outbox = Outbox()
    if not person.removed:
        person.removed = True
        person.connected = False
        if person.sid:
            outbox.emit("removed", {"message": "The facilitator has removed you from this café."},
                        participant_room(person.id))
            outbox.disconnect(person.sid)
        person.sid = None
        cafe.version = bump_version(db.session, cafe.id)
    db.session.commit()
    _presence_after_commit(outbox, cafe_id, participant_id)
    outbox.publish(publisher)      # may run the disconnect handler at once: nothing ORM after this
    return {"participant_id": participant_id}


def _set_flag(facilitator_id: int, cafe_id: int, participant_id: int, attribute: str, value: bool,
              publisher: Publisher, to_phone: tuple[str, dict[str, Any]] | None = None) -> None:
    """A facilitator's yes/no setting on one participant of their café, versioned and published."""
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    person = db.session.get(Participant, participant_id)
    if person is None or person.cafe_id != cafe.id:
        raise ServiceError("not_found", "No such participant in this café.", 404)
    setattr(person, attribute, value)
    cafe.version = bump_version(db.session, cafe.id)
    outbox = Outbox()
    if to_phone is not None:
        outbox.emit(to_phone[0], to_phone[1], participant_room(participant_id))
    db.session.commit()
    _presence_after_commit(outbox, cafe_id, participant_id)
    outbox.publish(publisher)


def allow_scribe(facilitator_id: int, cafe_id: int, participant_id: int, allowed: bool, now: float,
                 publisher: Publisher) -> dict[str, Any]:
    """Let a participant write notes for others at their table (table hosts always may)."""
    _set_flag(facilitator_id, cafe_id, participant_id, "can_scribe", allowed, publisher,
              ("scribe_changed", {"can_scribe": allowed}))
    return {"participant_id": participant_id, "can_scribe": allowed}


def set_fixed(facilitator_id: int, cafe_id: int, participant_id: int, fixed: bool, now: float,
              publisher: Publisher) -> dict[str, Any]:
    """Someone who needs to stay at one table stays at the table of their first round from now on."""
    _set_flag(facilitator_id, cafe_id, participant_id, "fixed", fixed, publisher)
    return {"participant_id": participant_id, "fixed": fixed}
