"""Residents joining, rejoining, leaving and dropping off."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, TextClause, Update, bindparam, select, text, update

from ..domain.codes import hash_secret, new_secret, normalise_join_code
from ..domain.protocol import ParticipantJoin
from ..extensions import db
from ..models import Cafe, Participant
from .cafes import bump_version, current_seat, facilitator_snapshot, participant_counts, participant_snapshot
from .cafes import cafe_for_facilitator
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


def rooms_for(cafe: Cafe, participant: Participant) -> list[str]:
    rooms = [cafe_room(cafe.id), participant_room(participant.id)]
    seat = current_seat(db.session, cafe, participant.id)
    if seat is not None:
        rooms.append(table_room(cafe.id, cafe.current_round, seat.table))
    return rooms


def _presence_event(outbox: Outbox, cafe_id: int, participant: Participant | None = None,
                    counts: dict[str, int] | None = None) -> None:
    """To facilitators only: phones get the counts with each ``cafe_state`` (a join must not message every
    phone in the room: 2,000 joins would be 4 million messages)."""
    counts = counts if counts is not None else participant_counts(db.session, cafe_id)
    detail = dict(counts)
    if participant is not None:
        detail["participant"] = {"id": participant.id, "name": participant.display_name,
                                 "connected": participant.connected, "fixed": participant.fixed,
                                 "can_scribe": participant.can_scribe,
                                 "left": participant.left_at is not None or participant.removed}
    outbox.emit("participants_changed", detail, facilitators_room(cafe_id))


def join(cmd: ParticipantJoin, sid: str | None, now: float, publisher: Publisher) -> JoinResult:
    """Join a café by its code, or rejoin with the token the phone kept."""
    code = normalise_join_code(cmd.join_code)
    if not cmd.rejoin_token and db.session.get_bind().dialect.name == "postgresql":
        result = _join_at_once(cmd, code, sid, now, publisher)
        if result is not None:
            return result
    # On PostgreSQL a newcomer is written in one statement (see _join_at_once); this transaction is for a
    # phone coming back, for SQLite, and for whatever that statement leaves (a code it did not find).
    # A lock on the café's row (PostgreSQL; SQLite has one writer anyway): a round starting meanwhile
    # holds the café for update, so a phone that comes back while its seats are written waits until they
    # are committed and then enters the new table's room. Without it, the round start read the phone's old
    # connection, and the new one stayed in last round's room.
    # SQLAlchemy's ``key_share=True`` is ``FOR NO KEY UPDATE``, so joins take their turn on the row (a new
    # one writes it anyway: the newcomer's number, the version). ``FOR KEY SHARE`` did not let a crowd of
    # newcomers join sooner (2 workers, PostgreSQL, 2,000 phones: 15-21 s against 15-16 s), since each still
    # held the row from its first write to its commit, and the row, share-locked by many joins at once, left
    # PostgreSQL resolving multixacts at every later write of it: its CPU went from 45% to 84-100% of a core
    # while notes came in, note p95 from 13-16 ms to 52-118 ms, and a round change from 0.22 s to 1.7-2.3 s.
    cafe = db.session.scalar(select(Cafe).where(Cafe.join_code == code).with_for_update(key_share=True))
    if cafe is None:
        raise ServiceError("unknown_code", "No café has that code. Please check it with the facilitator.", 404)
    token: str | None = None
    rejoined = cmd.rejoin_token is not None
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
    if rejoined:
        # Presence is written as one statement, not from what was read: the old connection's disconnect may
        # be running at the same moment (a phone that just came back), and must not undo this. (A new
        # participant was inserted with it: no other connection of theirs exists.)
        db.session.execute(update(Participant).where(Participant.id == person.id)
                           .values(connected=True, sid=sid, last_seen_at=now))
        db.session.refresh(person)
    # The café needs no refresh here: since this transaction wrote, SQLite lets no one else commit before
    # it does, and on PostgreSQL the lock on the café's row above keeps round starts (the only change to
    # the rooms) out until then. The refresh below, after the rooms are entered, is the one the snapshot needs.
    # The connection enters its rooms *before* the snapshot is read (a subscription, not an event): a change
    # committed after the read reaches the phone as an event, and none can fall between the two, as it
    # could if the rooms came after the commit. The phone replays events newer than its snapshot.
    rooms = rooms_for(cafe, person) if sid else []
    if sid:
        publisher.move(sid, [], rooms)
    try:
        db.session.refresh(cafe)
        up_to_date = cmd.since_version is not None and cmd.since_version >= cafe.version
        counts = participant_counts(db.session, cafe.id)           # once per join, for both messages
        snapshot = None if up_to_date else (participant_snapshot(cafe, person, now, counts=counts,
                                                                 newcomer=not rejoined)
                                            | harvest_for_participant(db.session, cafe, person.id))
        outbox = Outbox()
        _presence_event(outbox, cafe.id, person, counts)
        joined = JoinedPerson(person.id, person.cafe_id, person.number, person.display_name, person.language)
        db.session.commit()
    except BaseException:
        if sid:
            publisher.move(sid, rooms, [])
        raise
    outbox.publish(publisher)
    return JoinResult(joined, token, snapshot, rejoined)


@functools.cache
def _numbered_statement() -> Update:
    """A newcomer's number, and the café's version moved on, in one statement built once (the café is
    refreshed before its version is read)."""
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
RETURNING id, cafe_id, number""").bindparams(bindparam("languages", type_=JSON(none_as_null=True)))


def _join_at_once(cmd: ParticipantJoin, code: str, sid: str | None, now: float,
                  publisher: Publisher) -> JoinResult | None:
    """A newcomer on PostgreSQL: written in one statement (see :func:`_newcomer_statement`), then the
    snapshot read after the commit; ``None`` if the statement wrote nothing (the transaction then answers).

    Every join writes the café's row, so joins take turns on its lock. In a transaction the lock was held
    from its first statement to its COMMIT, across ten round trips, each a wait for the event loop of a
    worker busy with hundreds of other phones: the crowd joined one at a time (2 workers, 2,000 phones:
    30 sessions waiting on the row at any moment). Here it is held only while the statement runs, inside
    PostgreSQL. The round start needs no more: it reads who is connected under its own lock on the row, so
    it either seats this phone through the connection just committed, or does not seat it this round.
    The rooms are entered before the snapshot is read, as in the transaction (see :func:`join`)."""
    token = new_secret(32)
    language = cmd.language or "en"
    db.session.rollback()       # the statement commits itself: no transaction of the session's may be open
    connection = db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = connection.execute(_newcomer_statement(), {
        "code": code, "name": cmd.name, "language": language, "token_hash": hash_secret(token), "now": now,
        "sid": sid, "fixed": bool(cmd.stay_put), "languages": list(cmd.languages or ()) or None}).first()
    if row is None:
        db.session.rollback()
        return None
    person = Participant(id=row.id, cafe_id=row.cafe_id, number=row.number, name=cmd.name, language=language,
                         connected=True, fixed=bool(cmd.stay_put), removed=False, can_scribe=False, left_at=None)
    rooms = [cafe_room(row.cafe_id), participant_room(row.id)] if sid else []
    try:
        if sid:
            publisher.move(sid, [], rooms)
        cafe = db.session.get(Cafe, row.cafe_id)
        assert cafe is not None             # a café is deleted only with its participants
        counts = participant_counts(db.session, cafe.id)
        snapshot = (participant_snapshot(cafe, person, now, counts=counts, newcomer=True)
                    | harvest_for_participant(db.session, cafe, person.id))
        if sid and snapshot["seat"] is not None:      # a round started meanwhile and seated this phone
            table = table_room(cafe.id, cafe.current_round, snapshot["seat"]["table"])
            rooms.append(table)
            publisher.move(sid, [], [table])
        outbox = Outbox()
        _presence_event(outbox, cafe.id, person, counts)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        if sid:
            publisher.move(sid, rooms, [])
        _forget(person.id, now)
        raise
    outbox.publish(publisher)
    return JoinResult(JoinedPerson(person.id, person.cafe_id, person.number, person.display_name, language),
                      token, snapshot, False)


def _forget(participant_id: int, now: float) -> None:
    """A newcomer whose answer could not be made: the phone never got its token, so it will join anew.
    Their row is marked gone (not connected, left), so no one counts or seats it; best effort."""
    try:
        db.session.execute(update(Participant).where(Participant.id == participant_id)
                           .values(connected=False, sid=None, left_at=now))
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.warning("could not mark participant %s gone after a failed join", participant_id, exc_info=True)


def leave(participant_id: int, now: float, publisher: Publisher) -> None:
    """The resident said they are leaving: no seat in the next round; their notes stay."""
    person = db.session.get(Participant, participant_id)
    if person is None:
        raise ServiceError("not_joined", "Join a café first.", 403)
    if person.left_at is None:
        person.left_at = now
        person.last_seen_at = now
        bump_version(db.session, person.cafe_id)
    outbox = Outbox()
    _presence_event(outbox, person.cafe_id, person)
    db.session.commit()
    outbox.publish(publisher)


def disconnect(participant_id: int, sid: str, now: float, publisher: Publisher) -> None:
    """A phone's connection dropped: soft presence, the seat is kept for the grace period."""
    # Only if this connection is still the phone's current one (it may have reconnected meanwhile).
    db.session.execute(update(Participant).where(Participant.id == participant_id, Participant.sid == sid)
                       .values(connected=False, sid=None, last_seen_at=now))
    person = db.session.get(Participant, participant_id)
    if person is None:
        db.session.rollback()
        return
    outbox = Outbox()
    _presence_event(outbox, person.cafe_id, person)
    db.session.commit()
    outbox.publish(publisher)


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
    _presence_event(outbox, cafe.id, person)
    answer = {"participant_id": person.id}
    db.session.commit()
    outbox.publish(publisher)      # may run the disconnect handler at once: nothing ORM after this
    return answer


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
    _presence_event(outbox, cafe.id, person)
    if to_phone is not None:
        outbox.emit(to_phone[0], to_phone[1], participant_room(person.id))
    db.session.commit()
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
