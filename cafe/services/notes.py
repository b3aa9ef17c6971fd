"""Sticky notes: written, edited and deleted during a round, through the group committer.

Each function here builds an *operation* for :class:`cafe.services.batching.GroupCommitter`: it runs
inside the batch's transaction (its own savepoint), returns the answer for its writer, and leaves the
events to publish in the outbox; the committer publishes them after the commit.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select, TextClause, bindparam, insert, select, text
from sqlalchemy.orm import Session

from ..domain.protocol import NoteAdd, NoteDelete, NoteEdit, NotesEnter
from ..extensions import db
from ..models import Cafe, Note, Participant, Seat
from .batching import GroupCommitter
from .cafes import bump_version, can_scribe, cafe_for_facilitator, note_payload
from .errors import ServiceError
from .events import Outbox, facilitators_room, table_room


def _writer(session: Session, participant_id: int) -> tuple[Participant, Cafe]:
    person = session.get(Participant, participant_id)
    if person is None:
        raise ServiceError("not_joined", "Join a café first.", 403)
    if person.removed:
        raise ServiceError("removed", "The facilitator has removed you from this café.", 403)
    cafe = session.get(Cafe, person.cafe_id)
    assert cafe is not None
    return person, cafe


def _own_note(session: Session, participant_id: int, note_id: int) -> tuple[Note, Cafe]:
    person, cafe = _writer(session, participant_id)
    note = session.get(Note, note_id)
    if note is None or note.cafe_id != cafe.id or note.deleted_at is not None:
        raise ServiceError("not_found", "That note is not there any more.", 404)
    if note.participant_id != person.id:
        raise ServiceError("forbidden", "You can change only your own notes.", 403)
    if cafe.phase != "round" or note.round != cafe.current_round:
        raise ServiceError("wrong_phase", "Notes can be changed only during their round.", 409)
    return note, cafe


def _rooms(note: Note) -> list[str]:
    return [table_room(note.cafe_id, note.round, note.table), facilitators_room(note.cafe_id)]


class _AddNote:
    """One ``note_add`` for the group committer: alone it runs :meth:`__call__`; several in one batch run
    together through :meth:`bulk` (a handful of statements per batch instead of about ten per note)."""

    __slots__ = ("participant_id", "cmd", "now")

    def __init__(self, participant_id: int, cmd: NoteAdd, now: float) -> None:
        self.participant_id, self.cmd, self.now = participant_id, cmd, now

    def __call__(self, session: Session, outbox: Outbox) -> dict[str, Any]:
        return _add_one(session, outbox, self.participant_id, self.cmd, self.now)

    @staticmethod
    def bulk(session: Session, ops: list["_AddNote"], outboxes: list[Outbox]) -> list[Any]:
        return _add_many(session, ops, outboxes)

    @staticmethod
    def at_once(connection: Any, ops: list["_AddNote"], outboxes: list[Outbox]) -> list[Any]:
        return _add_at_once(connection, ops, outboxes)


@functools.cache
def _writers_query() -> Select:
    """Writers, their cafés, their seats in the current round and the id of any note they already sent with
    one of the given client ids, in one query. Built once, and of plain tables: making the statement, and
    loading ORM objects from it, cost more than running it."""
    person, cafe, seat, note = Participant.__table__, Cafe.__table__, Seat.__table__, Note.__table__
    return (select(person.c.id, person.c.cafe_id, person.c.removed, person.c.language, cafe.c.phase,
                   cafe.c.current_round, seat.c.table, note.c.id.label("note_id"), note.c.client_id)
            .join(cafe, cafe.c.id == person.c.cafe_id)
            .outerjoin(seat, (seat.c.cafe_id == person.c.cafe_id) & (seat.c.round == cafe.c.current_round)
                       & (seat.c.participant_id == person.c.id))
            .outerjoin(note, (note.c.participant_id == person.c.id)
                       & note.c.client_id.in_(bindparam("client_ids", expanding=True)))
            .where(person.c.id.in_(bindparam("participant_ids", expanding=True))))


@functools.cache
def _insert_notes() -> Insert:
    note = Note.__table__           # a plain SQL insert: the ORM's bulk insert cost more than the statement
    return insert(note).returning(note.c.id, sort_by_parameter_order=True)


@dataclass
class _Vetted:
    """What the checks of a batch of new notes found: an answer (an error, or the note already stored) for
    some, and for the others the café and table each goes to."""
    outcomes: list[Any]
    fresh: dict[int, list[int]]          # cafe id -> indexes of the new notes, in order
    claimed: dict[tuple[int, str], int]  # the same client_id twice in one batch: the first wins
    existing: dict[int, int]             # index -> id of the note that client_id already made
    rounds: dict[int, int]               # cafe id -> its current round
    tables: dict[int, int]               # participant id -> table
    languages: dict[int, str | None]     # participant id -> language


def _vet(connection: Any, ops: list[_AddNote]) -> _Vetted:
    """The rules of :func:`_add_one` for a batch, in one query (each round trip to the database is a wait
    for the whole batch)."""
    rows = connection.execute(_writers_query(), {"participant_ids": sorted({op.participant_id for op in ops}),
                                                 "client_ids": sorted({op.cmd.client_id for op in ops})}).all()
    return _vet_rows(rows, ops)


def _vet_rows(rows: Any, ops: list[_AddNote]) -> _Vetted:
    """The rules of :func:`_add_one` for a batch, on rows with the columns of :func:`_writers_query` (from
    it, or from :func:`_write_at_once`); a writer missing from them has not joined."""
    people = {r.id: r for r in rows}
    cafes = {r.cafe_id: r for r in rows}
    tables = {r.id: r.table for r in rows if r.phase == "round" and r.table is not None}
    stored = {(r.id, r.client_id): r.note_id for r in rows if r.note_id is not None}
    vetted = _Vetted([None] * len(ops), {}, {}, {}, {c: r.current_round for c, r in cafes.items()}, tables,
                     {p: r.language for p, r in people.items()})
    for i, op in enumerate(ops):
        person = people.get(op.participant_id)
        key = (op.participant_id, op.cmd.client_id)
        if person is None:
            vetted.outcomes[i] = ServiceError("not_joined", "Join a café first.", 403)
        elif person.removed:
            vetted.outcomes[i] = ServiceError("removed", "The facilitator has removed you from this café.", 403)
        elif key in stored:
            vetted.existing[i] = stored[key]
        elif key in vetted.claimed:
            continue                          # answered once the first one has its answer
        elif cafes[person.cafe_id].phase != "round":
            vetted.outcomes[i] = ServiceError("wrong_phase", "Notes can be written while a round is running.", 409)
        elif op.participant_id not in tables:
            vetted.outcomes[i] = ServiceError("no_seat", "You will get a table in the next round.", 409)
        else:
            vetted.claimed[key] = i
            vetted.fresh.setdefault(person.cafe_id, []).append(i)
    return vetted


def _note_row(vetted: _Vetted, cafe_id: int, op: _AddNote) -> dict[str, Any]:
    return {"cafe_id": cafe_id, "participant_id": op.participant_id, "client_id": op.cmd.client_id,
            "round": vetted.rounds[cafe_id], "table": vetted.tables[op.participant_id], "text": op.cmd.text,
            "lang": op.cmd.lang or vetted.languages[op.participant_id], "created_at": op.now,
            "updated_at": op.now, "hidden": False}


def _announce(outbox: Outbox, row: dict[str, Any], note_id: int) -> dict[str, Any]:
    """The event for a stored note, and its writer's answer."""
    payload = {"id": note_id, "client_id": row["client_id"], "round": row["round"], "table": row["table"],
               "text": row["text"], "lang": row["lang"], "created_at": row["created_at"],
               "updated_at": row["updated_at"], "version": row["version"], "scribed": False}
    outbox.emit("note_added", {"note": payload, "version": row["version"]},
                [table_room(row["cafe_id"], row["round"], row["table"]), facilitators_room(row["cafe_id"])])
    return {"note": payload | {"mine": True}, "duplicate": False}


def _repeats(ops: list[_AddNote], vetted: _Vetted) -> None:
    """A client_id sent twice in one batch: the second copy is answered with the note the first made."""
    for i, op in enumerate(ops):
        if vetted.outcomes[i] is None and i not in vetted.existing:
            first_index = vetted.claimed[(op.participant_id, op.cmd.client_id)]
            if first_index == i:
                continue
            first = vetted.outcomes[first_index]
            if first is None or isinstance(first, ServiceError):
                vetted.outcomes[i] = first
            else:
                vetted.outcomes[i] = {"note": first["note"], "duplicate": True}


def _add_many(session: Session, ops: list[_AddNote], outboxes: list[Outbox]) -> list[Any]:
    """The same rules as :func:`_add_one`, for a batch: load, check, number and insert all at once."""
    vetted = _vet(session, ops)
    for i, note_id in vetted.existing.items():
        vetted.outcomes[i] = {"note": note_payload(session.get(Note, note_id), mine=True), "duplicate": True}
    rows: list[dict[str, Any]] = []
    order: list[int] = []
    for cafe_id, indexes in vetted.fresh.items():
        top = bump_version(session, cafe_id, by=len(indexes))
        for offset, i in enumerate(indexes):
            rows.append(_note_row(vetted, cafe_id, ops[i]) | {"version": top - len(indexes) + 1 + offset})
            order.append(i)
    if rows:
        ids = session.scalars(_insert_notes(), rows).all()
        for i, row, note_id in zip(order, rows, ids):
            vetted.outcomes[i] = _announce(outboxes[i], row, note_id)
    _repeats(ops, vetted)
    return vetted.outcomes


@functools.cache
def _write_at_once() -> TextClause:
    """PostgreSQL: check a batch of new notes, number them and insert them, in one statement that commits
    itself (autocommit). Each request row comes back with what the checks of :func:`_vet_rows` read (the
    columns of :func:`_writers_query`) and, if it was written, the new note's id and version.

    The checks read the statement's snapshot; the version bump re-reads the café's row under its lock, and
    writes (and so inserts) nothing if the round the checks saw has ended meanwhile: those notes go back to
    the transaction, whose checks answer them. The café's row is locked only while the statement runs."""
    return text("""
WITH req AS (
    SELECT * FROM unnest(CAST(:participant_ids AS integer[]), CAST(:client_ids AS varchar[]),
                         CAST(:texts AS text[]), CAST(:langs AS varchar[]), CAST(:ats AS double precision[]))
         WITH ORDINALITY AS r(participant_id, client_id, body, lang, at, ord)),
checked AS (
    SELECT req.*, p.id, p.cafe_id, p.removed, p.language, c.phase, c.current_round, s."table",
           n.id AS note_id
    FROM req
    LEFT JOIN participant AS p ON p.id = req.participant_id
    LEFT JOIN cafe AS c ON c.id = p.cafe_id
    LEFT JOIN seat AS s ON s.cafe_id = p.cafe_id AND s.round = c.current_round AND s.participant_id = p.id
    LEFT JOIN note AS n ON n.participant_id = req.participant_id AND n.client_id = req.client_id),
fresh AS (
    SELECT DISTINCT ON (participant_id, client_id) *
    FROM checked
    WHERE id IS NOT NULL AND NOT removed AND note_id IS NULL AND phase = 'round' AND "table" IS NOT NULL
    ORDER BY participant_id, client_id, ord),
numbered AS (
    SELECT fresh.*, row_number() OVER (PARTITION BY cafe_id ORDER BY ord) AS k,
           count(*) OVER (PARTITION BY cafe_id) AS n
    FROM fresh),
bump AS (
    UPDATE cafe SET version = cafe.version + t.n
    FROM (SELECT cafe_id, current_round, count(*) AS n FROM fresh GROUP BY cafe_id, current_round) AS t
    WHERE cafe.id = t.cafe_id AND cafe.phase = 'round' AND cafe.current_round = t.current_round
    RETURNING cafe.id, cafe.version),
ins AS (
    INSERT INTO note (cafe_id, participant_id, client_id, round, "table", text, lang, created_at, updated_at,
                      version, hidden, scribed)
    SELECT f.cafe_id, f.participant_id, f.client_id, f.current_round, f."table", f.body,
           COALESCE(f.lang, f.language), f.at, f.at, bump.version - f.n + f.k, false, false
    FROM numbered AS f JOIN bump ON bump.id = f.cafe_id
    RETURNING id, participant_id, client_id, version)
SELECT checked.ord, checked.id, checked.cafe_id, checked.removed, checked.language, checked.phase,
       checked.current_round, checked."table", checked.note_id, checked.client_id,
       ins.id AS new_id, ins.version AS new_version
FROM checked LEFT JOIN ins ON ins.participant_id = checked.participant_id AND ins.client_id = checked.client_id
ORDER BY checked.ord""")


def _add_at_once(connection: Any, ops: list[_AddNote], outboxes: list[Outbox]) -> list[Any]:
    """PostgreSQL, outside any transaction: the whole batch in one statement (see :func:`_write_at_once`).
    One round trip, where a transaction took five (BEGIN, the checks, the version, the insert, COMMIT), and
    no lock held across a round trip, which another worker's batch would wait for. ``None`` for a note this
    path leaves to the transaction: a resent one (its answer needs the stored note), or one whose round
    ended while the statement waited for the café's row. If the statement fails (e.g. the same note stored
    a moment earlier from a second tab on another worker), it wrote nothing and the committer runs the
    whole batch in the transaction."""
    params = {"participant_ids": [op.participant_id for op in ops], "client_ids": [op.cmd.client_id for op in ops],
              "texts": [op.cmd.text for op in ops], "langs": [op.cmd.lang or None for op in ops],
              "ats": [op.now for op in ops]}
    rows = connection.execute(_write_at_once(), params).all()
    vetted = _vet_rows([r for r in rows if r.id is not None], ops)
    written = {r.ord - 1: r for r in rows if r.new_id is not None}
    for cafe_id, indexes in vetted.fresh.items():
        for i in indexes:
            note = written.get(i)
            if note is not None:
                row = _note_row(vetted, cafe_id, ops[i]) | {"version": note.new_version}
                vetted.outcomes[i] = _announce(outboxes[i], row, note.new_id)
    _repeats(ops, vetted)
    return vetted.outcomes


def add(committer: GroupCommitter, participant_id: int, cmd: NoteAdd, now: float) -> dict[str, Any]:
    """Write a note at the writer's table; a resent ``client_id`` returns the note already stored."""
    if cmd.scribed:     # rare: checked one by one (may this person write for others?)
        return committer.submit(lambda session, outbox: _add_one(session, outbox, participant_id, cmd, now))
    return committer.submit(_AddNote(participant_id, cmd, now))


def _add_one(session: Session, outbox: Outbox, participant_id: int, cmd: NoteAdd, now: float) -> dict[str, Any]:
    person, cafe = _writer(session, participant_id)
    existing = session.scalar(select(Note).where(Note.participant_id == person.id,
                                                 Note.client_id == cmd.client_id))
    if existing is not None:
        return {"note": note_payload(existing, mine=True), "duplicate": True}
    if cafe.phase != "round":
        raise ServiceError("wrong_phase", "Notes can be written while a round is running.", 409)
    table = session.scalar(select(Seat.table).where(Seat.cafe_id == cafe.id, Seat.round == cafe.current_round,
                                                    Seat.participant_id == person.id))
    if table is None:
        raise ServiceError("no_seat", "You will get a table in the next round.", 409)
    if cmd.scribed and not can_scribe(session, cafe, person):
        raise ServiceError("forbidden", "Only table hosts and scribes the facilitator chose can write for others.", 403)
    version = bump_version(session, cafe.id)
    note = Note(cafe_id=cafe.id, participant_id=person.id, client_id=cmd.client_id, round=cafe.current_round,
                table=table, text=cmd.text, lang=cmd.lang or person.language, created_at=now, updated_at=now,
                version=version, hidden=False, scribed=cmd.scribed)
    session.add(note)
    session.flush()
    outbox.emit("note_added", {"note": note_payload(note), "version": version}, _rooms(note))
    return {"note": note_payload(note, mine=True), "duplicate": False}


def edit(committer: GroupCommitter, participant_id: int, cmd: NoteEdit, now: float) -> dict[str, Any]:
    def op(session: Session, outbox: Outbox) -> dict[str, Any]:
        note, cafe = _own_note(session, participant_id, cmd.note_id)
        if note.text != cmd.text:
            note.text = cmd.text
            note.updated_at = now
            note.version = bump_version(session, cafe.id)
            session.flush()
            outbox.emit("note_updated", {"note": note_payload(note), "version": note.version}, _rooms(note))
        return {"note": note_payload(note, mine=True)}
    return committer.submit(op)


def delete(committer: GroupCommitter, participant_id: int, cmd: NoteDelete, now: float) -> dict[str, Any]:
    def op(session: Session, outbox: Outbox) -> dict[str, Any]:
        note, cafe = _own_note(session, participant_id, cmd.note_id)
        note.deleted_at = now
        note.version = bump_version(session, cafe.id)
        session.flush()
        outbox.emit("note_deleted", {"note_id": note.id, "round": note.round, "table": note.table,
                                     "version": note.version}, _rooms(note))
        return {"note_id": note.id}
    return committer.submit(op)


def enter_from_paper(facilitator_id: int, cmd: NotesEnter, now: float, publisher: Any) -> dict[str, Any]:
    """Notes a table wrote on paper, typed in by the facilitator, so a table with no phones is in the harvest."""
    cafe = cafe_for_facilitator(cmd.cafe_id, facilitator_id, lock=True)
    if cafe.phase in ("lobby", "voting", "results") or cafe.current_round == 0:
        raise ServiceError("wrong_phase", "Notes from paper can be entered from the first round until voting opens.",
                           409)
    if cmd.round > cafe.current_round:
        raise ServiceError("out_of_range", "Round %(num)s has not happened yet.", num=cmd.round)
    outbox = Outbox()
    made = []
    for text in cmd.texts:
        version = bump_version(db.session, cafe.id)
        note = Note(cafe_id=cafe.id, participant_id=None, client_id=str(uuid.uuid4()), round=cmd.round,
                    table=cmd.table, text=text, lang=cmd.lang, created_at=now, updated_at=now, version=version,
                    hidden=False, scribed=True)
        db.session.add(note)
        db.session.flush()
        made.append(note_payload(note))
        outbox.emit("note_added", {"note": note_payload(note), "version": version}, _rooms(note))
    answer = {"notes": made}
    db.session.commit()
    outbox.publish(publisher)
    return answer
